#include "shim/sys/socket.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "shim/base/status.h"

namespace gvshim::sys {
namespace {

absl::StatusOr<sockaddr_un> Address(const std::string& what, const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", path, ": socket path empty or too long (",
                                                   path.size(), " bytes, max ", sizeof(addr.sun_path) - 1,
                                                   ")"));
  }
  path.copy(addr.sun_path, path.size());
  return addr;
}

}  // namespace

absl::StatusOr<UniqueFd> ListenUnix(const std::string& path, mode_t mode, bool nonblocking, int backlog) {
  ASSIGN_OR_RETURN(sockaddr_un addr, Address("listen", path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("listen ", path, ": socket"));
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return ErrnoStatus(errno, absl::StrCat("listen: bind ", path));
  }
  // Not listening yet: a connect now is refused, so the mode is in place before anyone can connect.
  if (::chmod(path.c_str(), mode) != 0) {
    absl::Status st = ErrnoStatus(errno, absl::StrCat("listen: chmod ", path));
    ::unlink(path.c_str());
    return st;
  }
  if (::listen(fd.get(), backlog) != 0) {
    absl::Status st = ErrnoStatus(errno, absl::StrCat("listen ", path));
    ::unlink(path.c_str());
    return st;
  }
  return fd;
}

absl::StatusOr<UniqueFd> DialUnix(const std::string& address, absl::Duration timeout) {
  const std::string path = address.rfind("unix://", 0) == 0 ? address.substr(7) : address;
  ASSIGN_OR_RETURN(sockaddr_un addr, Address("dial", path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return absl::UnavailableError(absl::StrCat("dial ", path, ": socket: ", std::strerror(errno)));
  // A Unix-socket connect blocks only while the listener's backlog is full, and then honours SO_SNDTIMEO.
  const bool bounded = timeout != absl::InfiniteDuration();
  if (bounded) {
    timeval tv = absl::ToTimeval(std::max(timeout, absl::Microseconds(1)));  // 0 would mean "no timeout"
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) {
      return ErrnoStatus(errno, absl::StrCat("dial ", path, ": setsockopt SO_SNDTIMEO"));
    }
  }
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    if (err == EAGAIN || err == EINPROGRESS || err == ETIMEDOUT) {
      return absl::DeadlineExceededError(
          absl::StrCat("dial ", path, ": not accepted within ", absl::FormatDuration(timeout)));
    }
    return absl::UnavailableError(absl::StrCat("dial ", path, ": connect: ", std::strerror(err)));
  }
  if (bounded) {
    timeval zero{};
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof zero) != 0) {
      return ErrnoStatus(errno, absl::StrCat("dial ", path, ": setsockopt SO_SNDTIMEO"));
    }
  }
  return fd;
}

absl::StatusOr<UniqueFd> ClaimUnixSocket(const std::string& path, mode_t mode) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  // The directory is the lock: it exists as long as the socket can, and no lock file is left behind.
  UniqueFd lock(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!lock) return ErrnoStatus(errno, absl::StrCat("claim ", path, ": open ", dir));
  int rc;
  do {
    rc = ::flock(lock.get(), LOCK_EX);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return ErrnoStatus(errno, absl::StrCat("claim ", path, ": lock ", dir));

  if (DialUnix(path, absl::Seconds(1)).ok()) return UniqueFd();  // served
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat("claim ", path, ": exists and is not a socket"));
    }
    // A socket nobody serves: left by a shim that died.
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return ErrnoStatus(errno, absl::StrCat("claim ", path, ": remove stale socket"));
    }
  }
  // Listening before the lock is released: the next claimer's dial succeeds.
  return ListenUnix(path, mode);
}

}  // namespace gvshim::sys
