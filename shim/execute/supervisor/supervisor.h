// The shim's side of the Execute service. The gRPC server, the runners and everything gRPC live in a separate
// process per pod, `gvshim execute-server` (server_main.h), which the shim starts only when a pod opts in
// ([execute] enabled = true and, unless require_annotation = false, dev.gvshim.execute=true on one of its
// containers). Pods that do not opt in cost the shim nothing but this bookkeeping: no gRPC code is linked
// into the shim, no thread or socket is created.
//
// The shim tells the server about the pod's containers over the server's stdin (wire.h); closing it ends the
// server, which stops its runners and removes its socket and record. A server that dies is started again a
// second later and given the pod's containers again (after kMaxRestarts deaths in a row, each within a minute
// of its start, the pod goes without). If the shim itself dies, the server sees end of input and cleans up
// the same way. Hooks never fail the container operation they follow: errors are logged.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "shim/execute/common/config.h"
#include "shim/execute/common/wire.h"
#include "shim/runsc/runsc.h"
#include "shim/sys/process_watcher.h"
#include "shim/task/service.h"

namespace gvshim::execute {

class Supervisor {
 public:
  struct Options {
    // The shim's reaper (not owned, started): servers are watched and signalled through it. Required.
    sys::ProcessWatcher* reaper = nullptr;
    // The program started as `<server> execute-server` when the config names none ([execute] server).
    std::string default_server;
    // The server's stderr (the shim's log); -1: /dev/null.
    int log_fd = -1;
    std::string log_level = "info";
    // How long a server may take to stop after its input closed before it gets SIGKILL.
    absl::Duration stop_timeout = absl::Seconds(5);
    absl::Duration restart_delay = absl::Seconds(1);
    // runsc client for the pod's execute containers (exec_container.h); default: the real runsc.
    std::function<std::unique_ptr<runsc::Runsc>(const runsc::GlobalOptions&)> runsc_factory;
    // Directory of the in-sandbox helpers when the config names none; empty: FindHelpersDir's search.
    std::string default_helpers_dir;
    // How long an eager container's Start waits for its runners to be ready (the server's "warm" line).
    absl::Duration eager_wait = absl::Seconds(15);
    // Capacity asked for each server's input pipe (room for a whole pod's replay); tests make it small.
    int server_pipe_bytes = 1 << 20;
  };
  static constexpr int kMaxRestarts = 5;  // in a row, for servers that die within a minute of their start
  static constexpr absl::Duration kSendTimeout = absl::Seconds(2);

  explicit Supervisor(Options opts);
  ~Supervisor();  // Shutdown()
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // task::ServiceOptions::on_started / on_deleted.
  void OnContainerStarted(const task::ContainerLifecycle& info);
  void OnContainerDeleted(const std::string& id);
  // Stops every server (waits for them). Idempotent.
  void Shutdown();

  // The pid of a pod's running server, 0 if none.
  pid_t ServerPid(const std::string& ns, const std::string& sandbox_id);

  // `gvshim` next to the running binary if it exists, else plain "gvshim" (looked up in PATH).
  static std::string DefaultServerPath();

 private:
  struct Pod;
  struct PodState;  // what changes in a Pod: guarded by mu_, reached through G()
  PodState& G(Pod& pod) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Lines for a pod's server, in the order mu_ gave them (seq); written by Deliver without mu_, so that a
  // server that stops reading holds up only its own pod (for at most kSendTimeout), never the others.
  struct Outgoing {
    std::shared_ptr<Pod> pod;
    uint64_t seq = 0;
    pid_t pid = 0;  // the server they are for: lines queued for a server that has since died are dropped
    std::shared_ptr<absl::Notification> exited;
    std::vector<std::string> lines;
  };
  // Starts the pod's server; the returned lines (hello, then every container) must be delivered.
  absl::StatusOr<Outgoing> SpawnLocked(const std::shared_ptr<Pod>& pod) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes the pod's next place in its server's input for `msgs`; the result must be delivered.
  Outgoing QueueLocked(const std::shared_ptr<Pod>& pod, const std::vector<nlohmann::json>& msgs)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Deliver(const Outgoing& out) ABSL_LOCKS_EXCLUDED(mu_);
  void StopPod(std::shared_ptr<Pod> pod);
  void RestartLoop();

  const Options opts_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Pod>> pods_ ABSL_GUARDED_BY(mu_);  // "<ns>/<sandbox id>"
  std::map<std::string, std::string> container_pod_ ABSL_GUARDED_BY(mu_);  // container id -> key above
  // Execute containers made for started containers, by container id: what deleting them needs.
  struct ExecContainer {
    std::string bundle;
    runsc::GlobalOptions runsc;
  };
  std::map<std::string, ExecContainer> exec_containers_ ABSL_GUARDED_BY(mu_);
  // Makes the execute container of `info` (no lock held: runsc create + start take a while). Returns its id,
  // or the reason there is none.
  absl::StatusOr<std::string> MakeExecContainer(const task::ContainerLifecycle& info,
                                                const ExecuteConfig& cfg);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;

  // Server exits, from the reaper thread to the restarter thread. Lock order: mu_ before ExitQueue::mu.
  // Shared with the reaper callbacks, so a callback that runs late never touches a destroyed Supervisor.
  struct Exit {
    std::string key;
    pid_t pid;
    int wait_status;
  };
  struct ExitQueue {
    absl::Mutex mu;
    std::vector<Exit> exits ABSL_GUARDED_BY(mu);
    bool stop ABSL_GUARDED_BY(mu) = false;
  };
  const std::shared_ptr<ExitQueue> exitq_ = std::make_shared<ExitQueue>();
  // Containers whose runners a server reported ready ("warm" lines on its stdout, read by one thread per
  // server). Shared with those threads, so one that runs late never touches a destroyed Supervisor.
  struct WarmState {
    absl::Mutex mu;
    std::set<std::string> warm ABSL_GUARDED_BY(mu);
  };
  const std::shared_ptr<WarmState> warm_ = std::make_shared<WarmState>();
  std::vector<std::thread> readers_ ABSL_GUARDED_BY(mu_);
  std::thread restarter_ ABSL_GUARDED_BY(mu_);  // started with the first server; restarts servers that died
};

}  // namespace gvshim::execute
