#include "shim/node/host.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "shim/base/status.h"
#include "shim/sys/fd.h"
#include "shim/sys/spawn.h"

namespace gvshim::node {
namespace {

constexpr size_t kMaxCapture = 4 << 20;

absl::Status MakePipe(sys::UniqueFd& r, sys::UniqueFd& w) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe2");
  r.reset(fds[0]);
  w.reset(fds[1]);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv, absl::Duration timeout) {
  if (argv.empty()) return absl::InvalidArgumentError("run: empty command");
  sys::UniqueFd out_r, out_w, err_r, err_w;
  RETURN_IF_ERROR(MakePipe(out_r, out_w));
  RETURN_IF_ERROR(MakePipe(err_r, err_w));
  sys::SpawnOptions so;
  so.argv = argv;
  so.stdout_fd = out_w.get();
  so.stderr_fd = err_w.get();
  so.pdeathsig = SIGKILL;
  auto pid = sys::Spawn(so, nullptr);  // no reaper in the node tool: the child is collected below
  if (!pid.ok()) return Annotate(pid.status(), absl::StrJoin(argv, " "));
  out_w.reset();
  err_w.reset();

  CommandResult r;
  const absl::Time deadline = absl::Now() + timeout;
  bool timed_out = false;
  struct pollfd pfd[2] = {{out_r.get(), POLLIN, 0}, {err_r.get(), POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open = 2;
  while (open > 0) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      timed_out = true;
      break;
    }
    int n = ::poll(pfd, 2, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "poll");
    for (int i = 0; i < 2; ++i) {
      if (pfd[i].fd < 0 || pfd[i].revents == 0) continue;
      char buf[16384];
      ssize_t got = ::read(pfd[i].fd, buf, sizeof buf);
      if (got > 0) {
        if (sinks[i]->size() < kMaxCapture) sinks[i]->append(buf, static_cast<size_t>(got));
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        pfd[i].fd = -1;
        --open;
      }
    }
  }
  if (timed_out) ::kill(*pid, SIGKILL);
  int status = 0;
  while (::waitpid(*pid, &status, 0) < 0) {
    if (errno != EINTR) return ErrnoStatus(errno, absl::StrCat("waitpid ", argv[0]));
  }
  if (timed_out) {
    return absl::DeadlineExceededError(absl::StrCat(absl::StrJoin(argv, " "), ": no answer within ",
                                                    absl::FormatDuration(timeout), "; killed"));
  }
  r.exit_code = sys::ExitCodeFromWaitStatus(status);
  return r;
}

absl::StatusOr<CommandResult> RealHost::Run(const std::vector<std::string>& argv, absl::Duration timeout) {
  std::vector<std::string> full = prefix_;
  full.insert(full.end(), argv.begin(), argv.end());
  return RunCommand(full, timeout);
}

std::string DescribeFailure(const std::vector<std::string>& argv, const CommandResult& r) {
  std::string text(absl::StripAsciiWhitespace(r.err.empty() ? r.out : r.err));
  // The last few lines carry the reason (containerd prints its error last).
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipWhitespace());
  if (lines.size() > 3) lines.erase(lines.begin(), lines.end() - 3);
  return absl::StrCat(absl::StrJoin(argv, " "), ": exit ", r.exit_code, lines.empty() ? "" : ": ",
                      absl::StrJoin(lines, " | "));
}

std::string HostPath(const std::string& host_root, const std::string& path) {
  std::string root(absl::StripSuffix(host_root, "/"));
  if (path.empty() || path[0] != '/') return absl::StrCat(root, "/", path);
  return absl::StrCat(root, path);
}

}  // namespace gvshim::node
