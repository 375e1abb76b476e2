#include "shim/stdio/process_io.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "shim/base/log.h"
#include "shim/base/status.h"
#include "shim/stdio/target.h"
#include "shim/sys/spawn.h"

namespace gvshim::stdio {
namespace {

using SharedFd = std::shared_ptr<sys::UniqueFd>;

absl::Status SetNonBlocking(int fd, absl::string_view what) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return ErrnoStatus(errno, absl::StrCat("set O_NONBLOCK on ", what));
  }
  return absl::OkStatus();
}

absl::StatusOr<sys::UniqueFd> MakeEventFd() {
  sys::UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!fd) return ErrnoStatus(errno, "eventfd");
  return fd;
}

void Signal(int eventfd) {
  if (eventfd < 0) return;
  uint64_t one = 1;
  ssize_t n = ::write(eventfd, &one, sizeof one);
  (void)n;  // Only fails when the counter would overflow, which means it is already signalled.
}

// Waits until `fd` is ready for `events` (or has hung up / failed, which the next read/write reports).
// Returns false as soon as one of the stop eventfds is signalled.
bool WaitReady(int fd, short events, int stop1, int stop2) {
  for (;;) {
    std::array<pollfd, 3> p{pollfd{fd, events, 0}, pollfd{stop1, POLLIN, 0}, pollfd{stop2, POLLIN, 0}};
    int n = ::poll(p.data(), stop2 >= 0 ? 3 : 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      log::Warnf("stdio: poll: %s", std::strerror(errno));
      return false;
    }
    if (p[1].revents != 0 || (stop2 >= 0 && p[2].revents != 0)) return false;
    if (p[0].revents != 0) return true;
  }
}

// True when the eventfd has been signalled (non-blocking check).
bool IsSignaled(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN) != 0;
}

enum class WriteResult { kOk, kStopped, kFailed };

WriteResult WriteAllPolling(int dst, const char* data, size_t size, int stop1, int stop2) {
  while (size > 0) {
    ssize_t n = ::write(dst, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        if (!WaitReady(dst, POLLOUT, stop1, stop2)) return WriteResult::kStopped;
        continue;
      }
      return WriteResult::kFailed;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return WriteResult::kOk;
}

enum class ReadResult { kData, kEof, kStopped };

// Reads what is available from a non-blocking src. EIO (a pty master whose slave is gone) counts as EOF.
ReadResult ReadSome(int src, char* buf, size_t cap, size_t* got, int stop1, int stop2,
                    absl::string_view what) {
  for (;;) {
    if (!WaitReady(src, POLLIN, stop1, stop2)) return ReadResult::kStopped;
    ssize_t n = ::read(src, buf, cap);
    if (n > 0) {
      *got = static_cast<size_t>(n);
      return ReadResult::kData;
    }
    if (n == 0) return ReadResult::kEof;
    if (errno == EINTR || errno == EAGAIN) continue;
    if (errno != EIO) log::Warnf("stdio: read %s: %s", std::string(what), std::strerror(errno));
    return ReadResult::kEof;
  }
}

// Copies src -> dst until EOF on src or a stop. When dst fails (a logger died), the rest is read and dropped
// so the process never blocks on a full pipe.
void CopyOutput(int src, int dst, int stop1, int stop2, const std::string& what) {
  std::array<char, 32 * 1024> buf;
  bool dropping = false;
  for (;;) {
    size_t n = 0;
    if (ReadSome(src, buf.data(), buf.size(), &n, stop1, stop2, what) != ReadResult::kData) return;
    if (dropping) continue;
    switch (WriteAllPolling(dst, buf.data(), n, stop1, stop2)) {
      case WriteResult::kOk:
        break;
      case WriteResult::kStopped:
        return;
      case WriteResult::kFailed:
        log::Warnf("stdio: write %s: %s; dropping the rest", what, std::strerror(errno));
        dropping = true;
        break;
    }
  }
}

// Opens a fifo or file that output goes to, without ever blocking: a fifo is opened O_RDWR (Linux allows it),
// so the open needs no reader and later writes never fail with EPIPE when containerd's reader comes and goes.
absl::StatusOr<sys::UniqueFd> OpenSink(const Target& t) {
  if (t.kind == Target::Kind::kFile) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(t.path).parent_path(), ec);
    if (ec)
      return absl::InternalError(absl::StrCat("create parent directories of ", t.path, ": ", ec.message()));
    sys::UniqueFd fd(::open(t.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (!fd) return ErrnoStatus(errno, absl::StrCat("open log file ", t.path));
    return fd;
  }
  struct stat st;
  if (::stat(t.path.c_str(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("stat ", t.path));
  int flags = S_ISFIFO(st.st_mode) ? O_RDWR : (O_WRONLY | O_APPEND);
  sys::UniqueFd fd(::open(t.path.c_str(), flags | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("open ", t.path));
  return fd;
}

bool SameSink(const Target& a, const Target& b) {
  return (a.kind == Target::Kind::kPath || a.kind == Target::Kind::kFile) &&
         (b.kind == Target::Kind::kPath || b.kind == Target::Kind::kFile) && a.path == b.path;
}

struct Logger {
  pid_t pid;
  sys::UniqueFd stdout_w;  // write ends of the logger's fd 3 and fd 4
  sys::UniqueFd stderr_w;
};

// Starts a binary:// logger: fd 3/4 read the process's stdout/stderr, fd 5 is closed (binary-v2: after a
// byte) once the logger is ready. Env is exactly CONTAINER_ID and CONTAINER_NAMESPACE, as containerd's shims
// do.
absl::StatusOr<Logger> StartLogger(const Target& t, const std::string& id, const std::string& ns,
                                   sys::ProcessWatcher* reaper) {
  ASSIGN_OR_RETURN(sys::PipePair out, sys::MakePipe());
  ASSIGN_OR_RETURN(sys::PipePair err, sys::MakePipe());
  ASSIGN_OR_RETURN(sys::PipePair ready, sys::MakePipe());
  sys::SpawnOptions opts;
  opts.argv.push_back(t.path);
  opts.argv.insert(opts.argv.end(), t.args.begin(), t.args.end());
  opts.env = {absl::StrCat("CONTAINER_ID=", id), absl::StrCat("CONTAINER_NAMESPACE=", ns)};
  opts.extra_fds = {out.read.get(), err.read.get(), ready.write.get()};
  opts.new_session = true;
  opts.pdeathsig = 0;  // it must outlive the (possibly short-lived) thread that starts it
  absl::StatusOr<pid_t> pid = sys::Spawn(opts, reaper);
  if (!pid.ok()) return Annotate(pid.status(), "start logging binary");
  ready.write.reset();
  out.read.reset();
  err.read.reset();

  absl::Time deadline = absl::Now() + ProcessIO::kLoggerReadyTimeout;
  absl::Status st;
  for (;;) {
    int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (ms <= 0) {
      st =
          absl::DeadlineExceededError(absl::StrCat("logging binary ", t.path, " did not become ready within ",
                                                   absl::FormatDuration(ProcessIO::kLoggerReadyTimeout)));
      break;
    }
    pollfd p{ready.read.get(), POLLIN, 0};
    int n = ::poll(&p, 1, ms);
    if (n < 0 && errno != EINTR) {
      st = ErrnoStatus(errno, "poll logger ready pipe");
      break;
    }
    if (n <= 0) continue;
    char b;
    ssize_t r = ::read(ready.read.get(), &b, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      st = ErrnoStatus(errno, "read logger ready pipe");
    } else if (r == 0 && t.strict_ready) {
      st = absl::UnavailableError(absl::StrCat("logging binary ", t.path,
                                               " exited or closed its ready pipe "
                                               "without signalling readiness"));
    }
    break;
  }
  if (!st.ok()) {
    if (reaper != nullptr && reaper->running()) {
      // The reaper collects it; signalling through it never hits a recycled pid (the logger may be gone).
      reaper->Watch(*pid, [](int) {});
      (void)reaper->Signal(*pid, SIGKILL);
    } else {
      // Nobody else waits for our children: the pid is ours until this waitpid.
      ::kill(*pid, SIGKILL);
      while (::waitpid(*pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    return st;
  }
  return Logger{*pid, std::move(out.write), std::move(err.write)};
}

}  // namespace

absl::StatusOr<std::unique_ptr<ProcessIO>> ProcessIO::Open(const StdioConfig& config, const std::string& id,
                                                           const std::string& ns,
                                                           sys::ProcessWatcher* reaper) {
  std::unique_ptr<ProcessIO> io(new ProcessIO(config));
  RETURN_IF_ERROR(io->Init(id, ns, reaper));
  return io;
}

absl::Status ProcessIO::Init(const std::string& id, const std::string& ns, sys::ProcessWatcher* reaper) {
  ASSIGN_OR_RETURN(stop_, MakeEventFd());
  ASSIGN_OR_RETURN(stdin_close_, MakeEventFd());
  ASSIGN_OR_RETURN(Target in, ParseTarget(config_.stdin_path));
  ASSIGN_OR_RETURN(Target out, ParseTarget(config_.stdout_path));
  ASSIGN_OR_RETURN(Target err, ParseTarget(config_.stderr_path));
  const bool tty = config_.terminal;
  if (tty) err = Target{};  // a terminal has one output stream
  if (in.kind != Target::Kind::kNone && in.kind != Target::Kind::kPath) {
    return absl::InvalidArgumentError(
        absl::StrCat("stdin must be a fifo path, got \"", config_.stdin_path, "\""));
  }

  // One logger serves both streams.
  std::optional<Logger> logger;
  const bool out_bin = out.kind == Target::Kind::kBinary, err_bin = err.kind == Target::Kind::kBinary;
  if (out_bin && err_bin && config_.stdout_path != config_.stderr_path) {
    return absl::InvalidArgumentError(absl::StrCat("stdout and stderr name different logging binaries: \"",
                                                   config_.stdout_path, "\" and \"", config_.stderr_path,
                                                   "\""));
  }
  if (out_bin || err_bin) {
    ASSIGN_OR_RETURN(logger, StartLogger(out_bin ? out : err, id, ns, reaper));
    logger_pid_ = logger->pid;
    // A stream that does not go to the logger gives it an immediate EOF.
    if (!out_bin) logger->stdout_w.reset();
    if (!err_bin) logger->stderr_w.reset();
    log::Debugf("stdio %s: started logging binary %s (pid %d)", id, out_bin ? out.path : err.path,
                logger->pid);
  }

  absl::MutexLock lock(&mu_);
  // stdout
  SharedFd out_sink;
  if (out_bin) {
    if (tty) {
      RETURN_IF_ERROR(SetNonBlocking(logger->stdout_w.get(), "logger stdout pipe"));
      tty_stdout_sink_ = std::make_shared<sys::UniqueFd>(std::move(logger->stdout_w));
    } else {
      child_stdout_ = std::move(logger->stdout_w);
    }
  } else if (out.kind != Target::Kind::kNone) {
    ASSIGN_OR_RETURN(sys::UniqueFd sink, OpenSink(out));
    out_sink = std::make_shared<sys::UniqueFd>(std::move(sink));
    if (tty) {
      tty_stdout_sink_ = out_sink;
    } else {
      ASSIGN_OR_RETURN(sys::PipePair p, sys::MakePipe());
      RETURN_IF_ERROR(SetNonBlocking(p.read.get(), "stdout pipe"));
      child_stdout_ = std::move(p.write);
      StartOutputCopy(std::move(p.read), out_sink, absl::StrCat("stdout to ", out.path));
    }
  }
  // stderr (never with a terminal)
  if (err_bin) {
    child_stderr_ = std::move(logger->stderr_w);
  } else if (err.kind != Target::Kind::kNone) {
    if (out_sink && SameSink(out, err)) {
      stderr_is_stdout_ = true;  // one pipe keeps the two streams in order
    } else {
      ASSIGN_OR_RETURN(sys::UniqueFd sink, OpenSink(err));
      ASSIGN_OR_RETURN(sys::PipePair p, sys::MakePipe());
      RETURN_IF_ERROR(SetNonBlocking(p.read.get(), "stderr pipe"));
      child_stderr_ = std::move(p.write);
      StartOutputCopy(std::move(p.read), std::make_shared<sys::UniqueFd>(std::move(sink)),
                      absl::StrCat("stderr to ", err.path));
    }
  }
  // stdin
  if (in.kind == Target::Kind::kPath) {
    sys::UniqueFd src(::open(in.path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (!src) return ErrnoStatus(errno, absl::StrCat("open stdin ", in.path));
    struct stat st;
    if (::fstat(src.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("stat stdin ", in.path));
    // No writer of our own on the fifo: a reader that has never seen a writer does not poll readable, so the
    // copy waits for containerd's writer, and sees EOF once that writer closes (as runc's shim does). CloseIO
    // ends the copy earlier through stdin_close_.
    (void)st;
    if (tty) {
      tty_stdin_src_ = std::move(src);
    } else {
      ASSIGN_OR_RETURN(sys::PipePair p, sys::MakePipe());
      RETURN_IF_ERROR(SetNonBlocking(p.write.get(), "stdin pipe"));
      child_stdin_ = std::move(p.read);
      auto fds =
          std::make_shared<std::pair<sys::UniqueFd, sys::UniqueFd>>(std::move(src), std::move(p.write));
      int stop = stop_.get(), close_fd = stdin_close_.get();
      std::string what = absl::StrCat("stdin from ", in.path);
      StartThread(false, [fds, stop, close_fd, what] {
        std::array<char, 32 * 1024> buf;
        for (;;) {
          size_t n = 0;
          ReadResult r = ReadSome(fds->first.get(), buf.data(), buf.size(), &n, stop, close_fd, what);
          if (r == ReadResult::kStopped) {
            if (IsSignaled(stop)) break;  // shutdown
            // CloseIO while containerd's writer is still open: keep delivering while data keeps coming, and
            // end the stream once it pauses (100 ms) or the writer closes.
            for (;;) {
              pollfd p{fds->first.get(), POLLIN, 0};
              if (::poll(&p, 1, 100) <= 0) break;
              ssize_t got = ::read(fds->first.get(), buf.data(), buf.size());
              if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
              if (got <= 0) break;
              if (WriteAllPolling(fds->second.get(), buf.data(), static_cast<size_t>(got), stop, -1) !=
                  WriteResult::kOk) {
                break;
              }
            }
            break;
          }
          if (r != ReadResult::kData) break;
          // kFailed: the process closed its stdin; nothing more to deliver.
          if (WriteAllPolling(fds->second.get(), buf.data(), n, stop, -1) != WriteResult::kOk) break;
        }
        fds->second.reset();  // EOF for the process
      });
    }
  }
  return absl::OkStatus();
}

void ProcessIO::StartThread(bool is_output, std::function<void()> fn) {
  if (is_output) ++running_outputs_;
  threads_.emplace_back([this, is_output, fn = std::move(fn)] {
    // A write to a pipe whose reader is gone must fail with EPIPE, not kill the shim.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    fn();
    if (is_output) {
      absl::MutexLock lock(&mu_);
      --running_outputs_;
    }
  });
}

void ProcessIO::StartOutputCopy(sys::UniqueFd src, SharedFd sink, std::string what) {
  auto owned = std::make_shared<sys::UniqueFd>(std::move(src));
  int stop = stop_.get();
  StartThread(true, [owned, sink, stop, what = std::move(what)] {
    CopyOutput(owned->get(), sink->get(), stop, -1, what);
  });
}

int ProcessIO::child_stdin() const {
  absl::MutexLock lock(&mu_);
  return child_stdin_.get();
}
int ProcessIO::child_stdout() const {
  absl::MutexLock lock(&mu_);
  return child_stdout_.get();
}
int ProcessIO::child_stderr() const {
  absl::MutexLock lock(&mu_);
  return stderr_is_stdout_ ? child_stdout_.get() : child_stderr_.get();
}

void ProcessIO::CloseChildSides() {
  absl::MutexLock lock(&mu_);
  child_stdin_.reset();
  child_stdout_.reset();
  child_stderr_.reset();
  stderr_is_stdout_ = false;
}

absl::Status ProcessIO::AttachConsole(sys::UniqueFd master) {
  if (!master) return absl::InvalidArgumentError("attach console: invalid master fd");
  absl::MutexLock lock(&mu_);
  if (!config_.terminal) return absl::FailedPreconditionError("attach console: process has no terminal");
  if (console_attached_) return absl::FailedPreconditionError("attach console: console already attached");
  if (closed_) return absl::FailedPreconditionError("attach console: stdio already closed");
  RETURN_IF_ERROR(SetNonBlocking(master.get(), "pty master"));
  ASSIGN_OR_RETURN(hangup_, MakeEventFd());
  console_attached_ = true;
  master_ = std::make_shared<sys::UniqueFd>(std::move(master));
  int stop = stop_.get(), hangup = hangup_.get();
  if (tty_stdout_sink_) {
    SharedFd m = master_, sink = std::move(tty_stdout_sink_);
    StartThread(true,
                [m, sink, stop, hangup] { CopyOutput(m->get(), sink->get(), stop, hangup, "console"); });
  }
  if (tty_stdin_src_) {
    auto src = std::make_shared<sys::UniqueFd>(std::move(tty_stdin_src_));
    SharedFd m = master_;
    StartThread(false, [this, src, m]() mutable { StdinToConsole(std::move(*src), std::move(m)); });
  }
  return absl::OkStatus();
}

void ProcessIO::StdinToConsole(sys::UniqueFd src, SharedFd master) {
  int stop = stop_.get();
  std::array<char, 32 * 1024> buf;
  for (;;) {
    size_t n = 0;
    ReadResult r =
        ReadSome(src.get(), buf.data(), buf.size(), &n, stop, stdin_close_.get(), "stdin to console");
    // CloseIO ends stdin like an EOF does (hang-up below); a shutdown just stops.
    if (r == ReadResult::kStopped && !IsSignaled(stop)) break;
    if (r == ReadResult::kStopped) return;
    if (r == ReadResult::kEof) break;
    WriteResult w = WriteAllPolling(master->get(), buf.data(), n, stop, -1);
    if (w == WriteResult::kStopped) return;
    if (w == WriteResult::kFailed) break;
  }
  // stdin is over: hang up the console. The output copier lets go of the master on the hangup signal; the
  // last reference closes it.
  {
    absl::MutexLock lock(&mu_);
    master_.reset();
  }
  master.reset();
  Signal(hangup_.get());
}

absl::Status ProcessIO::Resize(uint32_t width, uint32_t height) {
  SharedFd m;
  {
    absl::MutexLock lock(&mu_);
    m = master_;
  }
  if (!m) return absl::FailedPreconditionError("resize: process has no console");
  winsize ws{};
  ws.ws_col = static_cast<unsigned short>(width);
  ws.ws_row = static_cast<unsigned short>(height);
  if (::ioctl(m->get(), TIOCSWINSZ, &ws) != 0) return ErrnoStatus(errno, "resize console (TIOCSWINSZ)");
  return absl::OkStatus();
}

void ProcessIO::CloseStdin() { Signal(stdin_close_.get()); }

void ProcessIO::WaitAndClose(absl::Duration timeout) {
  CloseChildSides();
  {
    absl::MutexLock lock(&mu_);
    auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_outputs_ == 0; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&drained), timeout)) {
      log::Warnf("stdio: output not drained within %s; closing anyway", absl::FormatDuration(timeout));
    }
  }
  Shutdown();
}

void ProcessIO::Shutdown() {
  Signal(stop_.get());
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    threads.swap(threads_);
  }
  for (std::thread& t : threads) t.join();
  absl::MutexLock lock(&mu_);
  closed_ = true;
  child_stdin_.reset();
  child_stdout_.reset();
  child_stderr_.reset();
  stderr_is_stdout_ = false;
  tty_stdin_src_.reset();
  tty_stdout_sink_.reset();
  master_.reset();
}

ProcessIO::~ProcessIO() { Shutdown(); }

}  // namespace gvshim::stdio
