// The process-wide child reaper. The shim is a child subreaper: besides its own children, the sandbox and
// gofer processes that runsc leaves behind are reparented to it and must be reaped here. One thread reads a
// signalfd for SIGCHLD and collects every exited child with waitpid(-1); interested code registers per pid.
//
// Once Start() has run, nothing else in the process may call waitpid()/wait() (nor system()/popen()): the
// reaper owns every child's exit.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "shim/sys/fd.h"
#include "shim/sys/spawn.h"

namespace gvshim::sys {

class Reaper {
 public:
  using ExitCallback = std::function<void(int wait_status)>;
  using ExitHook = std::function<void(pid_t pid, int wait_status)>;

  static Reaper& Get();

  // Blocks SIGCHLD in the calling thread (call it from main before any other thread starts, so every thread
  // inherits the mask), makes the process a child subreaper if asked, and starts the reaper thread.
  // A second call is a no-op.
  absl::Status Start(bool subreaper);
  bool running() const { return running_.load(std::memory_order_acquire); }

  // Calls on_exit with the raw wait status once pid has exited. If the exit was already collected (the child
  // died before this call) on_exit runs right away on the calling thread; otherwise it runs on the reaper
  // thread and must be quick. Several callbacks per pid are allowed. Needs Start(). A pid that is not a child
  // of this process (or whose exit was collected and is no longer remembered) can never be reported: it is
  // logged as an error and on_exit runs at once with exit status 255.
  void Watch(pid_t pid, ExitCallback on_exit);

  // Signals a watched child whose exit has not been collected yet (through a pidfd where the kernel has
  // them), so a recycled pid is never hit. NOT_FOUND for any other pid: one already collected, or never
  // watched.
  absl::Status Signal(pid_t pid, int sig);

  // Called (on the reaper thread) for every child collected, watched or not, after its callbacks.
  void SetExitHook(ExitHook hook);

  struct Result {
    int wait_status = 0;
    int exit_code = 0;  // WEXITSTATUS, or 128+signal
    std::string out, err;
  };
  // Spawns opts, feeds stdin_data (when non-empty and opts.stdin_fd is -1), collects stdout and stderr (each
  // capped at kMaxCapture; only for streams the caller left at -1) and waits for the exit. On timeout the
  // child gets SIGKILL and the result is DEADLINE_EXCEEDED. Output still buffered in the pipes when the child
  // exits is collected, but a grandchild that keeps a pipe open does not hold Run up. Works with or without
  // Start().
  absl::StatusOr<Result> Run(SpawnOptions opts, absl::Duration timeout, const std::string& stdin_data = "");
  static constexpr size_t kMaxCapture = 16 << 20;

  // For Spawn: the number of exits collected so far, read before fork, and the call that drops a remembered
  // exit of an earlier process with the same pid (collected before that point).
  uint64_t ReapSequence();
  void ForgetStaleExit(pid_t pid, uint64_t seq_before_fork);

  // How many exits of unwatched pids are remembered.
  static constexpr size_t kMaxUnclaimed = 4096;
  // The reaper collects exits at least this often even without a SIGCHLD notification; it also keeps
  // collecting this way if its signalfd fails and cannot be replaced.
  static constexpr absl::Duration kBackstop = absl::Seconds(1);

 private:
  Reaper() = default;
  void Loop();
  void ReapAll();
  // After a signalfd failure: a fresh signalfd, or an invalid fd if none can be made.
  UniqueFd ReplaceSignalFd();

  struct Watched {
    std::vector<ExitCallback> callbacks;
    UniqueFd pidfd;  // invalid where the kernel has no pidfd_open
  };

  struct StoredExit {
    int status;
    uint64_t seq;
  };

  std::atomic<bool> running_{false};
  UniqueFd signal_fd_;  // written by Start before the thread starts; afterwards only by the reaper thread

  absl::Mutex mu_;
  // waitpid() runs with mu_ held, so a pid present in watchers_ is known not to have been collected yet.
  std::unordered_map<pid_t, Watched> watchers_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<pid_t, StoredExit> unclaimed_ ABSL_GUARDED_BY(mu_);
  std::deque<std::pair<pid_t, uint64_t>> unclaimed_order_ ABSL_GUARDED_BY(mu_);
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  ExitHook hook_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace gvshim::sys
