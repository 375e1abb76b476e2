// Spawn and RunSubprocess in a process without a reaper (nullptr: RunSubprocess collects its own child).
#include "shim/sys/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shim/sys/fd.h"
#include "shim/sys/subprocess.h"
#include "tests/unit/fakes/test_util.h"

namespace gvshim::sys {
namespace {

using ::testing::HasSubstr;

SubprocessResult MustRun(SpawnOptions opts, const std::string& stdin_data = "") {
  auto r = RunSubprocess(nullptr, std::move(opts), absl::Seconds(20), stdin_data);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : SubprocessResult{};
}

SpawnOptions Sh(const std::string& script) {
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c", script};
  return o;
}

int WaitFor(pid_t pid) {
  int ws = 0;
  while (::waitpid(pid, &ws, 0) < 0) {
    if (errno != EINTR) {
      ADD_FAILURE() << "waitpid " << pid << ": " << strerror(errno);
      return -1;
    }
  }
  return ws;
}

TEST(SpawnTest, MissingBinaryInPathNamesIt) {
  SpawnOptions o;
  o.argv = {"gvshim-no-such-binary-xyz", "arg"};
  auto pid = Spawn(o, nullptr);
  ASSERT_FALSE(pid.ok());
  EXPECT_EQ(pid.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(pid.status().message(), HasSubstr("exec gvshim-no-such-binary-xyz: No such file or directory"));
}

TEST(SpawnTest, MissingAbsolutePath) {
  SpawnOptions o;
  o.argv = {"/nonexistent/gvshim/bin"};
  auto pid = Spawn(o, nullptr);
  ASSERT_FALSE(pid.ok());
  EXPECT_THAT(pid.status().message(), HasSubstr("exec /nonexistent/gvshim/bin: No such file"));
}

TEST(SpawnTest, NotExecutableIsPermissionDenied) {
  char path[] = "/tmp/gvshim-noexec-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  SpawnOptions o;
  o.argv = {path};
  auto pid = Spawn(o, nullptr);
  ::unlink(path);
  ASSERT_FALSE(pid.ok());
  EXPECT_EQ(pid.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(pid.status().message(), HasSubstr(absl::StrCat("exec ", path)));
}

TEST(SpawnTest, EmptyArgvIsInvalid) {
  EXPECT_EQ(Spawn(SpawnOptions{}, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SpawnTest, BadCwdIsReported) {
  SpawnOptions o = Sh("true");
  o.cwd = "/nonexistent-gvshim-dir";
  auto pid = Spawn(o, nullptr);
  ASSERT_FALSE(pid.ok());
  EXPECT_THAT(pid.status().message(), HasSubstr("chdir /nonexistent-gvshim-dir"));
}

TEST(SpawnTest, PathLookupUsesEnvPath) {
  // With PATH pointing at a dir without sh, a bare "sh" cannot be found.
  SpawnOptions o;
  o.argv = {"sh", "-c", "true"};
  o.env = {"PATH=/nonexistent-gvshim-dir"};
  EXPECT_EQ(Spawn(o, nullptr).status().code(), absl::StatusCode::kNotFound);
  o.env = {"PATH=/nonexistent-gvshim-dir:/bin"};
  auto r = MustRun(o);
  EXPECT_EQ(r.exit_code, 0);
}

TEST(SpawnTest, CwdAndEnv) {
  SpawnOptions o = Sh("pwd; echo \"$GVSHIM_A\"");
  o.cwd = "/tmp";
  o.env = {"GVSHIM_A=hello world", "PATH=/usr/bin:/bin"};
  auto r = MustRun(o);
  EXPECT_EQ(r.out, "/tmp\nhello world\n");
}

TEST(SpawnTest, EmptyEnvInherits) {
  ::setenv("GVSHIM_INHERITED", "yes", 1);
  auto r = MustRun(Sh("echo $GVSHIM_INHERITED"));
  ::unsetenv("GVSHIM_INHERITED");
  EXPECT_EQ(r.out, "yes\n");
}

TEST(RunTest, CapturesStdoutStderrAndExitCode) {
  auto r = MustRun(Sh("echo out; echo err >&2; exit 3"));
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_TRUE(WIFEXITED(r.wait_status));
}

TEST(RunTest, SignalledExitCode) {
  auto r = MustRun(Sh("kill -TERM $$"));
  EXPECT_TRUE(WIFSIGNALED(r.wait_status));
  EXPECT_EQ(r.exit_code, 128 + SIGTERM);
}

TEST(RunTest, LargeStdinAndStdoutFlowTogether) {
  // More than a pipe buffer each way: Run must write stdin and read stdout at the same time.
  std::string data(3 << 20, 'x');
  for (size_t i = 0; i < data.size(); i += 4096) data[i] = static_cast<char>('a' + (i / 4096) % 26);
  SpawnOptions o;
  o.argv = {"cat"};
  auto r = MustRun(o, data);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(r.out == data) << "got " << r.out.size() << " bytes";
}

TEST(RunTest, StdinIgnoredByChildDoesNotKillUs) {
  std::string data(1 << 20, 'y');
  auto r = MustRun(Sh("exit 0"), data);
  EXPECT_EQ(r.exit_code, 0);
}

TEST(RunTest, TimeoutKillsChild) {
  char tmpl[] = "/tmp/gvspawn-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  {
    testing::PidReport child(dir);
    absl::Time start = absl::Now();
    absl::StatusOr<SubprocessResult> r = absl::UnknownError("not returned");
    std::thread t([&] {
      r = RunSubprocess(nullptr, Sh(absl::StrCat("echo $$ > ", child.fifo(), "; exec sleep 30")),
                        absl::Seconds(1));
    });
    const bool reported = child.Await();
    t.join();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
    EXPECT_THAT(r.status().message(), HasSubstr("timed out"));
    EXPECT_LT(absl::Now() - start, absl::Seconds(10));
    ASSERT_TRUE(reported) << "the child never reported its pid";
    // Run returned: the child (sleeping for 30 s) must be dead by now.
    EXPECT_TRUE(child.Exited()) << "pid " << child.pid() << " outlived the timeout";
  }
  ::rmdir(dir.c_str());
}

TEST(RunTest, GrandchildHoldingPipeDoesNotBlock) {
  // The grandchild keeps stdout open long after the child exits; Run returns at the child's exit.
  absl::Time start = absl::Now();
  auto r = RunSubprocess(nullptr, Sh("echo early; sleep 30 & echo $!"), absl::Seconds(20));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_THAT(r->out, HasSubstr("early\n"));
  pid_t grandchild = std::atoi(r->out.substr(r->out.find('\n') + 1).c_str());
  ASSERT_GT(grandchild, 0);
  ::kill(grandchild, SIGKILL);
}

TEST(SpawnTest, StdioAndExtraFds) {
  auto out = MakePipe();
  auto three = MakePipe();
  auto four = MakePipe();
  ASSERT_TRUE(out.ok() && three.ok() && four.ok());
  SpawnOptions o = Sh("echo to-stdout; echo to-three >&3; read line <&4; echo \"got $line\" >&2");
  o.stdout_fd = out->write.get();
  o.stderr_fd = out->write.get();  // same fd twice is fine
  o.extra_fds = {three->write.get(), four->read.get()};
  auto pid = Spawn(o, nullptr);
  ASSERT_TRUE(pid.ok()) << pid.status();
  out->write.reset();
  three->write.reset();
  four->read.reset();
  ASSERT_TRUE(WriteAll(four->write.get(), "ping\n", 5).ok());
  four->write.reset();
  auto s3 = ReadAll(three->read.get());
  auto so = ReadAll(out->read.get());
  int ws = WaitFor(*pid);
  EXPECT_EQ(ExitCodeFromWaitStatus(ws), 0);
  ASSERT_TRUE(s3.ok() && so.ok());
  EXPECT_EQ(*s3, "to-three\n");
  EXPECT_EQ(*so, "to-stdout\ngot ping\n");
}

TEST(SpawnTest, UnsetStdioIsDevNull) {
  auto r = MustRun(Sh("readlink /proc/$$/fd/0"));
  EXPECT_EQ(r.out, "/dev/null\n");
}

TEST(SpawnTest, OtherFdsAreNotInherited) {
  // A descriptor opened without O_CLOEXEC must not reach the child.
  int leaked = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(leaked, 0);
  auto r = MustRun(Sh(absl::StrCat("test -e /proc/$$/fd/", leaked, " && echo leaked || echo closed")));
  ::close(leaked);
  EXPECT_EQ(r.out, "closed\n");
}

TEST(SpawnTest, ChildGetsEmptyMaskAndDefaultDispositions) {
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, &old);
  struct sigaction ign = {}, old_int = {};
  ign.sa_handler = SIG_IGN;
  sigaction(SIGINT, &ign, &old_int);
  SpawnOptions o;
  o.argv = {"grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"};
  auto r = MustRun(o);
  sigaction(SIGINT, &old_int, nullptr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  EXPECT_EQ(r.out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

TEST(SpawnTest, NewSession) {
  SpawnOptions o = Sh("echo $$ $(cut -d' ' -f6 /proc/$$/stat)");
  o.new_session = true;
  auto r = MustRun(o);
  auto sp = r.out.find(' ');
  ASSERT_NE(sp, std::string::npos);
  EXPECT_EQ(r.out.substr(0, sp) + "\n", r.out.substr(sp + 1));
}

TEST(SpawnTest, PdeathsigFiresWhenSpawningThreadExits) {
  pid_t child = -1;
  std::thread t([&] {
    SpawnOptions o;
    o.argv = {"sleep", "30"};
    auto pid = Spawn(o, nullptr);
    ASSERT_TRUE(pid.ok()) << pid.status();
    child = *pid;
  });
  t.join();
  ASSERT_GT(child, 0);
  int ws = WaitFor(child);
  ASSERT_TRUE(WIFSIGNALED(ws));
  EXPECT_EQ(WTERMSIG(ws), SIGKILL);
}

TEST(SpawnTest, HideProcSysNetIsTheChildsOnly) {
  // Seen by the child: an empty /proc/sys/net, in a mount namespace other than ours.
  SpawnOptions o = Sh("ls -A /proc/sys/net | wc -l; readlink /proc/self/ns/mnt");
  o.hide_proc_sys_net = true;
  auto r = MustRun(o);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  char own[64] = {};
  ASSERT_GT(::readlink("/proc/self/ns/mnt", own, sizeof own - 1), 0);
  EXPECT_EQ(r.out.substr(0, 2), "0\n");
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr(own)));
  // Ours is untouched.
  struct stat st {};
  EXPECT_EQ(::stat("/proc/sys/net/core", &st), 0);
  // Without the option the child sees it as we do.
  auto plain = MustRun(Sh("test -e /proc/sys/net/core && echo present"));
  EXPECT_EQ(plain.out, "present\n");
}

TEST(SpawnTest, ExitCodeFromWaitStatus) {
  EXPECT_EQ(ExitCodeFromWaitStatus(0), 0);
  EXPECT_EQ(ExitCodeFromWaitStatus(7 << 8), 7);
  EXPECT_EQ(ExitCodeFromWaitStatus(SIGKILL), 137);
}

}  // namespace
}  // namespace gvshim::sys
