#include "shim/sys/fd.h"

#include <fcntl.h>

#include <cerrno>
#include <string>

#include "shim/base/status.h"

namespace gvshim::sys {

absl::Status SetNonBlocking(int fd) {
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) return ErrnoStatus(errno, "fcntl F_GETFL");
  if (::fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return ErrnoStatus(errno, "fcntl F_SETFL O_NONBLOCK");
  return absl::OkStatus();
}

ScopedSigpipeGuard::ScopedSigpipeGuard() {
  sigset_t pipe_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_);
}

ScopedSigpipeGuard::~ScopedSigpipeGuard() {
  const int saved = errno;
  sigset_t pending;
  sigpending(&pending);
  if (!sigismember(&old_, SIGPIPE) && sigismember(&pending, SIGPIPE)) {
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    struct timespec zero = {0, 0};
    sigtimedwait(&pipe_set, nullptr, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  errno = saved;
}

absl::StatusOr<PipePair> MakePipe(int flags) {
  int fds[2];
  if (::pipe2(fds, flags) != 0) return ErrnoStatus(errno, "pipe2");
  return PipePair{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

absl::StatusOr<UniqueFd> Dup(int fd) {
  int n = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (n < 0) return ErrnoStatus(errno, "dup");
  return UniqueFd(n);
}

absl::Status WriteAll(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "write");
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Returns NOT_FOUND for a clean EOF before any byte, OUT_OF_RANGE for EOF in the middle.
absl::Status ReadFull(int fd, void* data, size_t size) {
  char* p = static_cast<char*>(data);
  size_t got = 0;
  while (got < size) {
    ssize_t n = ::read(fd, p + got, size - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "read");
    }
    if (n == 0) {
      return got == 0 ? absl::NotFoundError("EOF") : absl::OutOfRangeError("unexpected EOF");
    }
    got += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadAll(int fd, size_t max) {
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "read");
    }
    if (n == 0) break;
    size_t room = max > out.size() ? max - out.size() : 0;
    out.append(buf, std::min(room, static_cast<size_t>(n)));
  }
  return out;
}

}  // namespace gvshim::sys
