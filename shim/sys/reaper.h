// The child reaper. The shim is a child subreaper: besides its own children, the sandbox and gofer processes
// that runsc leaves behind are reparented to it and must be reaped here. One thread reads a signalfd for
// SIGCHLD and collects every exited child with waitpid(-1); interested code registers per pid.
//
// There is one Reaper per process, made and started by main (the shim's Serve, the Execute server's main)
// and handed down as a ProcessWatcher to every module that spawns or watches children; it is not a global.
// Once Start() has run, nothing else in the process may call waitpid()/wait() (nor system()/popen()): the
// reaper owns every child's exit. Subprocess runs (run a command, collect its output) are in subprocess.h.
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
#include "shim/sys/process_watcher.h"

namespace gvshim::sys {

class Reaper final : public ProcessWatcher {
 public:
  using ExitHook = std::function<void(pid_t pid, int wait_status)>;

  // Only one Reaper per process may be started (it collects every child with waitpid(-1)). Once started it
  // must outlive every thread of the process: its thread is never stopped, so main makes it with new and
  // never deletes it.
  Reaper() = default;
  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;

  // Blocks SIGCHLD in the calling thread (call it from main before any other thread starts, so every thread
  // inherits the mask), makes the process a child subreaper if asked, and starts the reaper thread.
  // A second call is a no-op.
  absl::Status Start(bool subreaper);
  bool running() const override { return running_.load(std::memory_order_acquire); }

  // ProcessWatcher. Watch needs Start(). Signal goes through a pidfd where the kernel has them.
  void Watch(pid_t pid, ExitCallback on_exit) override;
  absl::Status Signal(pid_t pid, int sig) override;
  uint64_t ReapSequence() override;
  void ForgetStaleExit(pid_t pid, uint64_t seq_before_fork) override;

  // Called (on the reaper thread) for every child collected, watched or not, after its callbacks.
  void SetExitHook(ExitHook hook);

  // How many exits of unwatched pids are remembered.
  static constexpr size_t kMaxUnclaimed = 4096;
  // The reaper collects exits at least this often even without a SIGCHLD notification; it also keeps
  // collecting this way if its signalfd fails and cannot be replaced.
  static constexpr absl::Duration kBackstop = absl::Seconds(1);

 private:
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
