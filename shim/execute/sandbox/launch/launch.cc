// gvshim-launch: a small static program that runs inside a pod's execute container (bind-mounted read-only at
// /.gvshim/gvshim-launch). Being static, it needs nothing from the image: no shell, no libc, no util-linux.
//
//   gvshim-launch init
//       The execute container's pid 1: reaps every child handed to it and exits on SIGTERM/SIGINT.
//   gvshim-launch probe DIR
//       Prints one JSON line saying which namespaces work here: pid (twice from one process, as a zygote
//       does), net, ipc, and whether a tmpfs mounted on DIR in a new mount namespace stays private to it
//       (runsc 0.0~20221219 lets it land in the container's shared namespace; it is then unmounted again).
//   gvshim-launch job [options] -- PROGRAM [ARG...]
//       Runs PROGRAM (an absolute path) isolated as one snippet of the Execute service: in new namespaces, on
//       private mounts, under an unprivileged uid, with rlimits, no_new_privs and umask 077. The Node runner
//       starts each of its pre-started children this way (the Python runner makes the same calls in-process).
//
// Options of `job` (all optional; PROGRAM's environment is exactly the --env values):
//   --parent PID          die with process PID (our parent, the runner): SIGTERM when it exits (see --pid-ns)
//   --uid N --gid N       drop to these ids (supplementary groups cleared); required when running as root
//   --pid-ns              new pid namespace: PROGRAM is its pid 1, so everything it starts dies with it. The
//                         launcher stays as PROGRAM's parent and exits with PROGRAM's status (a signal is
//                         re-raised on itself). SIGTERM to the launcher kills PROGRAM (SIGKILL), and with it
//                         its namespace: PROGRAM may have left our process group or cleared its own
//                         parent-death signal (native code can), so only we can be relied on to end it.
//   --net-ns --ipc-ns     new (empty) network namespace; new IPC namespace
//   --mount-ns            new mount namespace, propagation made private
//   --proc                a fresh /proc for the new pid namespace (needs --pid-ns and --mount-ns)
//   --tmpfs PATH[:MODE]   a private tmpfs of --tmpfs-bytes (default 64 MiB) on PATH (octal MODE, default
//   1777)
//   --workdir PATH        chdir there; with --own-workdir it is made the job's (mode 0700, owned by --uid)
//                         and gets an empty artifacts/ subdirectory
//   --rlimit NAME=N       CORE, CPU (seconds; the hard limit is one more), FSIZE, NPROC, AS, NOFILE, DATA
//   --env K=V             repeated
// Any failure before PROGRAM runs prints "gvshim-launch: <step>: <reason>" on stderr and exits 125.
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr int kSetupFailed = 125;

[[noreturn]] void Die(const std::string& what, int err = 0) {
  std::string msg = "gvshim-launch: " + what;
  if (err != 0) msg += std::string(": ") + std::strerror(err);
  msg += "\n";
  (void)!::write(2, msg.data(), msg.size());
  ::_exit(kSetupFailed);
}

void Check(int rc, const std::string& what) {
  if (rc != 0) Die(what, errno);
}

struct Tmpfs {
  std::string path;
  unsigned mode = 01777;
};

struct JobOptions {
  long uid = -1, gid = -1, parent = 0;
  bool pid_ns = false, net_ns = false, ipc_ns = false, mount_ns = false, proc = false, own_workdir = false;
  unsigned long long tmpfs_bytes = 64ull << 20;
  std::vector<Tmpfs> tmpfs;
  std::string workdir;
  std::vector<std::pair<int, unsigned long long>> rlimits;
  std::vector<std::string> env;
  std::vector<std::string> argv;
};

unsigned long long ParseNumber(const std::string& s, const std::string& what, int base = 10) {
  if (s.empty()) Die(what + ": empty number");
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s.c_str(), &end, base);
  if (errno != 0 || end == nullptr || *end != '\0' || s[0] == '-') Die(what + ": not a number: " + s);
  return v;
}

int RlimitResource(const std::string& name) {
  static const std::pair<const char*, int> kNames[] = {
      {"CORE", RLIMIT_CORE}, {"CPU", RLIMIT_CPU},       {"FSIZE", RLIMIT_FSIZE}, {"NPROC", RLIMIT_NPROC},
      {"AS", RLIMIT_AS},     {"NOFILE", RLIMIT_NOFILE}, {"DATA", RLIMIT_DATA}};
  for (const auto& [n, r] : kNames) {
    if (name == n) return r;
  }
  Die("unknown rlimit " + name);
}

JobOptions ParseJob(int argc, char** argv) {
  JobOptions o;
  int i = 2;
  auto value = [&](const char* flag) -> std::string {
    if (i + 1 >= argc) Die(std::string(flag) + " needs a value");
    return argv[++i];
  };
  for (; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "--parent") {
      o.parent = static_cast<long>(ParseNumber(value("--parent"), "--parent"));
    } else if (a == "--uid") {
      o.uid = static_cast<long>(ParseNumber(value("--uid"), "--uid"));
    } else if (a == "--gid") {
      o.gid = static_cast<long>(ParseNumber(value("--gid"), "--gid"));
    } else if (a == "--pid-ns") {
      o.pid_ns = true;
    } else if (a == "--net-ns") {
      o.net_ns = true;
    } else if (a == "--ipc-ns") {
      o.ipc_ns = true;
    } else if (a == "--mount-ns") {
      o.mount_ns = true;
    } else if (a == "--proc") {
      o.proc = true;
    } else if (a == "--own-workdir") {
      o.own_workdir = true;
    } else if (a == "--tmpfs-bytes") {
      o.tmpfs_bytes = ParseNumber(value("--tmpfs-bytes"), "--tmpfs-bytes");
    } else if (a == "--tmpfs") {
      std::string v = value("--tmpfs");
      Tmpfs t;
      size_t colon = v.rfind(':');
      t.path = v.substr(0, colon);
      if (colon != std::string::npos)
        t.mode = static_cast<unsigned>(ParseNumber(v.substr(colon + 1), "--tmpfs", 8));
      if (t.path.empty() || t.path[0] != '/') Die("--tmpfs needs an absolute path: " + v);
      o.tmpfs.push_back(t);
    } else if (a == "--workdir") {
      o.workdir = value("--workdir");
    } else if (a == "--rlimit") {
      std::string v = value("--rlimit");
      size_t eq = v.find('=');
      if (eq == std::string::npos) Die("--rlimit needs NAME=N: " + v);
      o.rlimits.emplace_back(RlimitResource(v.substr(0, eq)), ParseNumber(v.substr(eq + 1), "--rlimit " + v));
    } else if (a == "--env") {
      std::string v = value("--env");
      if (v.find('=') == std::string::npos || v[0] == '=') Die("--env needs K=V: " + v);
      o.env.push_back(v);
    } else {
      Die("unknown option " + a);
    }
  }
  for (; i < argc; ++i) o.argv.push_back(argv[i]);
  if (o.argv.empty() || o.argv[0].empty() || o.argv[0][0] != '/')
    Die("job needs -- /ABSOLUTE/PROGRAM [ARG...]");
  if (::geteuid() == 0 && (o.uid <= 0 || o.gid <= 0))
    Die("running as root: --uid and --gid (not 0) are required");
  if (o.proc && !(o.pid_ns && o.mount_ns)) Die("--proc needs --pid-ns and --mount-ns");
  if (!o.tmpfs.empty() && !o.mount_ns) Die("--tmpfs needs --mount-ns");
  return o;
}

// Everything after the namespaces, in the process that becomes PROGRAM. Never returns.
[[noreturn]] void SetUpAndExec(const JobOptions& o) {
  if (o.mount_ns) {
    // Mounts made from here on stay in this namespace.
    Check(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), "make / private");
    if (o.proc)
      Check(::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr), "mount /proc");
    for (const Tmpfs& t : o.tmpfs) {
      char data[64];
      std::snprintf(data, sizeof data, "size=%llu,mode=%o", o.tmpfs_bytes, t.mode);
      Check(::mount("tmpfs", t.path.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, data),
            "mount tmpfs on " + t.path);
    }
  }
  if (!o.workdir.empty() && o.own_workdir && o.uid > 0) {
    Check(::chown(o.workdir.c_str(), static_cast<uid_t>(o.uid), static_cast<gid_t>(o.gid)),
          "chown " + o.workdir);
    Check(::chmod(o.workdir.c_str(), 0700), "chmod " + o.workdir);
    const std::string art = o.workdir + "/artifacts";
    if (::mkdir(art.c_str(), 0700) != 0 && errno != EEXIST) Die("mkdir " + art, errno);
    Check(::chown(art.c_str(), static_cast<uid_t>(o.uid), static_cast<gid_t>(o.gid)), "chown " + art);
  }
  if (!o.workdir.empty()) Check(::chdir(o.workdir.c_str()), "chdir " + o.workdir);
  int as_index = -1;
  for (size_t k = 0; k < o.rlimits.size(); ++k) {
    const auto& [res, v] = o.rlimits[k];
    if (res == RLIMIT_AS) {
      as_index = static_cast<int>(k);  // last, right before exec: everything above may still allocate
      continue;
    }
    struct rlimit rl = {v, res == RLIMIT_CPU ? v + 1 : v};
    Check(::setrlimit(res, &rl), "setrlimit");
  }
  if (o.uid > 0) {
    Check(::setgroups(0, nullptr), "setgroups");
    Check(::setgid(static_cast<gid_t>(o.gid)), "setgid");
    Check(::setuid(static_cast<uid_t>(o.uid)), "setuid");
    if (::getuid() == 0 || ::geteuid() == 0 || ::getegid() == 0) Die("privilege drop did not take effect");
  }
  Check(::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs");
  // The uid change cleared the parent-death signal.
  Check(::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), "pdeathsig");
  ::umask(077);
  if (as_index >= 0) {
    struct rlimit rl = {o.rlimits[as_index].second, o.rlimits[as_index].second};
    Check(::setrlimit(RLIMIT_AS, &rl), "setrlimit AS");
  }
  std::vector<char*> argv, envp;
  for (const auto& a : o.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : o.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(argv[0], argv.data(), envp.data());
  Die("exec " + o.argv[0], errno);
}

int Job(int argc, char** argv) {
  const JobOptions o = ParseJob(argc, argv);
  if (o.parent > 0) {
    // SIGTERM, not SIGKILL: with a job running, we kill it before we go (below).
    Check(::prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0), "pdeathsig");
    if (::getppid() != static_cast<pid_t>(o.parent)) Die("the parent process is gone");
  }
  int flags = 0;
  if (o.pid_ns) flags |= CLONE_NEWPID;
  if (o.mount_ns) flags |= CLONE_NEWNS;
  if (o.net_ns) flags |= CLONE_NEWNET;
  if (o.ipc_ns) flags |= CLONE_NEWIPC;
  if (flags != 0) Check(::unshare(flags), "unshare");
  if (!o.pid_ns) SetUpAndExec(o);

  // The new pid namespace takes effect for children: fork PROGRAM as its pid 1 and wait for it here.
  int alive[2];
  Check(::pipe2(alive, O_CLOEXEC), "pipe");
  sigset_t all, old;
  sigfillset(&all);
  ::sigprocmask(SIG_BLOCK, &all, &old);  // nothing interrupts the hand-over
  const pid_t child = ::fork();
  if (child < 0) Die("fork", errno);
  if (child == 0) {
    ::close(alive[1]);
    Check(::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), "pdeathsig");
    // The launcher may have died before PDEATHSIG was set: its end of `alive` is then closed.
    char b;
    const int fl = ::fcntl(alive[0], F_GETFL);
    Check(fl, "fcntl F_GETFL");
    Check(::fcntl(alive[0], F_SETFL, fl | O_NONBLOCK), "fcntl F_SETFL");
    if (::read(alive[0], &b, 1) == 0) ::_exit(kSetupFailed);
    ::close(alive[0]);
    SetUpAndExec(o);
  }
  ::close(alive[0]);
  // Keep stderr for our own message only; stdin/stdout and everything else belong to PROGRAM.
  ::close(0);
  ::close(1);
  for (int fd = 3; fd < 1024; ++fd) {
    if (fd != alive[1]) ::close(fd);
  }
  // SIGTERM (from the runner, or as our parent-death signal) kills the job; other signals go to the job.
  for (;;) {
    siginfo_t si;
    struct timespec ts = {0, 200 * 1000 * 1000};
    const int sig = ::sigtimedwait(&all, &si, &ts);
    if (sig == SIGTERM) {
      ::kill(child, SIGKILL);
    } else if (sig > 0 && sig != SIGCHLD) {
      ::kill(child, sig);
    }
    int status;
    const pid_t r = ::waitpid(child, &status, WNOHANG);
    if (r == child) {
      if (WIFEXITED(status)) ::_exit(WEXITSTATUS(status));
      const int s = WTERMSIG(status);
      ::signal(s, SIG_DFL);
      sigset_t one;
      sigemptyset(&one);
      sigaddset(&one, s);
      ::sigprocmask(SIG_UNBLOCK, &one, nullptr);
      ::kill(::getpid(), s);
      ::_exit(128 + s);
    }
    if (r < 0 && errno != EINTR) Die("wait", errno);
  }
}

// Runs fn in the child of a fork and returns its exit code (255 if it died otherwise).
template <typename Fn>
int InChild(Fn fn) {
  const pid_t pid = ::fork();
  if (pid < 0) return 255;
  if (pid == 0) ::_exit(fn());
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}

int Probe(const std::string& dir) {
  bool pid_ns = false, net_ns = false, ipc_ns = false, mount_ns = false;
  const std::string marker = dir + "/.gvshim-probe";
  // pid: a new namespace before each of two forks from one process; each child must be its pid 1.
  pid_ns = InChild([] {
             const int own = ::open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
             for (int i = 0; i < 2; ++i) {
               // Linux allows a second unshare only after returning to our own namespace for children;
               // gVisor refuses that setns but allows the unshare.
               if (i > 0 && own >= 0) (void)::setns(own, CLONE_NEWPID);
               if (::unshare(CLONE_NEWPID) != 0) return 1;
               if (InChild([] { return ::getpid() == 1 ? 0 : 1; }) != 0) return 1;
             }
             return 0;
           }) == 0;
  net_ns = InChild([] { return ::unshare(CLONE_NEWNET) == 0 ? 0 : 1; }) == 0;
  ipc_ns = InChild([] { return ::unshare(CLONE_NEWIPC) == 0 ? 0 : 1; }) == 0;
  const bool mounted = InChild([&] {
                         if (::unshare(CLONE_NEWNS) != 0) return 1;
                         if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return 1;
                         if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=65536") != 0) return 1;
                         const int fd = ::open(marker.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
                         return fd >= 0 ? 0 : 1;
                       }) == 0;
  struct stat st;
  const bool leaked = ::lstat(marker.c_str(), &st) == 0;
  if (leaked)
    (void)::umount2(dir.c_str(), MNT_DETACH);  // it landed in our namespace: take it away (best effort)
  mount_ns = mounted && !leaked;
  std::printf("{\"pid_ns\":%s,\"net_ns\":%s,\"ipc_ns\":%s,\"mount_ns\":%s}\n", pid_ns ? "true" : "false",
              net_ns ? "true" : "false", ipc_ns ? "true" : "false", mount_ns ? "true" : "false");
  return 0;
}

// pid 1 of the execute container: reap whatever is handed to us; end on SIGTERM/SIGINT.
int Init() {
  sigset_t all;
  sigfillset(&all);
  ::sigprocmask(SIG_BLOCK, &all, nullptr);
  for (;;) {
    siginfo_t si;
    const int sig = ::sigwaitinfo(&all, &si);
    if (sig == SIGTERM || sig == SIGINT) return 0;
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "init") == 0) return Init();
  if (argc >= 2 && std::strcmp(argv[1], "job") == 0) return Job(argc, argv);
  if (argc == 3 && std::strcmp(argv[1], "probe") == 0) return Probe(argv[2]);
  std::fprintf(stderr, "usage: gvshim-launch init | probe DIR | job [options] -- /PROGRAM [ARG...]\n");
  return 2;
}
