#include "shim/sys/socket.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "shim/base/status.h"

namespace gvshim::sys {
namespace {

constexpr size_t kSunPath = sizeof(sockaddr_un::sun_path);  // 108 on Linux

// A parsed address, ready for bind/connect.
struct Address {
  sockaddr_un sa{};
  socklen_t len = 0;
  bool abstract = false;
  std::string shown;  // as written, without "unix://": the name errors use
};

absl::StatusOr<Address> ParseAddress(absl::string_view op, const std::string& address) {
  Address a;
  a.sa.sun_family = AF_UNIX;
  a.shown = address.rfind("unix://", 0) == 0 ? address.substr(7) : address;
  if (a.shown.empty()) return absl::InvalidArgumentError(absl::StrCat(op, ": empty Unix socket address"));
  if (a.shown[0] == '@') {
    const absl::string_view name = absl::string_view(a.shown).substr(1);
    if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(op, " @: empty abstract socket name"));
    if (name.size() > kSunPath - 1) {
      return absl::InvalidArgumentError(absl::StrCat(op, " ", a.shown, ": abstract socket name too long (",
                                                     name.size(), " bytes, at most ", kSunPath - 1, ")"));
    }
    a.abstract = true;
    a.sa.sun_path[0] = '\0';
    std::memcpy(a.sa.sun_path + 1, name.data(), name.size());
    a.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    return a;
  }
  if (a.shown.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(op, " ", a.shown, ": socket path contains a NUL byte"));
  }
  if (a.shown.size() >= kSunPath) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, " ", a.shown, ": socket path too long (", a.shown.size(),
                     " bytes; a Unix socket path must be under ", kSunPath, ")"));
  }
  std::memcpy(a.sa.sun_path, a.shown.data(), a.shown.size());
  a.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + a.shown.size() + 1);
  return a;
}

std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

// socket + bind. op names the caller's operation in errors.
absl::StatusOr<UniqueFd> Bind(absl::string_view op, const Address& a, bool nonblocking) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0));
  if (!fd) return ErrnoStatus(errno, absl::StrCat(op, " ", a.shown, ": socket"));
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a.sa), a.len) == 0) return fd;
  const int err = errno;
  if (err == EADDRINUSE) {
    return absl::AlreadyExistsError(
        absl::StrCat(op, " ", a.shown,
                     ": bind: ", a.abstract ? "the abstract name is bound already" : "a file exists there"));
  }
  if (err == ENOENT && !a.abstract) {
    return absl::NotFoundError(
        absl::StrCat(op, " ", a.shown, ": bind: directory ", DirOf(a.shown), " does not exist"));
  }
  return ErrnoStatus(err, absl::StrCat(op, " ", a.shown, ": bind"));
}

// The outcome of one dial: the connected fd, or the errno of the step that failed.
struct Dialled {
  UniqueFd fd;
  int err = 0;                  // 0: connected
  const char* setup = nullptr;  // the set-up step that failed; null when connect itself failed (or succeeded)
};

// A Unix-socket connect blocks only while the listener's backlog is full, and then honours SO_SNDTIMEO: a
// connect still blocked after `timeout` fails with EAGAIN.
Dialled Connect(const Address& a, absl::Duration timeout) {
  Dialled d;
  d.fd.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!d.fd) return {UniqueFd(), errno, "socket"};
  const bool bounded = timeout != absl::InfiniteDuration();
  if (bounded) {
    timeval tv = absl::ToTimeval(std::max(timeout, absl::Microseconds(1)));  // 0 would mean "no timeout"
    if (::setsockopt(d.fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) {
      return {UniqueFd(), errno, "setsockopt SO_SNDTIMEO"};
    }
  }
  int rc;
  do {
    rc = ::connect(d.fd.get(), reinterpret_cast<const sockaddr*>(&a.sa), a.len);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return {UniqueFd(), errno == EINPROGRESS || errno == ETIMEDOUT ? EAGAIN : errno, nullptr};
  if (bounded) {
    timeval zero{};
    if (::setsockopt(d.fd.get(), SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof zero) != 0) {
      return {UniqueFd(), errno, "setsockopt SO_SNDTIMEO"};
    }
  }
  return d;
}

// ECONNREFUSED (a socket nobody listens on) and ENOENT (no file): a definite "nobody serves this address".
bool NobodyListens(const Dialled& d) {
  return d.setup == nullptr && (d.err == ECONNREFUSED || d.err == ENOENT);
}

// The listener's backlog stayed full for the whole timeout: it lives, but is busy or hung.
bool NotAccepted(const Dialled& d) { return d.setup == nullptr && d.err == EAGAIN; }

}  // namespace

absl::StatusOr<UniqueFd> ListenUnix(const std::string& path, mode_t mode, bool nonblocking, int backlog) {
  ASSIGN_OR_RETURN(Address a, ParseAddress("listen", path));
  if (a.abstract) {
    return absl::InvalidArgumentError(absl::StrCat("listen ", a.shown,
                                                   ": an abstract socket has no file mode to set (use "
                                                   "ListenAbstract, and accept that anyone may connect)"));
  }
  ASSIGN_OR_RETURN(UniqueFd fd, Bind("listen", a, nonblocking));
  // Not listening yet: a connect now is refused, so the mode is in place before anyone can connect.
  if (::chmod(a.shown.c_str(), mode) != 0) {
    absl::Status st = ErrnoStatus(errno, absl::StrCat("listen ", a.shown, ": chmod"));
    ::unlink(a.shown.c_str());
    return st;
  }
  if (::listen(fd.get(), backlog) != 0) {
    absl::Status st = ErrnoStatus(errno, absl::StrCat("listen ", a.shown, ": listen"));
    ::unlink(a.shown.c_str());
    return st;
  }
  return fd;
}

absl::StatusOr<UniqueFd> ListenAbstract(const std::string& address, bool nonblocking, int backlog) {
  ASSIGN_OR_RETURN(Address a, ParseAddress("listen", address));
  if (!a.abstract) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen ", a.shown, ": not an abstract socket name (\"@name\"); use ListenUnix"));
  }
  ASSIGN_OR_RETURN(UniqueFd fd, Bind("listen", a, nonblocking));
  if (::listen(fd.get(), backlog) != 0)
    return ErrnoStatus(errno, absl::StrCat("listen ", a.shown, ": listen"));
  return fd;
}

absl::StatusOr<UniqueFd> DialUnix(const std::string& address, absl::Duration timeout) {
  ASSIGN_OR_RETURN(Address a, ParseAddress("dial", address));
  Dialled d = Connect(a, timeout);
  if (d.err == 0) return std::move(d.fd);
  if (d.setup != nullptr) return ErrnoStatus(d.err, absl::StrCat("dial ", a.shown, ": ", d.setup));
  if (NotAccepted(d)) {
    return absl::DeadlineExceededError(absl::StrCat("dial ", a.shown, ": not accepted within ",
                                                    absl::FormatDuration(timeout), " (server busy or hung)"));
  }
  if (NobodyListens(d)) {
    return absl::UnavailableError(
        absl::StrCat("dial ", a.shown, ": nobody listens there (connect: ", std::strerror(d.err), ")"));
  }
  return absl::UnavailableError(absl::StrCat("dial ", a.shown, ": connect: ", std::strerror(d.err)));
}

absl::StatusOr<bool> ClaimUnixPath(const std::string& path, const std::function<absl::Status()>& bind,
                                   absl::Duration probe_timeout) {
  ASSIGN_OR_RETURN(Address a, ParseAddress("claim", path));
  if (a.abstract) {
    return absl::InvalidArgumentError(absl::StrCat(
        "claim ", a.shown, ": abstract names are exclusive and never stale; use ListenAbstract"));
  }
  const std::string dir = DirOf(a.shown);
  // The directory is the lock: it exists as long as the socket can, and no lock file is left behind.
  UniqueFd lock(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!lock) return ErrnoStatus(errno, absl::StrCat("claim ", a.shown, ": open directory ", dir));
  int rc;
  do {
    rc = ::flock(lock.get(), LOCK_EX);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return ErrnoStatus(errno, absl::StrCat("claim ", a.shown, ": lock directory ", dir));

  Dialled probe = Connect(a, probe_timeout);
  if (probe.err == 0) return false;  // served
  if (!NobodyListens(probe)) {
    // A full backlog (no answer in time) is a live owner that is busy or hung; any other failure proves
    // nothing either. Removing the file would cut that owner off from every new client.
    if (NotAccepted(probe)) {
      return absl::UnavailableError(
          absl::StrCat("claim ", a.shown, ": a server holds this socket but did not accept within ",
                       absl::FormatDuration(probe_timeout), " (busy or hung); left in place"));
    }
    return ErrnoStatus(probe.err, absl::StrCat("claim ", a.shown,
                                               ": probe: ", probe.setup != nullptr ? probe.setup : "connect",
                                               " (socket left in place)"));
  }
  struct stat st;
  if (::lstat(a.shown.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat("claim ", a.shown, ": exists and is not a socket"));
    }
    // A socket nobody listens on: left by a server that died.
    if (::unlink(a.shown.c_str()) != 0 && errno != ENOENT) {
      return ErrnoStatus(errno, absl::StrCat("claim ", a.shown, ": remove stale socket"));
    }
  }
  // Listening before the lock is released: the next claimer's dial succeeds.
  RETURN_IF_ERROR(bind());
  return true;
}

absl::StatusOr<UniqueFd> ClaimUnixSocket(const std::string& path, mode_t mode, absl::Duration probe_timeout) {
  UniqueFd fd;
  auto listen = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(fd, ListenUnix(path, mode));  // ListenUnix takes the same "unix://" forms
    return absl::OkStatus();
  };
  ASSIGN_OR_RETURN(const bool claimed, ClaimUnixPath(path, listen, probe_timeout));
  if (!claimed) return UniqueFd();  // served
  return fd;
}

}  // namespace gvshim::sys
