#include "shim/sys/reaper.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "shim/base/log.h"
#include "shim/base/status.h"

namespace gvshim::sys {

Reaper& Reaper::Get() {
  // Never destroyed: the reaper thread may run until the process exits.
  static Reaper* const reaper = new Reaper();
  return *reaper;
}

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

void Reaper::Loop() {
  // Children may have exited before the signalfd existed; their SIGCHLD is pending and also shows up below,
  // but collecting first costs nothing.
  ReapAll();
  for (;;) {
    signalfd_siginfo info[16];
    ssize_t n = ::read(signal_fd_.get(), info, sizeof info);
    if (n < 0 && errno != EINTR && errno != EAGAIN) {
      log::Errorf("reaper: read signalfd: %s", strerror(errno));
      return;
    }
    // SIGCHLD coalesces, so one notification may stand for many children: always drain.
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
        callbacks = std::move(it->second);
        watchers_.erase(it);
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
      watchers_[pid].push_back(std::move(on_exit));
      return;
    }
    // Claimed: the entry in unclaimed_order_ goes stale and is skipped when it reaches the front.
    status = it->second.status;
    unclaimed_.erase(it);
  }
  on_exit(status);
}

absl::Status Reaper::Signal(pid_t pid, int sig) {
  if (pid <= 0) return absl::InvalidArgumentError(absl::StrCat("signal pid ", pid, ": invalid pid"));
  absl::MutexLock lock(&mu_);
  if (started_ && !watchers_.contains(pid) && unclaimed_.contains(pid)) {
    return absl::NotFoundError(absl::StrCat("signal pid ", pid, ": process already exited"));
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

namespace {

// Exit notification shared between Run and the reaper thread; outlives Run if it must.
struct ExitState {
  absl::Mutex mu;
  bool exited ABSL_GUARDED_BY(mu) = false;
  int status ABSL_GUARDED_BY(mu) = 0;
  UniqueFd event;  // eventfd, becomes readable on exit
};

// Reads what is available now. Returns false once the pipe is at EOF (or broken).
bool ReadSome(int fd, std::string* out) {
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      size_t room = Reaper::kMaxCapture > out->size() ? Reaper::kMaxCapture - out->size() : 0;
      out->append(buf, std::min(room, static_cast<size_t>(n)));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    return false;
  }
}

// Writes as much of data[*off..] as the pipe takes now, without dying of SIGPIPE if the reader is gone.
// Returns false when writing is over (all written, or the reader went away).
bool WriteSome(int fd, const std::string& data, size_t* off) {
  ScopedSigpipeGuard guard;
  while (*off < data.size()) {
    ssize_t n = ::write(fd, data.data() + *off, data.size() - *off);
    if (n > 0) {
      *off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return *off < data.size();
    return false;  // EPIPE (the reader went away) or another error: writing is over
  }
  return false;
}

}  // namespace

absl::StatusOr<Reaper::Result> Reaper::Run(SpawnOptions opts, absl::Duration timeout,
                                           const std::string& stdin_data) {
  const std::string name = opts.argv.empty() ? std::string("<empty argv>") : opts.argv[0];
  std::optional<PipePair> out_pipe, err_pipe, in_pipe;
  if (opts.stdout_fd < 0) {
    ASSIGN_OR_RETURN(out_pipe, MakePipe(O_CLOEXEC));
    RETURN_IF_ERROR(SetNonBlocking(out_pipe->read.get()));
    opts.stdout_fd = out_pipe->write.get();
  }
  if (opts.stderr_fd < 0) {
    ASSIGN_OR_RETURN(err_pipe, MakePipe(O_CLOEXEC));
    RETURN_IF_ERROR(SetNonBlocking(err_pipe->read.get()));
    opts.stderr_fd = err_pipe->write.get();
  }
  if (opts.stdin_fd < 0 && !stdin_data.empty()) {
    ASSIGN_OR_RETURN(in_pipe, MakePipe(O_CLOEXEC));
    RETURN_IF_ERROR(SetNonBlocking(in_pipe->write.get()));
    opts.stdin_fd = in_pipe->read.get();
  }

  const bool use_reaper = running();
  auto state = std::make_shared<ExitState>();
  UniqueFd wait_fd;
  if (use_reaper) {
    state->event.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!state->event.valid()) return ErrnoStatus(errno, absl::StrCat("run ", name, ": eventfd"));
  }

  ASSIGN_OR_RETURN(pid_t pid, Spawn(opts));
  if (use_reaper) {
    Watch(pid, [state](int ws) {
      absl::MutexLock lock(&state->mu);
      state->exited = true;
      state->status = ws;
      uint64_t one = 1;
      ssize_t unused = ::write(state->event.get(), &one, sizeof one);
      (void)unused;
    });
  } else {
    // Nobody else collects this child, so the pid cannot be recycled before our waitpid.
    wait_fd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!wait_fd.valid()) {
      absl::Status st = ErrnoStatus(errno, absl::StrCat("run ", name, ": pidfd_open"));
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
      return st;
    }
  }
  const int exit_fd = use_reaper ? state->event.get() : wait_fd.get();

  // The child holds its own copies now.
  if (out_pipe) out_pipe->write.reset();
  if (err_pipe) err_pipe->write.reset();
  if (in_pipe) in_pipe->read.reset();

  Result result;
  size_t in_off = 0;
  bool in_open = in_pipe.has_value();
  bool out_open = out_pipe.has_value(), err_open = err_pipe.has_value();
  bool exited = false, timed_out = false;
  absl::Status failure;  // a poll failure: the child is killed and collected, then this is returned
  const absl::Time deadline = absl::Now() + timeout;

  while (!exited) {
    pollfd fds[4];
    int nfds = 0;
    fds[nfds++] = {exit_fd, POLLIN, 0};
    int out_i = -1, err_i = -1, in_i = -1;
    if (out_open) {
      out_i = nfds;
      fds[nfds++] = {out_pipe->read.get(), POLLIN, 0};
    }
    if (err_open) {
      err_i = nfds;
      fds[nfds++] = {err_pipe->read.get(), POLLIN, 0};
    }
    if (in_open) {
      in_i = nfds;
      fds[nfds++] = {in_pipe->write.get(), POLLOUT, 0};
    }
    int wait_ms = -1;
    if (timeout != absl::InfiniteDuration()) {
      absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        timed_out = true;
        break;
      }
      wait_ms = static_cast<int>(
          std::min<int64_t>(absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))), 1 << 30));
    }
    int n = ::poll(fds, nfds, wait_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      failure = ErrnoStatus(errno, absl::StrCat("run ", name, ": poll"));
      break;
    }
    if (out_i >= 0 && fds[out_i].revents != 0) out_open = ReadSome(out_pipe->read.get(), &result.out);
    if (err_i >= 0 && fds[err_i].revents != 0) err_open = ReadSome(err_pipe->read.get(), &result.err);
    if (in_i >= 0 && fds[in_i].revents != 0) {
      in_open = WriteSome(in_pipe->write.get(), stdin_data, &in_off);
      if (!in_open) in_pipe->write.reset();
    }
    if (fds[0].revents != 0) exited = true;
  }
  if (in_pipe) in_pipe->write.reset();

  if (timed_out || !failure.ok()) {
    if (use_reaper) {
      Signal(pid, SIGKILL).IgnoreError();
    } else {
      ::kill(pid, SIGKILL);
    }
    // Wait for the (now certain) exit below without a deadline.
    pollfd pfd = {exit_fd, POLLIN, 0};
    while (::poll(&pfd, 1, -1) < 0 && errno == EINTR) {
    }
  }

  if (use_reaper) {
    absl::MutexLock lock(&state->mu);
    result.wait_status = state->status;
  } else {
    int ws = 0;
    while (::waitpid(pid, &ws, 0) < 0) {
      if (errno != EINTR) return ErrnoStatus(errno, absl::StrCat("run ", name, ": waitpid"));
    }
    result.wait_status = ws;
  }
  result.exit_code = ExitCodeFromWaitStatus(result.wait_status);
  // Whatever the child wrote before exiting is in the pipes now.
  if (out_open) ReadSome(out_pipe->read.get(), &result.out);
  if (err_open) ReadSome(err_pipe->read.get(), &result.err);

  if (!failure.ok()) return failure;
  if (timed_out) {
    return absl::DeadlineExceededError(
        absl::StrCat("run ", name, ": timed out after ", absl::FormatDuration(timeout), ", killed"));
  }
  return result;
}

}  // namespace gvshim::sys
