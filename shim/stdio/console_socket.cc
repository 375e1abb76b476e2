#include "shim/stdio/console_socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "shim/base/status.h"
#include "shim/sys/socket.h"

namespace gvshim::stdio {
namespace {

constexpr char kRunDir[] = "/run/gvshim";

// Waits until fd is readable or the deadline passes.
absl::Status PollReadable(int fd, absl::Time deadline, absl::string_view what) {
  for (;;) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError(absl::StrCat("timed out ", what));
    int ms = static_cast<int>(absl::ToInt64Milliseconds(left)) + 1;
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, absl::StrCat("poll ", what));
    }
    if (n > 0) return absl::OkStatus();
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<ConsoleSocket>> ConsoleSocket::Create() {
  // /run/gvshim is root's; an unprivileged caller (unit tests) falls back to /tmp.
  if (::mkdir(kRunDir, 0711) == 0 || errno == EEXIST) {
    if (::access(kRunDir, W_OK | X_OK) == 0) {
      auto sock = CreateIn(kRunDir);
      if (sock.ok()) return sock;
    }
  }
  return CreateIn("/tmp");
}

absl::StatusOr<std::unique_ptr<ConsoleSocket>> ConsoleSocket::CreateIn(const std::string& base_dir) {
  std::string tmpl = absl::StrCat(base_dir, "/pty-XXXXXX");
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) return ErrnoStatus(errno, absl::StrCat("mkdtemp ", tmpl));
  std::string dir(buf.data());
  std::string path = absl::StrCat(dir, "/s");

  // One connection (runsc's) at a time; the private directory already keeps everyone else out.
  auto fd = sys::ListenUnix(path, 0600, /*nonblocking=*/false, /*backlog=*/1);
  if (!fd.ok()) {
    ::rmdir(dir.c_str());
    return Annotate(fd.status(), "console socket");
  }
  return std::unique_ptr<ConsoleSocket>(new ConsoleSocket(std::move(dir), std::move(path), std::move(*fd)));
}

ConsoleSocket::~ConsoleSocket() {
  listener_.reset();
  ::unlink(path_.c_str());
  ::rmdir(dir_.c_str());
}

absl::StatusOr<sys::UniqueFd> ConsoleSocket::ReceiveMaster(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  RETURN_IF_ERROR(
      PollReadable(listener_.get(), deadline, absl::StrCat("waiting for a connection on ", path_)));
  sys::UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn) return ErrnoStatus(errno, absl::StrCat("accept on console socket ", path_));
  RETURN_IF_ERROR(PollReadable(conn.get(), deadline, absl::StrCat("waiting for the pty master on ", path_)));

  // The payload is the pty's name; only the ancillary fd matters. Any extra fds a peer sends are received
  // into `fds` below and closed with it.
  char name[4096];
  iovec iov{name, sizeof name};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(conn.get(), &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoStatus(errno, absl::StrCat("recvmsg on console socket ", path_));

  std::vector<sys::UniqueFd> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.emplace_back(fd);
    }
  }
  if (fds.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("console socket ", path_, ": peer sent no file descriptor"));
  }
  if (!::isatty(fds[0].get())) {
    return absl::InvalidArgumentError(
        absl::StrCat("console socket ", path_, ": received fd is not a terminal"));
  }
  return std::move(fds[0]);
}

}  // namespace gvshim::stdio
