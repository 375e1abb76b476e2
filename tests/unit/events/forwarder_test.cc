#include <gtest/gtest.h>

#include <vector>

#include "absl/synchronization/mutex.h"
#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "shim/events/publisher.h"

namespace gvshim::events {
namespace {

// Records envelopes; fails the first `failures` forwards, and every forward while "down".
class RecordingSink : public EnvelopeSink {
 public:
  explicit RecordingSink(int failures) : failures_(failures) {}
  absl::Status Forward(const Envelope& e) override {
    absl::MutexLock lock(&mu_);
    ++calls_;
    if (down_ || failures_ > 0) {
      if (failures_ > 0) failures_--;
      return absl::UnavailableError("containerd away");
    }
    got_.push_back(e);
    return absl::OkStatus();
  }
  std::vector<Envelope> got() {
    absl::MutexLock lock(&mu_);
    return got_;
  }
  void SetDown(bool down) {
    absl::MutexLock lock(&mu_);
    down_ = down;
  }
  // Waits until at least n forwards were attempted.
  bool WaitCalls(int n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return calls_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  absl::Mutex mu_;
  int failures_ ABSL_GUARDED_BY(mu_);
  bool down_ ABSL_GUARDED_BY(mu_) = false;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Envelope> got_ ABSL_GUARDED_BY(mu_);
};

containerd::events::TaskExit Exit(const std::string& id, uint32_t status = 0) {
  containerd::events::TaskExit ev;
  ev.set_container_id(id);
  ev.set_id(id);
  ev.set_exit_status(status);
  return ev;
}

Forwarder::Options Fast() {
  Forwarder::Options o;
  o.attempts = 3;
  o.retry_delay = absl::Milliseconds(1);
  o.max_retry_delay = absl::Milliseconds(5);
  o.max_queue = 16;
  return o;
}

TEST(TopicTest, MapsEveryTaskEvent) {
  EXPECT_EQ(TopicFor(containerd::events::TaskCreate()), "/tasks/create");
  EXPECT_EQ(TopicFor(containerd::events::TaskStart()), "/tasks/start");
  EXPECT_EQ(TopicFor(containerd::events::TaskExit()), "/tasks/exit");
  EXPECT_EQ(TopicFor(containerd::events::TaskDelete()), "/tasks/delete");
  EXPECT_EQ(TopicFor(containerd::events::TaskExecAdded()), "/tasks/exec-added");
  EXPECT_EQ(TopicFor(containerd::events::TaskExecStarted()), "/tasks/exec-started");
  EXPECT_EQ(TopicFor(containerd::events::TaskPaused()), "/tasks/paused");
  EXPECT_EQ(TopicFor(containerd::events::TaskResumed()), "/tasks/resumed");
  EXPECT_EQ(TopicFor(containerd::events::TaskOOM()), "/tasks/oom");
}

TEST(ForwarderTest, KeepsOrderAndEnvelopeFields) {
  auto sink = std::make_unique<RecordingSink>(0);
  RecordingSink* raw = sink.get();
  Forwarder f(std::move(sink), "ns1");
  for (int i = 0; i < 50; ++i) {
    containerd::events::TaskExit ev;
    ev.set_container_id("c");
    ev.set_exit_status(static_cast<uint32_t>(i));
    f.Publish(ev);
  }
  ASSERT_TRUE(f.Drain(absl::Seconds(10)));
  auto got = raw->got();
  ASSERT_EQ(got.size(), 50u);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(got[i].namespace_(), "ns1");
    EXPECT_EQ(got[i].topic(), "/tasks/exit");
    EXPECT_EQ(got[i].event().type_url(), "containerd.events.TaskExit");
    containerd::events::TaskExit ev;
    ASSERT_TRUE(ev.ParseFromString(got[i].event().value()));
    EXPECT_EQ(ev.exit_status(), static_cast<uint32_t>(i));
    EXPECT_GT(got[i].timestamp().seconds(), 0);
  }
}

TEST(ForwarderTest, RetriesThenDelivers) {
  auto sink = std::make_unique<RecordingSink>(2);
  RecordingSink* raw = sink.get();
  Forwarder f(std::move(sink), "ns", Fast());
  f.Publish(containerd::events::TaskStart());
  ASSERT_TRUE(f.Drain(absl::Seconds(10)));
  EXPECT_EQ(raw->got().size(), 1u);
}

TEST(ForwarderTest, DropsAfterAttemptsAndContinues) {
  auto sink = std::make_unique<RecordingSink>(3);
  RecordingSink* raw = sink.get();
  Forwarder f(std::move(sink), "ns", Fast());
  f.Publish(containerd::events::TaskStart());   // fails 3 times: dropped
  f.Publish(containerd::events::TaskPaused());  // delivered
  ASSERT_TRUE(f.Drain(absl::Seconds(10)));
  auto got = raw->got();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].topic(), "/tasks/paused");
}

// containerd waits for a TaskExit and never asks again: it is retried until delivered, however long
// containerd is away (here 50 failed forwards, far beyond `attempts`).
TEST(ForwarderTest, TaskExitIsRetriedUntilDelivered) {
  auto sink = std::make_unique<RecordingSink>(50);
  RecordingSink* raw = sink.get();
  Forwarder f(std::move(sink), "ns", Fast());
  f.Publish(Exit("c1", 7));
  ASSERT_TRUE(f.Drain(absl::Seconds(30)));
  auto got = raw->got();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].topic(), "/tasks/exit");
  EXPECT_EQ(raw->calls(), 51);
}

// A full queue makes room by dropping other events, never a TaskExit; order is kept.
TEST(ForwarderTest, FullQueueNeverDropsATaskExit) {
  auto sink = std::make_unique<RecordingSink>(0);
  RecordingSink* raw = sink.get();
  raw->SetDown(true);
  Forwarder::Options o = Fast();
  o.max_queue = 4;
  Forwarder f(std::move(sink), "ns", o);
  // One TaskStart goes in flight and is retried (and dropped) while containerd is down; wait for that so the
  // rest stays queued.
  f.Publish(containerd::events::TaskStart());
  ASSERT_TRUE(raw->WaitCalls(1, absl::Seconds(10)));
  f.Publish(Exit("first", 1));
  for (int i = 0; i < 20; ++i) f.Publish(containerd::events::TaskPaused());
  f.Publish(Exit("second", 2));
  for (int i = 0; i < 20; ++i) f.Publish(containerd::events::TaskResumed());
  raw->SetDown(false);
  ASSERT_TRUE(f.Drain(absl::Seconds(30)));
  std::vector<std::string> exits;
  size_t others = 0;
  for (const Envelope& e : raw->got()) {
    if (e.topic() == "/tasks/exit") {
      containerd::events::TaskExit ev;
      ASSERT_TRUE(ev.ParseFromString(e.event().value()));
      exits.push_back(ev.id());
    } else {
      ++others;
    }
  }
  EXPECT_EQ(exits, (std::vector<std::string>{"first", "second"}));
  // At most max_queue of the 40 other events were kept (plus possibly the first TaskStart).
  EXPECT_LE(others, 5u);
  // The newest ones survive: the last event is a TaskResumed.
  EXPECT_EQ(raw->got().back().topic(), "/tasks/resumed");
}

// Shutdown is bounded even while containerd is away: the destructor gives up after shutdown_drain.
TEST(ForwarderTest, StopsRetryingWhenDestroyed) {
  auto sink = std::make_unique<RecordingSink>(0);
  RecordingSink* raw = sink.get();
  raw->SetDown(true);
  Forwarder::Options o = Fast();
  o.shutdown_drain = absl::Milliseconds(50);
  auto f = std::make_unique<Forwarder>(std::move(sink), "ns", o);
  f->Publish(Exit("c1"));
  ASSERT_TRUE(raw->WaitCalls(2, absl::Seconds(10)));
  EXPECT_FALSE(f->Drain(absl::Milliseconds(20)));
  f.reset();  // returns: the exit is abandoned only because the shim goes away
}

}  // namespace
}  // namespace gvshim::events
