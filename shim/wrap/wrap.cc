// gvshim-wrap: runs a container process INSIDE the gVisor sandbox with what runsc cannot give it itself.
//
//   /.gvshim-wrap [--pty] [--seccomp-env] [--] COMMAND [ARG...]
//
// --pty: runsc hands a terminal process the caller's host pty as its stdio: isatty() works but the sandbox's
//   devpts does not know it, so ttyname() fails and `tty` prints "not a tty" (and sudo, less, Python's pty
//   module, many REPLs misbehave). With --pty the launcher opens /dev/ptmx inside the sandbox, runs COMMAND
//   on the slave as the leader of a new session, and copies bytes between its own stdio (the host pty, put in
//   raw mode so that only the inner line discipline cooks input) and the master. Window size follows the
//   outer terminal (SIGWINCH, and a check on every input). Signals it can catch are forwarded to COMMAND; it
//   exits as COMMAND did (same code, or the same signal).
// --seccomp FILE: installs the BPF program in FILE (raw struct sock_filter instructions, exported by the shim
// from
//   the container's seccomp profile) on COMMAND just before it is executed. runsc applies a container's
//   profile to its init process only; the shim starts every exec of such a container through this.
//
// The shim bind-mounts this program (and the BPF file) read-only into every container. Only libc, linked
// statically: it runs in any image.
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

namespace {

constexpr int kHandled[] = {SIGCHLD, SIGWINCH, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCONT};
int g_signal_pipe[2] = {-1, -1};
volatile sig_atomic_t g_child = 0;

void OnSignal(int sig) {
  int saved = errno;
  if (sig != SIGCHLD && sig != SIGWINCH && g_child > 0) kill(g_child, sig);
  unsigned char b = static_cast<unsigned char>(sig);
  (void)!write(g_signal_pipe[1], &b, 1);
  errno = saved;
}

void Die(const char* what) {
  dprintf(2, "gvshim-wrap: %s: %s\n", what, strerror(errno));
  _exit(127);
}

// Writes all of buf to fd (blocking fd), retrying on EINTR; false when the peer is gone.
bool WriteAll(int fd, const char* buf, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, buf, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    buf += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

void CopyWinsize(int from, int to) {
  struct winsize ws;
  if (ioctl(from, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
    struct winsize cur;
    if (ioctl(to, TIOCGWINSZ, &cur) != 0 || cur.ws_row != ws.ws_row || cur.ws_col != ws.ws_col) {
      ioctl(to, TIOCSWINSZ, &ws);
    }
  }
}

[[noreturn]] void ExitLike(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, nullptr);
    raise(sig);
    _exit(128 + sig);
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

constexpr char kSeccompEnv[] = "GVSHIM_SECCOMP_BPF";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes the BPF program from the environment and removes the variable; exits 126 if it is missing or
// malformed (a process must not run unfiltered).
struct sock_fprog LoadFilterFromEnv() {
  const char* hex = getenv(kSeccompEnv);
  size_t len = hex == nullptr ? 0 : strlen(hex);
  size_t n = len / 2;
  if (len == 0 || len % 2 != 0 || n % sizeof(struct sock_filter) != 0 ||
      n / sizeof(struct sock_filter) > BPF_MAXINSNS) {
    dprintf(2, "gvshim-wrap: %s does not hold a BPF program (%zu hex digits)\n", kSeccompEnv, len);
    _exit(126);
  }
  auto* bytes = static_cast<unsigned char*>(malloc(n));
  if (bytes == nullptr) Die("malloc");
  for (size_t i = 0; i < n; ++i) {
    int hi = HexValue(hex[2 * i]), lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      dprintf(2, "gvshim-wrap: %s is not hexadecimal\n", kSeccompEnv);
      _exit(126);
    }
    bytes[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  unsetenv(kSeccompEnv);
  return {static_cast<unsigned short>(n / sizeof(struct sock_filter)),
          reinterpret_cast<struct sock_filter*>(bytes)};
}

// Installs the filter (with no_new_privs when the process may not install one without it) and executes the
// command; never returns.
[[noreturn]] void ExecFiltered(char** cmd, const struct sock_fprog* filter) {
  if (filter != nullptr) {
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, filter) != 0) {
      if (errno != EACCES || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
          syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, filter) != 0) {
        Die("install the seccomp filter");
      }
    }
  }
  execvp(cmd[0], cmd);
  dprintf(2, "gvshim-wrap: exec %s: %s\n", cmd[0], strerror(errno));
  _exit(errno == ENOENT ? 127 : 126);
}

}  // namespace

int main(int argc, char** argv) {
  bool use_pty = false;
  bool use_seccomp = false;
  int i = 1;
  for (; i < argc; ++i) {
    if (strcmp(argv[i], "--pty") == 0) {
      use_pty = true;
    } else if (strcmp(argv[i], "--seccomp-env") == 0) {
      use_seccomp = true;
    } else if (strcmp(argv[i], "--") == 0) {
      ++i;
      break;
    } else {
      break;
    }
  }
  if (i >= argc) {
    dprintf(2, "usage: %s [--pty] [--seccomp-env] [--] COMMAND [ARG...]\n", argv[0]);
    return 2;
  }
  char** cmd = argv + i;
  struct sock_fprog filter_prog = {0, nullptr};
  if (use_seccomp) filter_prog = LoadFilterFromEnv();
  const struct sock_fprog* filter = use_seccomp ? &filter_prog : nullptr;
  if (!use_pty) ExecFiltered(cmd, filter);
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) Die("open /dev/ptmx");
  if (grantpt(master) != 0 || unlockpt(master) != 0) Die("unlock pty");
  char slave_name[128];
  if (ptsname_r(master, slave_name, sizeof slave_name) != 0) Die("ptsname");
  // Held open by the relay until the child has exited: until a slave is open, reading the master fails with
  // EIO (and gVisor reports POLLHUP), which would otherwise race with the child opening it.
  int slave = open(slave_name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) Die(slave_name);

  const bool outer_tty = isatty(STDIN_FILENO) == 1;
  struct termios outer_saved;
  if (outer_tty && tcgetattr(STDIN_FILENO, &outer_saved) == 0) {
    // The inner pty gets the outer terminal's modes, the outer one becomes a raw byte pipe.
    struct termios raw = outer_saved;
    cfmakeraw(&raw);
    tcsetattr(STDIN_FILENO, TCSANOW, &raw);
  }

  if (pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) Die("pipe");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = OnSignal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (int sig : kHandled) {
    sigaction(sig, &sa, nullptr);
  }

  pid_t child = fork();
  if (child < 0) Die("fork");
  if (child == 0) {
    for (int sig : kHandled) {
      signal(sig, SIG_DFL);
    }
    if (setsid() < 0) Die("setsid");
    if (ioctl(slave, TIOCSCTTY, 0) != 0) Die("TIOCSCTTY");
    if (outer_tty) {
      tcsetattr(slave, TCSANOW, &outer_saved);
      CopyWinsize(STDIN_FILENO, slave);
    }
    for (int fd = 0; fd < 3; ++fd) {
      if (dup2(slave, fd) < 0) Die("dup2");
    }
    if (slave > 2) close(slave);
    ExecFiltered(cmd, filter);
  }
  g_child = child;

  int status = 0;
  bool stdin_open = true;
  char buf[16384];
  for (;;) {
    struct pollfd fds[3] = {{master, POLLIN, 0}, {g_signal_pipe[0], POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    if (poll(fds, stdin_open ? 3 : 2, -1) < 0) {
      if (errno == EINTR) continue;
      Die("poll");
    }
    if (fds[0].revents & POLLIN) {
      ssize_t r = read(master, buf, sizeof buf);
      if (r > 0) {
        if (!WriteAll(STDOUT_FILENO, buf, static_cast<size_t>(r))) stdin_open = false;
        continue;  // output first
      }
    }
    if (fds[1].revents & POLLIN) {
      unsigned char sigs[64];
      ssize_t got = read(g_signal_pipe[0], sigs, sizeof sigs);
      for (ssize_t i = 0; i < got; ++i) {
        if (sigs[i] == SIGWINCH && outer_tty) CopyWinsize(STDIN_FILENO, master);
      }
      if (waitpid(child, &status, WNOHANG) == child) break;
    }
    if (stdin_open && (fds[2].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t r = read(STDIN_FILENO, buf, sizeof buf);
      if (r > 0) {
        if (outer_tty) CopyWinsize(STDIN_FILENO, master);
        if (!WriteAll(master, buf, static_cast<size_t>(r))) stdin_open = false;
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        stdin_open = false;
        if (!outer_tty) {
          // A pipe as stdin reached EOF: pass it on as the terminal's end-of-file character.
          const char eot = 4;
          (void)!write(master, &eot, 1);
        }
      }
    }
  }
  // The child is gone: let go of our slave and copy what is left (processes it left behind may still hold the
  // slave open, so read only what is there now).
  close(slave);
  fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
  for (;;) {
    ssize_t r = read(master, buf, sizeof buf);
    if (r > 0) {
      if (!WriteAll(STDOUT_FILENO, buf, static_cast<size_t>(r))) break;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    break;  // EAGAIN (drained) or EIO (no slave left)
  }
  if (outer_tty) tcsetattr(STDIN_FILENO, TCSANOW, &outer_saved);
  ExitLike(status);
}
