// Spawn and RunSubprocess against a fake ProcessWatcher: what they ask of the reaper they are handed. This
// binary runs no reaper, so the fake may collect the children itself (one waiter thread per watched pid).
#include "shim/sys/subprocess.h"

#include <signal.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdint>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "shim/sys/process_watcher.h"
#include "shim/sys/spawn.h"

namespace gvshim::sys {
namespace {

class FakeWatcher : public ProcessWatcher {
 public:
  ~FakeWatcher() override {
    std::vector<std::thread> waiters;
    {
      absl::MutexLock lock(&mu_);
      waiters.swap(waiters_);
    }
    for (auto& t : waiters) t.join();
  }

  bool running() const override { return true; }

  void Watch(pid_t pid, ExitCallback on_exit) override {
    absl::MutexLock lock(&mu_);
    watched_.push_back(pid);
    waiters_.emplace_back([this, pid, cb = std::move(on_exit)] {
      int ws = 0;
      while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
      }
      {
        absl::MutexLock lock(&mu_);
        collected_.insert(pid);
      }
      cb(ws);
    });
  }

  absl::Status Signal(pid_t pid, int sig) override {
    absl::MutexLock lock(&mu_);
    signals_.emplace_back(pid, sig);
    // Like the real reaper: only a watched child whose exit was not collected yet.
    if (collected_.contains(pid)) return absl::NotFoundError("collected");
    return ::kill(pid, sig) == 0 ? absl::OkStatus() : absl::InternalError("kill");
  }

  uint64_t ReapSequence() override {
    absl::MutexLock lock(&mu_);
    return ++sequence_reads_ * 10;
  }

  void ForgetStaleExit(pid_t pid, uint64_t seq_before_fork) override {
    absl::MutexLock lock(&mu_);
    forgotten_.emplace_back(pid, seq_before_fork);
  }

  std::vector<pid_t> watched() {
    absl::MutexLock lock(&mu_);
    return watched_;
  }
  std::vector<std::pair<pid_t, int>> signals() {
    absl::MutexLock lock(&mu_);
    return signals_;
  }
  std::vector<std::pair<pid_t, uint64_t>> forgotten() {
    absl::MutexLock lock(&mu_);
    return forgotten_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::thread> waiters_ ABSL_GUARDED_BY(mu_);
  std::vector<pid_t> watched_ ABSL_GUARDED_BY(mu_);
  std::set<pid_t> collected_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<pid_t, int>> signals_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<pid_t, uint64_t>> forgotten_ ABSL_GUARDED_BY(mu_);
  uint64_t sequence_reads_ ABSL_GUARDED_BY(mu_) = 0;
};

SpawnOptions Sh(const std::string& script) {
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c", script};
  return o;
}

// A remembered exit of an earlier owner of the child's pid must be dropped: Spawn reads the sequence before
// fork and hands it back with the new pid.
TEST(SubprocessWatcherTest, SpawnDropsAStaleExitOfTheNewPid) {
  FakeWatcher w;
  auto pid = Spawn(Sh("exit 0"), &w);
  ASSERT_TRUE(pid.ok()) << pid.status();
  int ws = 0;
  while (::waitpid(*pid, &ws, 0) < 0 && errno == EINTR) {
  }
  ASSERT_EQ(w.forgotten().size(), 1u);
  EXPECT_EQ(w.forgotten()[0].first, *pid);
  EXPECT_EQ(w.forgotten()[0].second, 10u);  // the value ReapSequence gave before fork
}

TEST(SubprocessWatcherTest, TheExitComesFromTheWatcher) {
  FakeWatcher w;
  auto r = RunSubprocess(&w, Sh("echo out; echo err >&2; exit 3"), absl::Seconds(20));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->out, "out\n");
  EXPECT_EQ(r->err, "err\n");
  ASSERT_EQ(w.watched().size(), 1u);
  EXPECT_EQ(w.forgotten().at(0).first, w.watched()[0]);  // the same child
}

// On timeout the child is killed through the watcher, which alone may signal a child it collects.
TEST(SubprocessWatcherTest, TimeoutKillsThroughTheWatcher) {
  FakeWatcher w;
  auto r = RunSubprocess(&w, Sh("exec sleep 30"), absl::Milliseconds(200));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_EQ(w.watched().size(), 1u);
  ASSERT_EQ(w.signals().size(), 1u);
  EXPECT_EQ(w.signals()[0], std::make_pair(w.watched()[0], SIGKILL));
}

// A watcher that is not running is not used: the child is collected with waitpid by RunSubprocess itself.
class StoppedWatcher : public FakeWatcher {
 public:
  bool running() const override { return false; }
};

TEST(SubprocessWatcherTest, AWatcherThatIsNotRunningIsNotAskedToWatch) {
  StoppedWatcher w;
  auto r = RunSubprocess(&w, Sh("exit 5"), absl::Seconds(20));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 5);
  EXPECT_TRUE(w.watched().empty());
}

}  // namespace
}  // namespace gvshim::sys
