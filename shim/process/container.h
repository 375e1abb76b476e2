// One container of the sandbox: its init process and its exec processes, each an explicit state machine, and
// the ordering rules for their events (an exit is published after its start; exec exits before the init
// exit). The Task service (shim/task) only routes requests here.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "shim/events/publisher.h"
#include "shim/process/rootfs.h"
#include "shim/process/state.h"
#include "shim/runsc/runsc.h"
#include "shim/stdio/console_socket.h"
#include "shim/stdio/process_io.h"
#include "shim/sys/process_watcher.h"

namespace gvshim::process {

struct ExitGate;

struct ExitInfo {
  uint32_t status = 0;
  absl::Time at = absl::UnixEpoch();
};

struct ProcessState {
  std::string exec_id;
  uint32_t pid = 0;
  Status status = Status::kCreated;
  stdio::StdioConfig stdio;
  ExitInfo exit;
};

struct ContainerOptions {
  std::string id;
  std::string ns;
  std::string bundle;
  std::vector<MountSpec> rootfs;
  stdio::StdioConfig stdio;
  // True when this container creates the sandbox (a plain container, or a pod's sandbox container); false
  // when it joins an existing sandbox (io.kubernetes.cri.container-type=container).
  bool creates_sandbox = true;
  // The sandbox's cgroup file with an "oom_kill N" line (cgroup v1 memory.oom_control or v2 memory.events),
  // when known: if the kernel OOM-killed in it by the time the init exits, TaskOOM is published before
  // TaskExit.
  std::string oom_counter_file;
};

// Reads the "oom_kill N" counter of a cgroup v1 memory.oom_control or v2 memory.events file; 0 if unreadable.
uint64_t ReadOomKillCount(const std::string& path);

class Container {
 public:
  struct Deps {
    runsc::Runsc* runsc = nullptr;        // not owned; outlives the container
    events::Publisher* events = nullptr;  // not owned
    // Not owned; the process's started reaper: the sandbox's and every exec's exit comes through it.
    sys::ProcessWatcher* reaper = nullptr;
  };

  // Mounts the rootfs, opens the init's stdio and runs `runsc create`. Nothing is left behind on failure.
  static absl::StatusOr<std::unique_ptr<Container>> Create(const Deps& deps, ContainerOptions options);
  ~Container();

  const std::string& id() const { return options_.id; }
  const std::string& bundle() const { return options_.bundle; }
  uint32_t init_pid() const;

  // Starts the init (exec_id "") or an exec; publishes TaskStart / TaskExecStarted; returns the pid.
  absl::StatusOr<uint32_t> Start(const std::string& exec_id);
  // Registers an exec process; `process_json` is the OCI Process as JSON. Publishes TaskExecAdded.
  absl::Status AddExec(const std::string& exec_id, const stdio::StdioConfig& io,
                       const std::string& process_json);
  absl::Status Kill(const std::string& exec_id, int signal, bool all);
  // Deletes a stopped (or never started) process. For the init: runsc delete, rootfs unmounted, stdio closed.
  // Serialised with Start: a process whose start is under way is not deleted under it.
  absl::StatusOr<ProcessState> Delete(const std::string& exec_id);
  // Blocks until the process's exit is known. An exec deleted before it ever ran has no exit: NOT_FOUND, as
  // soon as it is deleted (containerd calls Wait before Start, and deletes an exec whose start failed).
  absl::StatusOr<ExitInfo> Wait(const std::string& exec_id);
  absl::StatusOr<ProcessState> State(const std::string& exec_id);
  absl::Status Pause();
  absl::Status Resume();
  absl::Status ResizePty(const std::string& exec_id, uint32_t width, uint32_t height);
  absl::Status CloseIO(const std::string& exec_id);
  absl::StatusOr<std::vector<runsc::ProcessInfo>> Pids();
  absl::StatusOr<runsc::Stats> Stats();
  // Exec ids of processes not yet deleted.
  std::vector<std::string> ExecIds();

 private:
  // What both kinds of process have. A process is shared (request threads, the reaper thread, its exit
  // worker) once it is in init_ or execs_; the fields set before that and never changed again need no lock.
  struct Process {
    // What changes after the process is shared, guarded by Container::mu_. A field cannot name another
    // object's mutex in ABSL_GUARDED_BY, so these are reached only through Container::G(), which requires
    // mu_ (checked by -Wthread-safety). The state changes only through `state.Transition`.
    struct Guarded {
      explicit Guarded(Kind kind) : state(kind) {}
      uint32_t pid = 0;
      Lifecycle state;
      ExitInfo exit;
      bool exit_recorded = false;  // the exit is known (and published, unless the process was deleted first)
      std::thread exit_thread;
      std::optional<uint32_t> forced_exit;  // init only: status to report when killed before it ran
    };

    Process(Kind k, std::string id) : kind(k), exec_id(std::move(id)), guarded_(k) {}
    virtual ~Process() = default;
    const Kind kind;
    const std::string exec_id;  // "" for the init
    // Set before the process is shared, then only read. The ProcessIO and ConsoleSocket objects are
    // thread-safe themselves.
    stdio::StdioConfig stdio;
    std::unique_ptr<stdio::ProcessIO> io;
    std::unique_ptr<stdio::ConsoleSocket> console;

   private:
    friend class Container;
    Guarded guarded_;  // only through Container::G()
  };
  // The container's own process.
  struct InitProcess : Process {
    InitProcess() : Process(Kind::kInit, "") {}
  };
  // A process added with AddExec.
  struct ExecProcess : Process {
    explicit ExecProcess(std::string id) : Process(Kind::kExec, std::move(id)) {}
    // Set (under mu_, for exec_counter_) before the process is shared, then only read.
    std::string process_json_path;
    std::string internal_pid_path;
  };

  Process::Guarded& G(Process& p) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return p.guarded_; }

  Container(const Deps& deps, ContainerOptions options) : deps_(deps), options_(std::move(options)) {}
  absl::Status DoCreate();
  absl::StatusOr<uint32_t> StartInit(const std::shared_ptr<InitProcess>& p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lifecycle_mu_);
  absl::StatusOr<uint32_t> StartExec(const std::shared_ptr<ExecProcess>& p)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(lifecycle_mu_);
  // Called (on the reaper thread or a waiter thread) when a process has exited; hands off to a worker thread.
  void OnExit(const std::string& exec_id, int exit_code);
  void FinishExit(const std::shared_ptr<Process>& p, int exit_code);
  std::shared_ptr<Process> Find(const std::string& exec_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True while an exec is running whose exit has not been published.
  bool ExecsPending() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<int> ReadInternalPid(const ExecProcess& p);
  std::string NotFound(const std::string& exec_id) const;

  const Deps deps_;
  const ContainerOptions options_;
  std::unique_ptr<Rootfs> rootfs_;  // set by DoCreate before the container is shared, then only read
  // Serialises Start and Delete against each other and against exit publication, so a TaskExit never
  // precedes its TaskStart/TaskExecStarted and a process is never deleted while it is being started.
  absl::Mutex lifecycle_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  std::shared_ptr<InitProcess> init_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<ExecProcess>> execs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> retired_threads_ ABSL_GUARDED_BY(mu_);
  // `runsc wait` for containers that join a sandbox.
  std::thread waiter_thread_ ABSL_GUARDED_BY(lifecycle_mu_);
  int exec_counter_ ABSL_GUARDED_BY(mu_) = 0;
  // Set by DoCreate before any reaper watch and before the container is shared, then only read; the gate's
  // own mutex guards what it points to. Closed by the destructor.
  std::shared_ptr<ExitGate> gate_;
};

}  // namespace gvshim::process
