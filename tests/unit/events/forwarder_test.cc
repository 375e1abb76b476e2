#include <gtest/gtest.h>

#include <vector>

#include "absl/synchronization/mutex.h"
#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "shim/events/publisher.h"

namespace gvshim::events {
namespace {

// Records envelopes; fails the first `failures` forwards.
class RecordingSink : public EnvelopeSink {
 public:
  explicit RecordingSink(int failures) : failures_(failures) {}
  absl::Status Forward(const Envelope& e) override {
    absl::MutexLock lock(&mu_);
    if (failures_ > 0) {
      failures_--;
      return absl::UnavailableError("containerd away");
    }
    got_.push_back(e);
    return absl::OkStatus();
  }
  std::vector<Envelope> got() {
    absl::MutexLock lock(&mu_);
    return got_;
  }

 private:
  absl::Mutex mu_;
  int failures_;
  std::vector<Envelope> got_;
};

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
  Forwarder f(std::move(sink), "ns", Forwarder::Options{3, absl::Milliseconds(1), 16});
  f.Publish(containerd::events::TaskStart());
  ASSERT_TRUE(f.Drain(absl::Seconds(10)));
  EXPECT_EQ(raw->got().size(), 1u);
}

TEST(ForwarderTest, DropsAfterAttemptsAndContinues) {
  auto sink = std::make_unique<RecordingSink>(3);
  RecordingSink* raw = sink.get();
  Forwarder f(std::move(sink), "ns", Forwarder::Options{3, absl::Milliseconds(1), 16});
  f.Publish(containerd::events::TaskStart());   // fails 3 times: dropped
  f.Publish(containerd::events::TaskPaused());  // delivered
  ASSERT_TRUE(f.Drain(absl::Seconds(10)));
  auto got = raw->got();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].topic(), "/tasks/paused");
}

}  // namespace
}  // namespace gvshim::events
