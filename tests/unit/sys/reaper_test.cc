// The reaper thread, started once for this whole binary (as the shim's main does) before any test runs, and
// the subprocess runner with it.
#include "shim/sys/reaper.h"

#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shim/sys/fd.h"
#include "shim/sys/spawn.h"
#include "shim/sys/subprocess.h"
#include "tests/unit/fakes/test_util.h"

namespace gvshim::sys {
namespace {

using ::testing::HasSubstr;

// Every pid the reaper collects, so tests can wait for a specific exit without sleeping.
class ReapLog {
 public:
  void Add(pid_t pid) {
    absl::MutexLock lock(&mu_);
    reaped_.insert(pid);
  }
  bool WaitFor(pid_t pid, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return reaped_.contains(pid); };
    return mu_.AwaitWithTimeout(absl::Condition(&seen), timeout);
  }

 private:
  absl::Mutex mu_;
  std::set<pid_t> reaped_ ABSL_GUARDED_BY(mu_);
};

ReapLog& Log() {
  static ReapLog* log = new ReapLog();
  return *log;
}

// This binary's one reaper (never deleted: its thread runs until the process exits).
Reaper& R() {
  static Reaper* const reaper = new Reaper();
  return *reaper;
}

class ReaperEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    ASSERT_TRUE(R().Start(/*subreaper=*/true).ok());
    R().SetExitHook([](pid_t pid, int) { Log().Add(pid); });
  }
};
::testing::Environment* const kEnv = ::testing::AddGlobalTestEnvironment(new ReaperEnvironment);

SpawnOptions Sh(const std::string& script) {
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c", script};
  return o;
}

TEST(ReaperTest, Running) {
  EXPECT_TRUE(R().running());
  EXPECT_TRUE(R().Start(true).ok());  // second call is a no-op
}

TEST(ReaperTest, WatchGetsStatusOnReaperThread) {
  auto pipe = MakePipe();
  ASSERT_TRUE(pipe.ok());
  SpawnOptions o = Sh("read x; exit 5");
  o.stdin_fd = pipe->read.get();
  auto pid = Spawn(o, &R());
  ASSERT_TRUE(pid.ok()) << pid.status();
  pipe->read.reset();
  absl::Notification done;
  int status = -1;
  std::thread::id cb_thread;
  // The child blocks on stdin, so the watch is surely registered before the exit.
  R().Watch(*pid, [&](int ws) {
    status = ws;
    cb_thread = std::this_thread::get_id();
    done.Notify();
  });
  ASSERT_TRUE(WriteAll(pipe->write.get(), "go\n", 3).ok());
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_EQ(ExitCodeFromWaitStatus(status), 5);
  EXPECT_NE(cb_thread, std::this_thread::get_id());
}

TEST(ReaperTest, ExitBeforeWatchRunsCallbackOnCaller) {
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c", "exit 9"};
  auto pid = Spawn(o, &R());
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_TRUE(Log().WaitFor(*pid, absl::Seconds(20)));
  // Collected already: Signal must refuse to hit the (possibly recycled) pid.
  EXPECT_EQ(R().Signal(*pid, SIGKILL).code(), absl::StatusCode::kNotFound);
  int status = -1;
  std::thread::id cb_thread;
  R().Watch(*pid, [&](int ws) {
    status = ws;
    cb_thread = std::this_thread::get_id();
  });
  EXPECT_EQ(ExitCodeFromWaitStatus(status), 9);
  EXPECT_EQ(cb_thread, std::this_thread::get_id());
}

// A child created with a chosen pid (clone3 with set_tid: root only), parked in pause() until killed through
// its pidfd. Stands for "some other process got the pid" after the reaper collected the pid's earlier owner.
struct Parked {
  pid_t pid = 0;
  UniqueFd pidfd;
  bool Alive() const {
    pollfd p = {pidfd.get(), POLLIN, 0};
    return ::poll(&p, 1, 0) == 0;  // a pidfd becomes readable when its process exits
  }
  ~Parked() {
    if (pidfd.valid()) (void)::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
  }
};

// The kernel's struct clone_args up to set_tid_size (CLONE_ARGS_SIZE_VER1).
struct CloneArgs {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size;
};

absl::StatusOr<std::unique_ptr<Parked>> ParkWithPid(pid_t want) {
  int pidfd = -1;
  pid_t tid = want;
  CloneArgs args{};
  args.flags = CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<uint64_t>(&tid);
  args.set_tid_size = 1;
  long r = ::syscall(SYS_clone3, &args, sizeof args);
  if (r == 0) {
    for (;;) ::pause();  // the child: only async-signal-safe calls until SIGKILL
  }
  if (r < 0) return absl::ErrnoToStatus(errno, absl::StrCat("clone3 with pid ", want));
  auto p = std::make_unique<Parked>();
  p->pid = static_cast<pid_t>(r);
  p->pidfd.reset(pidfd);
  return p;
}

// Runs a child to its end and returns its (now free) pid once the reaper has collected it and delivered the
// exit to a watch, so nothing in the reaper remembers it.
pid_t CollectedPid() {
  auto pid = Spawn(Sh("read x"), &R());  // waits for stdin (/dev/null: EOF at once), so the watch comes first
  EXPECT_TRUE(pid.ok()) << pid.status();
  if (!pid.ok()) return 0;
  absl::Notification done;
  R().Watch(*pid, [&](int) { done.Notify(); });
  EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  return *pid;
}

// Gets a parked process on the pid of a child the reaper just collected (retrying with another child if some
// other process on the machine took the pid first). Skips the test where clone3/set_tid is not permitted.
std::unique_ptr<Parked> RecycleAPid() {
  for (int attempt = 0; attempt < 50; ++attempt) {
    pid_t pid = CollectedPid();
    if (pid <= 0) return nullptr;
    auto parked = ParkWithPid(pid);
    if (parked.ok()) return std::move(*parked);
    if (absl::IsPermissionDenied(parked.status()) || absl::IsUnimplemented(parked.status())) return nullptr;
  }
  return nullptr;
}

// The header's promise: a pid whose exit was collected is never signalled, even when the pid now belongs to
// another process.
TEST(ReaperTest, SignalNeverHitsARecycledPid) {
  if (::geteuid() != 0) GTEST_SKIP() << "clone3 with set_tid needs root";
  std::unique_ptr<Parked> other = RecycleAPid();
  ASSERT_NE(other, nullptr) << "could not place a process on a recycled pid";
  ASSERT_TRUE(other->Alive());
  absl::Status st = R().Signal(other->pid, SIGKILL);
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
  EXPECT_TRUE(other->Alive()) << "the reaper signalled pid " << other->pid << " after collecting its owner";
}

// Only watched children are signalled: a live child nobody watches is NOT_FOUND too (its exit could be
// collected, and its pid reused, at any moment).
TEST(ReaperTest, SignalNeedsAWatch) {
  auto pid = Spawn(Sh("exec sleep 1000"), &R());
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_EQ(R().Signal(*pid, SIGTERM).code(), absl::StatusCode::kNotFound);
  absl::Notification done;
  int status = 0;
  R().Watch(*pid, [&](int ws) {
    status = ws;
    done.Notify();
  });
  ASSERT_TRUE(R().Signal(*pid, SIGTERM).ok());
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_EQ(ExitCodeFromWaitStatus(status), 128 + SIGTERM);
  EXPECT_EQ(R().Signal(*pid, SIGTERM).code(), absl::StatusCode::kNotFound);
}

// A stale exit remembered for a pid must not be handed to the watcher of a new child with the same pid (Spawn
// forgets it with ForgetStaleExit; this is the same sequence with a real recycled pid).
TEST(ReaperTest, StaleExitOfRecycledPidIsForgotten) {
  if (::geteuid() != 0) GTEST_SKIP() << "clone3 with set_tid needs root";
  // An unwatched child: its exit is remembered as unclaimed.
  auto first = Spawn(Sh("exit 4"), &R());
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(Log().WaitFor(*first, absl::Seconds(20)));
  const uint64_t seq = R().ReapSequence();
  auto parked = ParkWithPid(*first);
  if (!parked.ok()) GTEST_SKIP() << "pid " << *first << " was taken by another process: " << parked.status();
  R().ForgetStaleExit(*first, seq);
  auto fired = std::make_shared<absl::Notification>();
  auto status = std::make_shared<std::atomic<int>>(-1);
  R().Watch(*first, [fired, status](int ws) {
    status->store(ws);
    fired->Notify();
  });
  EXPECT_FALSE(fired->HasBeenNotified());
  ASSERT_TRUE(R().Signal(*first, SIGKILL).ok());
  ASSERT_TRUE(fired->WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_EQ(ExitCodeFromWaitStatus(status->load()), 128 + SIGKILL);
  (*parked)->pidfd.reset();  // already dead
}

// A watch on a pid that is not our child could never fire: it reports at once instead of hanging its waiter.
TEST(ReaperTest, WatchOfAPidThatIsNotAChildReportsAtOnce) {
  int status = -1;
  R().Watch(::getppid(), [&](int ws) { status = ws; });
  EXPECT_EQ(ExitCodeFromWaitStatus(status), 255);
}

// The fd of the reaper's signalfd (the only one in this binary), or -1.
int SignalFd() {
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    auto target = std::filesystem::read_symlink(e.path(), ec);
    if (!ec && target == "anon_inode:[signalfd]") return std::atoi(e.path().filename().c_str());
  }
  return -1;
}

// The reaper thread must not end silently when its signalfd fails (here: its fd number now names the write
// end of a pipe, so reads fail with EBADF). Exits keep being delivered.
TEST(ReaperTest, ExitsAreStillDeliveredAfterTheSignalfdFails) {
  const int sfd = SignalFd();
  ASSERT_GE(sfd, 0) << "no signalfd among this process's fds";
  auto pipe = MakePipe();
  ASSERT_TRUE(pipe.ok());
  ASSERT_EQ(::dup2(pipe->write.get(), sfd), sfd);
  pipe->read.reset();  // the write end now polls as an error
  EXPECT_TRUE(R().running());
  for (int i = 0; i < 3; ++i) {
    auto hold = MakePipe();
    ASSERT_TRUE(hold.ok());
    SpawnOptions o = Sh("read x; exit 6");
    o.stdin_fd = hold->read.get();
    auto pid = Spawn(o, &R());
    ASSERT_TRUE(pid.ok()) << pid.status();
    absl::Notification done;
    int status = -1;
    R().Watch(*pid, [&](int ws) {
      status = ws;
      done.Notify();
    });
    hold->write.reset();
    ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(20)))
        << "exit " << i << " was never delivered";
    EXPECT_EQ(ExitCodeFromWaitStatus(status), 6);
  }
  EXPECT_TRUE(R().running());
}

TEST(ReaperTest, RunUsesReaper) {
  auto r = RunSubprocess(&R(), Sh("echo hi; echo oops >&2; exit 2"), absl::Seconds(20));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->out, "hi\n");
  EXPECT_EQ(r->err, "oops\n");
  EXPECT_EQ(r->exit_code, 2);
}

TEST(ReaperTest, RunChildExitingImmediately) {
  // The reaper may collect this child before Run registers; the stored exit covers that race.
  for (int i = 0; i < 50; ++i) {
    SpawnOptions o;
    o.argv = {"/bin/true"};
    auto r = RunSubprocess(&R(), o, absl::Seconds(20));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->exit_code, 0);
  }
}

TEST(ReaperTest, RunTimeoutKillsTheChild) {
  char tmpl[] = "/tmp/gvreap-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  {
    testing::PidReport child(dir);
    absl::StatusOr<SubprocessResult> r = absl::UnknownError("not returned");
    std::thread t([&] {
      r = RunSubprocess(&R(), Sh(absl::StrCat("echo $$ > ", child.fifo(), "; exec sleep 30")),
                        absl::Seconds(1));
    });
    const bool reported = child.Await();
    t.join();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
    ASSERT_TRUE(reported) << "the child never reported its pid";
    EXPECT_TRUE(child.Exited()) << "pid " << child.pid() << " outlived the timeout";
  }
  ::rmdir(dir.c_str());
}

TEST(ReaperTest, SpawnFailureStillReported) {
  SpawnOptions o;
  o.argv = {"gvshim-missing-binary"};
  auto r = RunSubprocess(&R(), o, absl::Seconds(5));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("exec gvshim-missing-binary"));
}

TEST(ReaperTest, ManyConcurrentRuns) {
  constexpr int kThreads = 8, kRuns = 25;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &failures] {
      for (int i = 0; i < kRuns; ++i) {
        int code = (t * kRuns + i) % 50;
        auto r =
            RunSubprocess(&R(), Sh(absl::StrCat("echo ", t, "-", i, "; exit ", code)), absl::Seconds(60));
        if (!r.ok() || r->exit_code != code || r->out != absl::StrCat(t, "-", i, "\n")) failures++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(ReaperTest, OrphanedGrandchildIsReapedBySubreaper) {
  // The grandchild blocks on a pipe we hold until its parent is gone, so it is surely reparented to this
  // process (a subreaper), which must collect it once we let it exit.
  auto hold = MakePipe();
  ASSERT_TRUE(hold.ok());
  SpawnOptions o = Sh("sh -c 'read x <&3' & echo $!");
  o.extra_fds = {hold->read.get()};
  auto r = RunSubprocess(&R(), o, absl::Seconds(20));
  ASSERT_TRUE(r.ok()) << r.status();
  pid_t grandchild = std::atoi(r->out.c_str());
  ASSERT_GT(grandchild, 0);
  hold->read.reset();
  hold->write.reset();  // EOF: the grandchild exits now
  EXPECT_TRUE(Log().WaitFor(grandchild, absl::Seconds(20)));
}

}  // namespace
}  // namespace gvshim::sys
