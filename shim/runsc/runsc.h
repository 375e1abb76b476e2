// Client of the runsc command line: one method per subcommand. `Runsc` is the interface the task layer uses
// (and fakes in tests); RunscCli runs the real binary, its exits collected by the process's reaper.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "shim/sys/process_watcher.h"

namespace gvshim::runsc {

// Flags given to every runsc call (runsc does not remember them between calls).
struct GlobalOptions {
  std::string binary = "runsc";
  std::string root;      // --root; required
  std::string log_path;  // --log; empty: none
  std::string log_format = "json";
  bool debug = false;
  std::string debug_log;  // --debug-log
  std::string platform;   // --platform; empty: runsc's default
  std::string network = "none";
  bool oci_seccomp = false;
  std::vector<std::string> extra_flags;  // passed verbatim after the others, e.g. "--overlay"
  // Give runsc ContainerId(root, id) instead of the caller's id (see ContainerId). Off only for tests that
  // check argv literally.
  bool map_ids = true;
  // `create` and `start` run with /proc/sys/net hidden (sys::SpawnOptions::hide_proc_sys_net): set by the
  // task service for a pod sandbox with --network=sandbox once it has checked the pod's network namespace
  // (shim/task/netns.h).
  bool hide_net_sysctls = false;
  absl::Duration timeout = absl::Seconds(60);  // per call, except Wait and exec
};

// Descriptors handed to runsc (not owned). -1 gives /dev/null.
struct Stdio {
  int in = -1, out = -1, err = -1;
};

struct CreateOptions {
  std::string bundle, pid_file, console_socket, user_log;
  Stdio stdio;  // inherited by the sandbox (root container)
};

struct ExecOptions {
  std::string process_json, pid_file, internal_pid_file, console_socket;
  Stdio stdio;
  // setsid() for the runsc exec process: needed when its stdio is a pty slave (a terminal exec), since a
  // non-detached runsc exec ignores --console-socket and uses its own stdin as the process's terminal.
  bool new_session = false;
};

struct State {
  std::string id, status;  // "created", "running", "paused", "stopped"
  int pid = 0;             // the sandbox pid; -1 once stopped
  std::string bundle;
};

// One row of `runsc ps` (its table form: the JSON form has nothing but pids).
struct ProcessInfo {
  int pid = 0;
  int ppid = 0;
  int uid = 0;
  std::string tty, stime, time, cmd;
};

// `runsc events --stats`. Counters runsc leaves out stay 0; `raw` keeps the whole "data" object.
struct Stats {
  uint64_t cpu_total_ns = 0, cpu_user_ns = 0, cpu_kernel_ns = 0;
  std::vector<uint64_t> cpu_per_cpu_ns;
  uint64_t memory_usage = 0, memory_max = 0, memory_limit = 0, memory_failcnt = 0;
  uint64_t swap_usage = 0, swap_limit = 0;
  uint64_t kernel_usage = 0;
  uint64_t memory_cache = 0, memory_rss = 0;  // from data.memory.raw when present
  uint64_t pids_current = 0, pids_limit = 0;
  nlohmann::json raw;
};

class Runsc {
 public:
  virtual ~Runsc() = default;
  // runsc create. The sandbox keeps stdio.
  virtual absl::Status Create(const std::string& id, const CreateOptions& opts) = 0;
  // runsc start. Sub-containers take their stdio here.
  virtual absl::Status Start(const std::string& id, const Stdio& stdio) = 0;
  // Non-detached `runsc exec`; returns the pid of the runsc process, whose exit code is that of the exec'd
  // process. The caller collects it with the reaper's Watch (an exit before Watch is kept for it).
  virtual absl::StatusOr<pid_t> StartExec(const std::string& id, const ExecOptions& opts) = 0;
  // Blocking `runsc wait`: the exit code (shell style, 137 for SIGKILL) of the container's root process.
  virtual absl::StatusOr<int> Wait(const std::string& id) = 0;
  // runsc kill [--all] [--pid N] id signal. pid 0: the container's init.
  virtual absl::Status Kill(const std::string& id, int signal, bool all, int pid) = 0;
  virtual absl::Status Delete(const std::string& id, bool force) = 0;
  virtual absl::StatusOr<State> GetState(const std::string& id) = 0;
  virtual absl::StatusOr<std::vector<ProcessInfo>> Ps(const std::string& id) = 0;
  virtual absl::Status Pause(const std::string& id) = 0;
  virtual absl::Status Resume(const std::string& id) = 0;
  virtual absl::StatusOr<Stats> GetStats(const std::string& id) = 0;
  virtual absl::StatusOr<std::vector<State>> List() = 0;
};

// The id runsc knows a container by: "gv" + 32 hex digits of a hash of (state root, caller's id). runsc
// 0.0~20240729 resolves ids by prefix ("web" is ambiguous once "web2" exists, and every command on it fails),
// and both versions name a sandbox's control socket after its id in the host-wide abstract namespace, so
// equal ids under two roots (two containerd namespaces or two containerds) collide. Ids of one fixed length
// derived from (root, id) avoid both. The root already ends in the containerd namespace (RunscOptions).
// Stable across versions: `delete` after a shim upgrade must find the container. `gvshim runsc-id` prints it.
std::string ContainerId(const std::string& root, const std::string& id);

// Errors: "runsc <cmd> <id>: exit <code>: <runsc's message>", where the message is runsc's stderr or, when
// that went elsewhere (create/start hand their stdio to the sandbox), the last error line runsc wrote to
// --log. Codes (ClassifyError): NOT_FOUND when runsc says the container does not exist; FAILED_PRECONDITION
// when it refuses because of the container's state; ALREADY_EXISTS when create finds the id taken;
// DEADLINE_EXCEEDED on timeout; UNKNOWN otherwise.
// List() returns runsc's ids (ContainerId form when map_ids).
// `reaper` (not owned, outlives the client) is the process's reaper: it collects runsc's exits and
// StartExec's caller watches the exec through it. Null only in a process that has none (the shim's `delete`
// command).
std::unique_ptr<Runsc> NewRunscCli(GlobalOptions opts, sys::ProcessWatcher* reaper);

// --- Pure helpers (exposed for tests) ---
// --root R [--log L --log-format F] [--debug [--debug-log D]] --platform P --network N [--oci-seccomp]
// extra...
std::vector<std::string> GlobalArgs(const GlobalOptions& opts);
// Status code for a failed call from runsc's message: only runsc's own phrases for a missing container, a
// container in the wrong state or an id in use count, and only as a whole segment of the message (after ":
// "); any other text (a workload's "file not found", a mount that "already exists") is UNKNOWN.
absl::StatusCode ClassifyError(const std::string& message);
absl::StatusOr<State> ParseState(const std::string& json);
absl::StatusOr<std::vector<State>> ParseList(const std::string& json);
absl::StatusOr<std::vector<ProcessInfo>> ParsePsTable(const std::string& table);
absl::StatusOr<Stats> ParseStats(const std::string& json);
absl::StatusOr<int> ParseWait(const std::string& json);
// The "msg" of the last error record of a JSON log chunk, plus the first one when they differ.
std::optional<std::string> LastLogError(const std::string& log_chunk);

}  // namespace gvshim::runsc
