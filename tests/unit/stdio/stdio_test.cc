// Tests of shim/stdio against real fifos, files, a logging script, a pty pair and real child processes.
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shim/stdio/console_socket.h"
#include "shim/stdio/process_io.h"
#include "shim/stdio/target.h"
#include "shim/sys/fd.h"
#include "shim/sys/socket.h"
#include "shim/sys/spawn.h"
#include "tests/unit/fakes/test_util.h"

namespace gvshim::stdio {
namespace {

using ::gvshim::testing::ReadFile;
using ::gvshim::testing::WaitFor;

using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/gvstdio-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl), nullptr);
    path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string Fifo(const std::string& name) const {
    std::string p = absl::StrCat(path_, "/", name);
    EXPECT_EQ(::mkfifo(p.c_str(), 0600), 0) << std::strerror(errno);
    return p;
  }

 private:
  std::string path_;
};

// Reads a fifo until EOF on a thread (the role of containerd's reader). Like containerd, it opens the read
// side before returning, so no output can be written while nobody holds the fifo open for reading.
class FifoReader {
 public:
  explicit FifoReader(const std::string& path)
      : fd_(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC)) {
    EXPECT_TRUE(fd_.valid()) << path << ": " << std::strerror(errno);
    ::fcntl(fd_.get(), F_SETFL, O_RDONLY);  // blocking reads from here on
    thread_ = std::thread([this] {
      auto data = sys::ReadAll(fd_.get());
      if (data.ok()) data_ = *data;
    });
  }
  // Joins: returns once the writer side is closed.
  std::string Take() {
    if (thread_.joinable()) thread_.join();
    return data_;
  }
  ~FifoReader() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  sys::UniqueFd fd_;
  std::string data_;
  std::thread thread_;
};

// Starts `sh -c script` with the ProcessIO's child sides as 0/1/2 (the role of runsc).
pid_t StartChild(ProcessIO& io, const std::string& script) {
  sys::SpawnOptions opts;
  opts.argv = {"/bin/sh", "-c", script};
  opts.stdin_fd = io.child_stdin();
  opts.stdout_fd = io.child_stdout();
  opts.stderr_fd = io.child_stderr();
  auto pid = sys::Spawn(opts, nullptr);
  EXPECT_TRUE(pid.ok()) << pid.status();
  io.CloseChildSides();
  return pid.ok() ? *pid : -1;
}

int WaitChild(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// Reads exactly n bytes from a (possibly non-blocking) fd, giving up after `timeout`.
std::string ReadN(int fd, size_t n, absl::Duration timeout) {
  std::string out;
  absl::Time deadline = absl::Now() + timeout;
  while (out.size() < n) {
    int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (ms <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, ms) <= 0) continue;
    char buf[256];
    ssize_t r = ::read(fd, buf, std::min(sizeof buf, n - out.size()));
    if (r <= 0) {
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      break;
    }
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

TEST(TargetTest, ParsesEveryKind) {
  auto none = ParseTarget("");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->kind, Target::Kind::kNone);

  auto fifo = ParseTarget("/run/containerd/fifo/1/x-stdout");
  ASSERT_TRUE(fifo.ok());
  EXPECT_EQ(fifo->kind, Target::Kind::kPath);
  EXPECT_EQ(fifo->path, "/run/containerd/fifo/1/x-stdout");

  auto file = ParseTarget("file:///var/log/my%20app.log");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->kind, Target::Kind::kFile);
  EXPECT_EQ(file->path, "/var/log/my app.log");

  auto bin = ParseTarget("binary:///usr/bin/logger?tag=a+b&level=debug&flag&tag=ignored&x=%2F");
  ASSERT_TRUE(bin.ok()) << bin.status();
  EXPECT_EQ(bin->kind, Target::Kind::kBinary);
  EXPECT_EQ(bin->path, "/usr/bin/logger");
  EXPECT_FALSE(bin->strict_ready);
  EXPECT_THAT(bin->args, ::testing::ElementsAre("tag", "a b", "level", "debug", "flag", "", "x", "/"));

  auto v2 = ParseTarget("binary-v2:///opt/l");
  ASSERT_TRUE(v2.ok());
  EXPECT_TRUE(v2->strict_ready);
  EXPECT_TRUE(v2->args.empty());
}

TEST(TargetTest, RejectsBadInput) {
  EXPECT_EQ(ParseTarget("relative/path").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseTarget("http://example/x").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseTarget("binary://").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseTarget("file:///bad%2").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ProcessIOTest, FifosCarryStdinStdoutStderr) {
  TempDir dir;
  StdioConfig cfg{dir.Fifo("in"), dir.Fifo("out"), dir.Fifo("err"), false};
  auto io = ProcessIO::Open(cfg, "c1", "default", nullptr);
  ASSERT_TRUE(io.ok()) << io.status();
  ASSERT_GE((*io)->child_stdin(), 0);
  ASSERT_GE((*io)->child_stdout(), 0);
  ASSERT_GE((*io)->child_stderr(), 0);
  FifoReader out(cfg.stdout_path), err(cfg.stderr_path);

  pid_t child = StartChild(**io, "cat; echo err >&2");
  ASSERT_GT(child, 0);
  {
    // containerd's stdin writer: write, close, then CloseIO.
    sys::UniqueFd w(::open(cfg.stdin_path.c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(w.valid());
    ASSERT_TRUE(sys::WriteAll(w.get(), "hello\n", 6).ok());
  }
  (*io)->CloseStdin();
  int status = WaitChild(child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  (*io)->WaitAndClose(absl::Seconds(5));
  EXPECT_EQ(out.Take(), "hello\n");
  EXPECT_EQ(err.Take(), "err\n");
}

TEST(ProcessIOTest, CloseStdinBeforeWriterClosesStillDeliversEverything) {
  TempDir dir;
  StdioConfig cfg{dir.Fifo("in"), dir.Fifo("out"), "", false};
  auto io = ProcessIO::Open(cfg, "c1", "default", nullptr);
  ASSERT_TRUE(io.ok()) << io.status();
  EXPECT_EQ((*io)->child_stderr(), -1);
  FifoReader out(cfg.stdout_path);
  pid_t child = StartChild(**io, "wc -c");
  sys::UniqueFd w(::open(cfg.stdin_path.c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(w.valid());
  std::string big(200000, 'x');  // more than a pipe holds
  std::thread writer([&] {
    ASSERT_TRUE(sys::WriteAll(w.get(), big.data(), big.size()).ok());
    w.reset();
  });
  (*io)->CloseStdin();
  writer.join();
  WaitChild(child);
  (*io)->WaitAndClose(absl::Seconds(5));
  EXPECT_EQ(out.Take(), "200000\n");
}

// containerd's writer closing the stdin fifo is EOF for the process, CloseIO or not (ctr never sends
// CloseIO).
TEST(ProcessIOTest, StdinEofWhenWriterCloses) {
  TempDir dir;
  StdioConfig cfg{dir.Fifo("in"), dir.Fifo("out"), "", false};
  auto io = ProcessIO::Open(cfg, "c1", "default", nullptr);
  ASSERT_TRUE(io.ok()) << io.status();
  FifoReader out(cfg.stdout_path);
  pid_t child = StartChild(**io, "cat");
  {
    sys::UniqueFd w(::open(cfg.stdin_path.c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(w.valid());
    ASSERT_TRUE(sys::WriteAll(w.get(), "abc", 3).ok());
  }
  int status = WaitChild(child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  (*io)->WaitAndClose(absl::Seconds(5));
  EXPECT_EQ(out.Take(), "abc");
}

// CloseIO ends stdin even while containerd's writer stays open; what was written before still arrives.
TEST(ProcessIOTest, CloseStdinWhileWriterStaysOpen) {
  TempDir dir;
  StdioConfig cfg{dir.Fifo("in"), dir.Fifo("out"), "", false};
  auto io = ProcessIO::Open(cfg, "c1", "default", nullptr);
  ASSERT_TRUE(io.ok()) << io.status();
  FifoReader out(cfg.stdout_path);
  pid_t child = StartChild(**io, "cat");
  sys::UniqueFd w(::open(cfg.stdin_path.c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(w.valid());
  ASSERT_TRUE(sys::WriteAll(w.get(), "xyz", 3).ok());
  (*io)->CloseStdin();
  int status = WaitChild(child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  (*io)->WaitAndClose(absl::Seconds(5));
  EXPECT_EQ(out.Take(), "xyz");
}

TEST(ProcessIOTest, FileUriAppendsBothStreamsInOrder) {
  TempDir dir;
  std::string log = absl::StrCat(dir.path(), "/nested/dir/ctr.log");
  std::string uri = absl::StrCat("file://", log);
  for (int round = 0; round < 2; ++round) {
    auto io = ProcessIO::Open(StdioConfig{"", uri, uri, false}, "c1", "default", nullptr);
    ASSERT_TRUE(io.ok()) << io.status();
    EXPECT_EQ((*io)->child_stdin(), -1);
    EXPECT_EQ((*io)->child_stdout(), (*io)->child_stderr());
    pid_t child = StartChild(**io, "echo out; echo err >&2; echo out2");
    WaitChild(child);
    (*io)->WaitAndClose(absl::Seconds(5));
  }
  EXPECT_EQ(ReadFile(log), "out\nerr\nout2\nout\nerr\nout2\n");
}

TEST(ProcessIOTest, BinaryLoggerGetsStreamsEnvAndArgs) {
  TempDir dir;
  // Copy the logger so that its exec bit does not depend on how the source tree was checked out.
  std::string logger = absl::StrCat(dir.path(), "/logger.sh");
  std::filesystem::copy_file(absl::StrCat(GVSHIM_STDIO_TEST_DIR, "/test_logger.sh"), logger);
  ASSERT_EQ(::chmod(logger.c_str(), 0755), 0);
  std::string uri = absl::StrCat("binary://", logger, "?dir=", dir.path(), "&tag=a%20b");

  auto io = ProcessIO::Open(StdioConfig{"", uri, uri, false}, "ctr-7", "k8s.io", nullptr);
  ASSERT_TRUE(io.ok()) << io.status();
  ASSERT_TRUE((*io)->logger_pid().has_value());
  pid_t child = StartChild(**io, "echo to-out; echo to-err >&2");
  WaitChild(child);
  (*io)->WaitAndClose(absl::Seconds(5));
  int status = WaitChild(*(*io)->logger_pid());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;

  EXPECT_EQ(ReadFile(absl::StrCat(dir.path(), "/stdout")), "to-out\n");
  EXPECT_EQ(ReadFile(absl::StrCat(dir.path(), "/stderr")), "to-err\n");
  EXPECT_EQ(ReadFile(absl::StrCat(dir.path(), "/args")), absl::StrCat("dir\n", dir.path(), "\ntag\na b\n"));
  std::string env = ReadFile(absl::StrCat(dir.path(), "/env"));
  EXPECT_THAT(env, HasSubstr("CONTAINER_ID=ctr-7\n"));
  EXPECT_THAT(env, HasSubstr("CONTAINER_NAMESPACE=k8s.io\n"));
}

TEST(ProcessIOTest, BinaryV2RequiresAReadyByte) {
  // /bin/true closes its ready pipe by exiting: fine for binary://, a failure for binary-v2://.
  auto ok = ProcessIO::Open(StdioConfig{"", "binary:///bin/true", "", false}, "c", "ns", nullptr);
  ASSERT_TRUE(ok.ok()) << ok.status();
  ASSERT_TRUE((*ok)->logger_pid().has_value());
  WaitChild(*(*ok)->logger_pid());

  auto strict = ProcessIO::Open(StdioConfig{"", "binary-v2:///bin/true", "", false}, "c", "ns", nullptr);
  EXPECT_EQ(strict.status().code(), absl::StatusCode::kUnavailable) << strict.status();
}

TEST(ProcessIOTest, RejectsBadConfigs) {
  EXPECT_EQ(ProcessIO::Open(StdioConfig{"file:///tmp/x", "", "", false}, "c", "ns", nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ProcessIO::Open(StdioConfig{"", "binary:///bin/true?a=1", "binary:///bin/true?a=2", false}, "c",
                            "ns", nullptr)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ProcessIO::Open(StdioConfig{"", "/nonexistent/gvshim/fifo", "", false}, "c", "ns", nullptr)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

TEST(ProcessIOTest, ConsoleCallsNeedATerminal) {
  auto io = ProcessIO::Open(StdioConfig{}, "c", "ns", nullptr);
  ASSERT_TRUE(io.ok());
  EXPECT_EQ((*io)->Resize(80, 24).code(), absl::StatusCode::kFailedPrecondition);
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  ::close(fds[1]);
  EXPECT_EQ((*io)->AttachConsole(sys::UniqueFd(fds[0])).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ProcessIOTest, DestructorDoesNotHangWhenNobodyReads) {
  TempDir dir;
  StdioConfig cfg{"", dir.Fifo("out"), "", false};
  auto io = ProcessIO::Open(cfg, "c", "ns", nullptr);
  ASSERT_TRUE(io.ok()) << io.status();
  // Far more than the pipe and the fifo can buffer: the copy thread ends up waiting for POLLOUT.
  pid_t child = StartChild(**io, "head -c 4000000 /dev/zero");
  // Wait until the fifo is full (64 KiB buffered, observed through a second, idle reader): from then on the
  // copy thread can only be parked waiting for room.
  sys::UniqueFd probe(::open(cfg.stdout_path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_TRUE(probe.valid());
  int buffered = 0;
  for (absl::Time deadline = absl::Now() + absl::Seconds(10); absl::Now() < deadline;) {
    ASSERT_EQ(::ioctl(probe.get(), FIONREAD, &buffered), 0);
    if (buffered >= 65536) break;
    std::this_thread::yield();
  }
  ASSERT_GE(buffered, 65536);
  auto start = std::chrono::steady_clock::now();
  io->reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  ::kill(child, SIGKILL);
  WaitChild(child);
}

TEST(ProcessIOTest, WaitAndCloseIsBounded) {
  TempDir dir;
  StdioConfig cfg{"", dir.Fifo("out"), "", false};
  auto io = ProcessIO::Open(cfg, "c", "ns", nullptr);
  ASSERT_TRUE(io.ok()) << io.status();
  // The child keeps stdout open and never exits on its own, so the output never reaches EOF.
  pid_t child = StartChild(**io, "exec sleep 1000");
  auto start = std::chrono::steady_clock::now();
  (*io)->WaitAndClose(absl::Milliseconds(200));
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, std::chrono::milliseconds(150));
  EXPECT_LT(took, std::chrono::seconds(5));
  ::kill(child, SIGKILL);
  WaitChild(child);
}

TEST(ConsoleSocketTest, ShortPathRemovedOnDestruction) {
  std::string path, dir;
  {
    auto sock = ConsoleSocket::Create();
    ASSERT_TRUE(sock.ok()) << sock.status();
    path = (*sock)->path();
    EXPECT_LT(path.size(), 108u);
    struct stat st;
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    dir = std::filesystem::path(path).parent_path();
    EXPECT_EQ((*sock)->ReceiveMaster(absl::Milliseconds(50)).status().code(),
              absl::StatusCode::kDeadlineExceeded);
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST(ConsoleSocketTest, ModeIsPrivateAndATooLongPathLeavesNothingBehind) {
  TempDir base;
  {
    auto sock = ConsoleSocket::CreateIn(base.path());
    ASSERT_TRUE(sock.ok()) << sock.status();
    struct stat st;
    ASSERT_EQ(::stat((*sock)->path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
  }
  // <deep>/pty-XXXXXX/s is over 107 bytes: refused with the reason, and the private directory is removed.
  const std::string deep = base.path() + "/" + std::string(100, 'd');
  ASSERT_TRUE(std::filesystem::create_directory(deep));
  auto sock = ConsoleSocket::CreateIn(deep);
  EXPECT_EQ(sock.status().code(), absl::StatusCode::kInvalidArgument) << sock.status();
  EXPECT_THAT(sock.status().message(), HasSubstr("console socket"));
  EXPECT_THAT(sock.status().message(), HasSubstr("too long"));
  EXPECT_TRUE(std::filesystem::is_empty(deep));
}

// Plays runsc: connects to the console socket and sends the pty master.
void SendMaster(const std::string& path, int master) {
  auto dialled = sys::DialUnix(path, absl::Seconds(20));
  ASSERT_TRUE(dialled.ok()) << dialled.status();
  sys::UniqueFd s = std::move(*dialled);
  char name[] = "/dev/ptmx";
  iovec iov{name, sizeof name - 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &master, sizeof master);
  ASSERT_EQ(::sendmsg(s.get(), &msg, 0), static_cast<ssize_t>(iov.iov_len)) << std::strerror(errno);
}

TEST(ProcessIOTest, TerminalCopiesBothWaysResizesAndHangsUpOnStdinEof) {
  TempDir dir;
  auto sock = ConsoleSocket::Create();
  ASSERT_TRUE(sock.ok()) << sock.status();

  int m = -1, s = -1;
  ASSERT_EQ(::openpty(&m, &s, nullptr, nullptr, nullptr), 0);
  sys::UniqueFd slave(s);
  termios tio;
  ASSERT_EQ(::tcgetattr(s, &tio), 0);
  ::cfmakeraw(&tio);  // no echo, no newline translation: bytes arrive as sent
  ASSERT_EQ(::tcsetattr(s, TCSANOW, &tio), 0);
  std::thread runsc([&] {
    SendMaster((*sock)->path(), m);
    ::close(m);
  });
  auto master = (*sock)->ReceiveMaster(absl::Seconds(10));
  runsc.join();
  ASSERT_TRUE(master.ok()) << master.status();

  StdioConfig cfg{dir.Fifo("in"), dir.Fifo("out"), "", true};
  auto io = ProcessIO::Open(cfg, "c", "ns", nullptr);
  ASSERT_TRUE(io.ok()) << io.status();
  EXPECT_EQ((*io)->child_stdin(), -1);
  EXPECT_EQ((*io)->child_stdout(), -1);
  EXPECT_EQ((*io)->Resize(80, 24).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE((*io)->AttachConsole(std::move(*master)).ok());
  EXPECT_EQ((*io)->AttachConsole(sys::UniqueFd(::dup(slave.get()))).code(),
            absl::StatusCode::kFailedPrecondition);

  ASSERT_TRUE((*io)->Resize(132, 43).ok());
  winsize ws{};
  ASSERT_EQ(::ioctl(slave.get(), TIOCGWINSZ, &ws), 0);
  EXPECT_EQ(ws.ws_col, 132);
  EXPECT_EQ(ws.ws_row, 43);

  sys::UniqueFd out(::open(cfg.stdout_path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_TRUE(out.valid());
  sys::UniqueFd in(::open(cfg.stdin_path.c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(in.valid());

  ASSERT_TRUE(sys::WriteAll(in.get(), "ping", 4).ok());
  EXPECT_EQ(ReadN(slave.get(), 4, absl::Seconds(10)), "ping");
  ASSERT_TRUE(sys::WriteAll(slave.get(), "pong", 4).ok());
  EXPECT_EQ(ReadN(out.get(), 4, absl::Seconds(10)), "pong");

  // stdin EOF (containerd closed its writer, then CloseIO) hangs the console up.
  in.reset();
  (*io)->CloseStdin();
  pollfd p{slave.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1);
  EXPECT_TRUE(p.revents & POLLHUP) << p.revents;
  EXPECT_EQ((*io)->Resize(80, 24).code(), absl::StatusCode::kFailedPrecondition);
  (*io)->WaitAndClose(absl::Seconds(2));
}

}  // namespace
}  // namespace gvshim::stdio
