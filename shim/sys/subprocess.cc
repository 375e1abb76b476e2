#include "shim/sys/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "shim/base/status.h"
#include "shim/sys/fd.h"

namespace gvshim::sys {

namespace {

// Exit notification shared between RunSubprocess and the reaper thread; outlives the call if it must.
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
      size_t room = kMaxSubprocessCapture > out->size() ? kMaxSubprocessCapture - out->size() : 0;
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

absl::StatusOr<SubprocessResult> RunSubprocess(ProcessWatcher* reaper, SpawnOptions opts,
                                               absl::Duration timeout, const std::string& stdin_data) {
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

  const bool use_reaper = reaper != nullptr && reaper->running();
  auto state = std::make_shared<ExitState>();
  UniqueFd wait_fd;
  if (use_reaper) {
    state->event.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!state->event.valid()) return ErrnoStatus(errno, absl::StrCat("run ", name, ": eventfd"));
  }

  ASSIGN_OR_RETURN(pid_t pid, Spawn(opts, reaper));
  if (use_reaper) {
    reaper->Watch(pid, [state](int ws) {
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

  SubprocessResult result;
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
      reaper->Signal(pid, SIGKILL).IgnoreError();
    } else {
      // Nobody else collects this child: the pidfd still names it.
      (void)::syscall(SYS_pidfd_send_signal, wait_fd.get(), SIGKILL, nullptr, 0);
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
