#include "shim/sys/reaper.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "shim/base/log.h"
#include "shim/base/status.h"

namespace gvshim::sys {

absl::Status Reaper::Start(bool subreaper) {
  absl::MutexLock lock(&mu_);
  if (started_) return absl::OkStatus();
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  if (int err = pthread_sigmask(SIG_BLOCK, &set, nullptr); err != 0) {
    return ErrnoStatus(err, "reaper: block SIGCHLD");
  }
  if (subreaper && ::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    return ErrnoStatus(errno, "reaper: prctl(PR_SET_CHILD_SUBREAPER)");
  }
  signal_fd_.reset(::signalfd(-1, &set, SFD_CLOEXEC));
  if (!signal_fd_.valid()) return ErrnoStatus(errno, "reaper: signalfd");
  started_ = true;
  running_.store(true, std::memory_order_release);
  // The thread inherits the blocked SIGCHLD from this thread.
  std::thread([this] { Loop(); }).detach();
  return absl::OkStatus();
}

UniqueFd Reaper::ReplaceSignalFd() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  UniqueFd fd(::signalfd(-1, &set, SFD_CLOEXEC));
  if (!fd.valid()) log::Errorf("reaper: cannot make a new signalfd: %s", strerror(errno));
  return fd;
}

void Reaper::Loop() {
  // Children may have exited before the signalfd existed; their SIGCHLD is pending and also shows up below,
  // but collecting first costs nothing.
  ReapAll();
  const int backstop_ms = static_cast<int>(absl::ToInt64Milliseconds(kBackstop));
  for (;;) {
    if (!signal_fd_.valid()) {
      // No signalfd could be made: keep collecting on the backstop period rather than never again.
      ::poll(nullptr, 0, backstop_ms);
      signal_fd_ = ReplaceSignalFd();
      ReapAll();
      continue;
    }
    pollfd pfd = {signal_fd_.get(), POLLIN, 0};
    int n = ::poll(&pfd, 1, backstop_ms);
    int err = n < 0 ? errno : 0;
    if (n > 0) {
      signalfd_siginfo info[16];
      ssize_t r = ::read(signal_fd_.get(), info, sizeof info);
      if (r < 0 && errno != EINTR && errno != EAGAIN) err = errno;
    }
    if (err != 0 && err != EINTR) {
      // Never end silently: every exit the shim waits for would be lost. Replace the fd and go on.
      log::Errorf("reaper: signalfd %d failed (%s); replacing it", signal_fd_.get(), strerror(err));
      signal_fd_ = ReplaceSignalFd();
    }
    // SIGCHLD coalesces, so one notification may stand for many children: always drain. A timeout (no
    // notification within kBackstop) drains too.
    ReapAll();
  }
}

void Reaper::ReapAll() {
  for (;;) {
    pid_t pid;
    int status = 0;
    std::vector<ExitCallback> callbacks;
    ExitHook hook;
    {
      absl::MutexLock lock(&mu_);
      pid = ::waitpid(-1, &status, WNOHANG);
      if (pid < 0 && errno == EINTR) continue;
      if (pid <= 0) return;  // 0: children left but none exited; ECHILD: no children
      ++seq_;
      if (auto it = watchers_.find(pid); it != watchers_.end()) {
        callbacks = std::move(it->second.callbacks);
        watchers_.erase(it);  // closes its pidfd: the pid may be reused from now on
      } else {
        unclaimed_[pid] = StoredExit{status, seq_};
        unclaimed_order_.emplace_back(pid, seq_);
        while (unclaimed_order_.size() > kMaxUnclaimed) {
          auto [old_pid, old_seq] = unclaimed_order_.front();
          unclaimed_order_.pop_front();
          if (auto u = unclaimed_.find(old_pid); u != unclaimed_.end() && u->second.seq == old_seq) {
            unclaimed_.erase(u);
          }
        }
      }
      hook = hook_;
    }
    for (auto& cb : callbacks) cb(status);
    if (hook) hook(pid, status);
  }
}

void Reaper::Watch(pid_t pid, ExitCallback on_exit) {
  int status;
  {
    absl::MutexLock lock(&mu_);
    auto it = unclaimed_.find(pid);
    if (it == unclaimed_.end()) {
      auto w = watchers_.find(pid);
      if (w == watchers_.end()) {
        // Not collected (waitpid needs mu_): if pid is our child, it is alive or a zombie, and cannot have
        // been reused. Make sure it is one, or this watch would never fire.
        siginfo_t info{};
        if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 &&
            errno == ECHILD) {
          log::Errorf(
              "reaper: pid %d is not a child of this process (or its exit was collected and forgotten); "
              "reporting exit 255",
              pid);
          status = W_EXITCODE(255, 0);
        } else {
          Watched& entry = watchers_[pid];
          entry.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
          entry.callbacks.push_back(std::move(on_exit));
          return;
        }
      } else {
        w->second.callbacks.push_back(std::move(on_exit));
        return;
      }
    } else {
      // Claimed: the entry in unclaimed_order_ goes stale and is skipped when it reaches the front.
      status = it->second.status;
      unclaimed_.erase(it);
    }
  }
  on_exit(status);
}

absl::Status Reaper::Signal(pid_t pid, int sig) {
  if (pid <= 0) return absl::InvalidArgumentError(absl::StrCat("signal pid ", pid, ": invalid pid"));
  absl::MutexLock lock(&mu_);
  // Only a watched child whose exit has not been collected: with mu_ held it cannot be collected (and its pid
  // reused) before the signal is sent. Any other pid might belong to some other process by now.
  auto it = watchers_.find(pid);
  if (it == watchers_.end()) {
    return absl::NotFoundError(
        absl::StrCat("signal pid ", pid, ": not a live child watched by the reaper (already exited?)"));
  }
  if (it->second.pidfd.valid()) {
    if (::syscall(SYS_pidfd_send_signal, it->second.pidfd.get(), sig, nullptr, 0) != 0) {
      return ErrnoStatus(errno, absl::StrCat("signal pid ", pid));
    }
    return absl::OkStatus();
  }
  if (::kill(pid, sig) != 0) return ErrnoStatus(errno, absl::StrCat("signal pid ", pid));
  return absl::OkStatus();
}

void Reaper::SetExitHook(ExitHook hook) {
  absl::MutexLock lock(&mu_);
  hook_ = std::move(hook);
}

uint64_t Reaper::ReapSequence() {
  absl::MutexLock lock(&mu_);
  return seq_;
}

void Reaper::ForgetStaleExit(pid_t pid, uint64_t seq_before_fork) {
  absl::MutexLock lock(&mu_);
  if (auto it = unclaimed_.find(pid); it != unclaimed_.end() && it->second.seq <= seq_before_fork) {
    unclaimed_.erase(it);
  }
}

}  // namespace gvshim::sys
