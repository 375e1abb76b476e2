#include "shim/sys/spawn.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "shim/base/status.h"
#include "shim/sys/fd.h"

extern char** environ;

namespace gvshim::sys {
namespace {

constexpr char kDefaultPath[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// What the child reports through the CLOEXEC pipe when it fails before exec.
enum class Stage : int {
  kSetsid = 1,
  kPdeathsig,
  kDup,
  kChdir,
  kExec,
  kUnshareMountNs,
  kSlaveMounts,
  kHideSysctls
};
struct ChildError {
  Stage stage;
  int err;
};

[[noreturn]] void ChildFail(int fd, Stage stage, int err) {
  ChildError e{stage, err};
  // Nothing useful can be done if this write fails; the parent then sees a clean EOF plus exit 127.
  ssize_t unused = ::write(fd, &e, sizeof e);
  (void)unused;
  ::_exit(127);
}

// Everything the child needs, prepared before fork so that the child never allocates.
struct ChildPlan {
  std::vector<char*> argv;
  std::vector<char*> envp;  // empty: use environ
  std::vector<std::string> candidates;
  std::vector<int> sources;  // sources[i] becomes fd i in the child
  std::vector<int> scratch;  // room for the child's temporary dups
  const char* cwd = nullptr;
  bool new_session = false;
  bool hide_proc_sys_net = false;
  int pdeathsig = 0;
  pid_t parent = 0;
  int max_fd = 0;  // fallback bound when close_range is unavailable
};

[[noreturn]] void RunChild(ChildPlan& plan, int err_fd) {
  // Default dispositions first: the parent blocked every signal around fork, so no handler can run meanwhile.
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    ::sigaction(sig, &dfl, nullptr);  // fails harmlessly for signals reserved by libc
  }
  if (plan.new_session && ::setsid() < 0) ChildFail(err_fd, Stage::kSetsid, errno);
  if (plan.pdeathsig != 0) {
    if (::prctl(PR_SET_PDEATHSIG, plan.pdeathsig) != 0) ChildFail(err_fd, Stage::kPdeathsig, errno);
    // The parent may have died between fork and prctl; then the signal would never come.
    if (::getppid() != plan.parent) ::_exit(127);
  }

  // Move every source (and the error pipe) above the target range first, so that no dup2 clobbers a source
  // that is still needed. Fresh dups carry FD_CLOEXEC; dup2 onto the targets clears it.
  const int n = static_cast<int>(plan.sources.size());
  int high_err = ::fcntl(err_fd, F_DUPFD_CLOEXEC, n);
  if (high_err < 0) ChildFail(err_fd, Stage::kDup, errno);
  err_fd = high_err;
  for (int i = 0; i < n; ++i) {
    plan.scratch[i] = ::fcntl(plan.sources[i], F_DUPFD_CLOEXEC, n);
    if (plan.scratch[i] < 0) ChildFail(err_fd, Stage::kDup, errno);
  }
  for (int i = 0; i < n; ++i) {
    if (::dup2(plan.scratch[i], i) < 0) ChildFail(err_fd, Stage::kDup, errno);
  }
  // Everything from n up is closed on exec (including the scratch dups and the error pipe).
  if (::syscall(SYS_close_range, static_cast<unsigned>(n), ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    // Most of these are not open: EBADF is the expected answer.
    for (int fd = n; fd < plan.max_fd; ++fd) (void)::fcntl(fd, F_SETFD, FD_CLOEXEC);
  }

  if (plan.hide_proc_sys_net) {
    if (::unshare(CLONE_NEWNS) != 0) ChildFail(err_fd, Stage::kUnshareMountNs, errno);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0)
      ChildFail(err_fd, Stage::kSlaveMounts, errno);
    if (::mount("gvshim-hidden", "/proc/sys/net", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                "size=4k,mode=0555") != 0) {
      ChildFail(err_fd, Stage::kHideSysctls, errno);
    }
  }
  if (plan.cwd != nullptr && ::chdir(plan.cwd) != 0) ChildFail(err_fd, Stage::kChdir, errno);

  sigset_t empty;
  sigemptyset(&empty);
  ::sigprocmask(SIG_SETMASK, &empty, nullptr);

  char** envp = plan.envp.empty() ? environ : plan.envp.data();
  int err = ENOENT;
  bool saw_eacces = false;
  for (const std::string& path : plan.candidates) {
    ::execve(path.c_str(), plan.argv.data(), envp);
    err = errno;
    if (err == EACCES) {
      saw_eacces = true;
    } else if (err != ENOENT && err != ENOTDIR) {
      break;
    }
  }
  if (saw_eacces && (err == ENOENT || err == ENOTDIR)) err = EACCES;
  ChildFail(err_fd, Stage::kExec, err);
}

std::vector<std::string> Candidates(const SpawnOptions& opts) {
  const std::string& name = opts.argv[0];
  if (name.find('/') != std::string::npos) return {name};
  std::string path;
  bool found = false;
  for (const std::string& kv : opts.env) {
    if (kv.rfind("PATH=", 0) == 0) {
      path = kv.substr(5);
      found = true;
    }
  }
  if (!found) {
    const char* p = std::getenv("PATH");
    path = p != nullptr ? p : kDefaultPath;
  }
  std::vector<std::string> out;
  for (absl::string_view dir : absl::StrSplit(path, ':')) {
    if (dir.empty()) dir = ".";
    out.push_back(absl::StrCat(dir, "/", name));
  }
  return out;
}

}  // namespace

int ExitCodeFromWaitStatus(int ws) {
  if (WIFEXITED(ws)) return WEXITSTATUS(ws);
  if (WIFSIGNALED(ws)) return 128 + WTERMSIG(ws);
  return -1;
}

absl::StatusOr<pid_t> Spawn(const SpawnOptions& opts, ProcessWatcher* reaper) {
  if (opts.argv.empty() || opts.argv[0].empty()) return absl::InvalidArgumentError("spawn: empty argv");

  ChildPlan plan;
  for (const std::string& a : opts.argv) plan.argv.push_back(const_cast<char*>(a.c_str()));
  plan.argv.push_back(nullptr);
  if (!opts.env.empty()) {
    for (const std::string& e : opts.env) plan.envp.push_back(const_cast<char*>(e.c_str()));
    plan.envp.push_back(nullptr);
  }
  plan.candidates = Candidates(opts);
  plan.cwd = opts.cwd.empty() ? nullptr : opts.cwd.c_str();
  plan.new_session = opts.new_session;
  plan.hide_proc_sys_net = opts.hide_proc_sys_net;
  plan.pdeathsig = opts.pdeathsig;
  plan.parent = ::getpid();
  struct rlimit rl;
  plan.max_fd = (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
                    ? static_cast<int>(std::min<rlim_t>(rl.rlim_cur, 1 << 20))
                    : 1 << 16;

  UniqueFd dev_null;
  auto source = [&](int fd) -> absl::StatusOr<int> {
    if (fd >= 0) return fd;
    if (!dev_null.valid()) {
      dev_null.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
      if (!dev_null.valid()) return ErrnoStatus(errno, "open /dev/null");
    }
    return dev_null.get();
  };
  for (int fd : {opts.stdin_fd, opts.stdout_fd, opts.stderr_fd}) {
    ASSIGN_OR_RETURN(int src, source(fd));
    plan.sources.push_back(src);
  }
  for (int fd : opts.extra_fds) {
    if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("spawn ", opts.argv[0], ": invalid extra fd"));
    plan.sources.push_back(fd);
  }
  plan.scratch.resize(plan.sources.size());

  ASSIGN_OR_RETURN(PipePair err_pipe, MakePipe(O_CLOEXEC));

  // Block every signal across fork so the child cannot run one of the shim's handlers before it resets them.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  const uint64_t seq = reaper != nullptr ? reaper->ReapSequence() : 0;
  pid_t pid = ::fork();
  if (pid == 0) RunChild(plan, err_pipe.write.get());
  int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return ErrnoStatus(fork_errno, absl::StrCat("fork for ", opts.argv[0]));
  // An exit recorded for an older process that had this pid must not be mistaken for this child's.
  if (reaper != nullptr) reaper->ForgetStaleExit(pid, seq);

  err_pipe.write.reset();
  ChildError e;
  absl::Status st = ReadFull(err_pipe.read.get(), &e, sizeof e);
  if (absl::IsNotFound(st)) return pid;  // clean EOF: exec succeeded
  // The child failed (or the report was garbled); it exits 127 right away. When the reaper thread runs it
  // collects the child instead (waitpid then fails with ECHILD, which is fine).
  if (reaper == nullptr || !reaper->running()) {
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  if (!st.ok()) return Annotate(st, absl::StrCat("spawn ", opts.argv[0], ": reading exec status"));
  switch (e.stage) {
    case Stage::kExec:
      return ErrnoStatus(e.err, absl::StrCat("exec ", opts.argv[0]));
    case Stage::kChdir:
      return ErrnoStatus(e.err, absl::StrCat("spawn ", opts.argv[0], ": chdir ", opts.cwd));
    case Stage::kSetsid:
      return ErrnoStatus(e.err, absl::StrCat("spawn ", opts.argv[0], ": setsid"));
    case Stage::kPdeathsig:
      return ErrnoStatus(e.err, absl::StrCat("spawn ", opts.argv[0], ": prctl(PR_SET_PDEATHSIG)"));
    case Stage::kDup:
      return ErrnoStatus(e.err, absl::StrCat("spawn ", opts.argv[0], ": dup2"));
    case Stage::kUnshareMountNs:
      return ErrnoStatus(e.err, absl::StrCat("spawn ", opts.argv[0], ": unshare(CLONE_NEWNS)"));
    case Stage::kSlaveMounts:
      return ErrnoStatus(e.err, absl::StrCat("spawn ", opts.argv[0], ": making / a mount slave"));
    case Stage::kHideSysctls:
      return ErrnoStatus(e.err,
                         absl::StrCat("spawn ", opts.argv[0], ": mounting a tmpfs over /proc/sys/net"));
  }
  return absl::InternalError(absl::StrCat("spawn ", opts.argv[0], ": unknown failure"));
}

}  // namespace gvshim::sys
