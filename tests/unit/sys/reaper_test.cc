// The reaper thread, started once for this whole binary (as the shim's main does) before any test runs.
#include "shim/sys/reaper.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
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
#include "shim/sys/spawn.h"

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

class ReaperEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    ASSERT_TRUE(Reaper::Get().Start(/*subreaper=*/true).ok());
    Reaper::Get().SetExitHook([](pid_t pid, int) { Log().Add(pid); });
  }
};
::testing::Environment* const kEnv = ::testing::AddGlobalTestEnvironment(new ReaperEnvironment);

SpawnOptions Sh(const std::string& script) {
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c", script};
  return o;
}

TEST(ReaperTest, Running) {
  EXPECT_TRUE(Reaper::Get().running());
  EXPECT_TRUE(Reaper::Get().Start(true).ok());  // second call is a no-op
}

TEST(ReaperTest, WatchGetsStatusOnReaperThread) {
  auto pipe = MakePipe();
  ASSERT_TRUE(pipe.ok());
  SpawnOptions o = Sh("read x; exit 5");
  o.stdin_fd = pipe->read.get();
  auto pid = Spawn(o);
  ASSERT_TRUE(pid.ok()) << pid.status();
  pipe->read.reset();
  absl::Notification done;
  int status = -1;
  std::thread::id cb_thread;
  // The child blocks on stdin, so the watch is surely registered before the exit.
  Reaper::Get().Watch(*pid, [&](int ws) {
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
  auto pid = Spawn(o);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_TRUE(Log().WaitFor(*pid, absl::Seconds(20)));
  // Collected already: Signal must refuse to hit the (possibly recycled) pid.
  EXPECT_EQ(Reaper::Get().Signal(*pid, SIGKILL).code(), absl::StatusCode::kNotFound);
  int status = -1;
  std::thread::id cb_thread;
  Reaper::Get().Watch(*pid, [&](int ws) {
    status = ws;
    cb_thread = std::this_thread::get_id();
  });
  EXPECT_EQ(ExitCodeFromWaitStatus(status), 9);
  EXPECT_EQ(cb_thread, std::this_thread::get_id());
}

TEST(ReaperTest, StaleExitOfRecycledPidIsForgotten) {
  SpawnOptions o = Sh("exit 4");
  auto pid = Spawn(o);
  ASSERT_TRUE(pid.ok());
  ASSERT_TRUE(Log().WaitFor(*pid, absl::Seconds(20)));
  // Pretend a new child got the same pid after that exit was collected.
  Reaper::Get().ForgetStaleExit(*pid, Reaper::Get().ReapSequence());
  auto fired = std::make_shared<std::atomic<bool>>(false);
  Reaper::Get().Watch(*pid, [fired](int) { fired->store(true); });
  EXPECT_FALSE(fired->load());
}

TEST(ReaperTest, RunUsesReaper) {
  auto r = Reaper::Get().Run(Sh("echo hi; echo oops >&2; exit 2"), absl::Seconds(20));
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
    auto r = Reaper::Get().Run(o, absl::Seconds(20));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->exit_code, 0);
  }
}

TEST(ReaperTest, RunTimeout) {
  auto r = Reaper::Get().Run(Sh("exec sleep 30"), absl::Milliseconds(200));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(ReaperTest, SpawnFailureStillReported) {
  SpawnOptions o;
  o.argv = {"gvshim-missing-binary"};
  auto r = Reaper::Get().Run(o, absl::Seconds(5));
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
        auto r = Reaper::Get().Run(Sh(absl::StrCat("echo ", t, "-", i, "; exit ", code)), absl::Seconds(60));
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
  auto r = Reaper::Get().Run(o, absl::Seconds(20));
  ASSERT_TRUE(r.ok()) << r.status();
  pid_t grandchild = std::atoi(r->out.c_str());
  ASSERT_GT(grandchild, 0);
  hold->read.reset();
  hold->write.reset();  // EOF: the grandchild exits now
  EXPECT_TRUE(Log().WaitFor(grandchild, absl::Seconds(20)));
}

}  // namespace
}  // namespace gvshim::sys
