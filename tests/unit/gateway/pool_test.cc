#include "shim/gateway/pool.h"

#include <gtest/gtest.h>

#include <thread>

#include "absl/synchronization/notification.h"
#include "fake_pods.h"

namespace gvshim::gateway {
namespace {

using testing::FakeNode;
namespace ev1 = execute::v1;
using testing::FakePod;

PoolOptions Opts(const FakeNode& node, int concurrency = 2, int max_queue = 8) {
  PoolOptions o;
  o.dir = node.dir();
  o.pod_concurrency = concurrency;
  o.max_queue = max_queue;
  return o;
}

absl::Time Soon() { return absl::Now() + absl::Seconds(20); }

// Polls `cond` (no sleeping on a fixed delay: each check yields) until true or 20 s passed.
template <typename F>
bool Eventually(F cond) {
  absl::Time end = absl::Now() + absl::Seconds(20);
  while (absl::Now() < end) {
    if (cond()) return true;
    std::this_thread::yield();
  }
  return cond();
}

TEST(Pool, DiscoversAndPollsPods) {
  FakeNode node;
  auto a = node.AddPod("a");
  auto b = node.AddPod("b");
  b->SetHealth(grpc::Status::OK, ev1::HealthResponse::NOT_SERVING);
  Metrics m;
  Pool pool(Opts(node), node.Factory(), &m);
  EXPECT_EQ(pool.ReadyCount(), 0);
  pool.Refresh();
  EXPECT_EQ(pool.KnownCount(), 2);
  EXPECT_EQ(pool.ReadyCount(), 1);
  EXPECT_GE(a->health_calls.load(), 1);
  EXPECT_NE(m.Render().find("gvshim_gateway_pods{state=\"ready\"} 1"), std::string::npos);
}

TEST(Pool, NoHealthPollsWhileAPodKeepsAnswering) {
  FakeNode node;
  auto a = node.AddPod("a");
  {
    absl::MutexLock lock(&a->mu);
    a->max_limits = ev1::Limits();
  }
  PoolOptions o = Opts(node);
  o.passive_health = absl::Hours(1);
  Pool pool(o, node.Factory(), nullptr);
  pool.Refresh();
  pool.Refresh();  // polls go on while nothing ran
  int polls = a->health_calls.load();
  EXPECT_EQ(polls, 2);
  pool.Acquire(RunLanguage::kPython, Soon())->Succeeded();
  pool.Refresh();
  EXPECT_EQ(a->health_calls.load(), polls) << "Health pinged a pod that just answered a request";
  // A pod set aside is polled (and probed) again.
  pool.Acquire(RunLanguage::kPython, Soon())->SetAside("failure");
  pool.Refresh();
  EXPECT_GT(a->health_calls.load(), polls);
}

TEST(Pool, LeastBusyFirst) {
  FakeNode node;
  auto a = node.AddPod("a");
  auto b = node.AddPod("b");
  Pool pool(Opts(node), node.Factory(), nullptr);
  pool.Refresh();
  auto l1 = pool.Acquire(RunLanguage::kPython, Soon());
  auto l2 = pool.Acquire(RunLanguage::kPython, Soon());
  ASSERT_TRUE(l1.ok() && l2.ok());
  EXPECT_NE(l1->pod_name(), l2->pod_name()) << "the second request must go to the idle pod";
  // Load that Health reports from elsewhere counts too.
  {
    absl::MutexLock lock(&a->mu);
    a->others_active = 5;
  }
  pool.Refresh();
  auto l3 = pool.Acquire(RunLanguage::kPython, Soon());
  ASSERT_TRUE(l3.ok());
  EXPECT_EQ(l3->pod_name(), "ns/b");
}

TEST(Pool, OnlyPodsWithTheInterpreter) {
  FakeNode node;
  node.AddPod("py", /*python=*/true, /*node=*/false);
  Pool pool(Opts(node), node.Factory(), nullptr);
  pool.Refresh();
  EXPECT_TRUE(pool.Acquire(RunLanguage::kPython, Soon()).ok());
  auto js = pool.Acquire(RunLanguage::kNodejs, absl::Now() + absl::Milliseconds(50));
  EXPECT_EQ(js.status().code(), absl::StatusCode::kDeadlineExceeded) << js.status();
}

TEST(Pool, BoundedQueue) {
  FakeNode node;
  node.AddPod("a");
  Pool pool(Opts(node, /*concurrency=*/1, /*max_queue=*/1), node.Factory(), nullptr);
  pool.Refresh();
  auto held = std::make_unique<Pool::Lease>(*pool.Acquire(RunLanguage::kPython, Soon()));
  // A waiter times out when nothing frees up.
  EXPECT_EQ(pool.Acquire(RunLanguage::kPython, absl::Now() + absl::Milliseconds(20)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  // One waiter fits in the queue; a second is refused at once.
  absl::Notification got;
  std::thread waiter([&] {
    auto l = pool.Acquire(RunLanguage::kPython, Soon());
    EXPECT_TRUE(l.ok()) << l.status();
    got.Notify();
  });
  ASSERT_TRUE(Eventually([&] { return pool.QueueDepth() == 1; }));
  EXPECT_EQ(pool.Acquire(RunLanguage::kPython, Soon()).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(got.HasBeenNotified());
  held.reset();  // the slot frees: the waiter gets it
  waiter.join();
  EXPECT_TRUE(got.HasBeenNotified());
}

TEST(Pool, FirstComeFirstServed) {
  FakeNode node;
  node.AddPod("a");
  Pool pool(Opts(node, 1, 8), node.Factory(), nullptr);
  pool.Refresh();
  auto held = std::make_unique<Pool::Lease>(*pool.Acquire(RunLanguage::kPython, Soon()));
  absl::Notification first, release_first;
  std::thread t1([&] {
    auto l = pool.Acquire(RunLanguage::kPython, Soon());
    EXPECT_TRUE(l.ok()) << l.status();
    first.Notify();
    release_first.WaitForNotification();
  });
  ASSERT_TRUE(Eventually([&] { return pool.QueueDepth() == 1; }));
  // The slot frees while a request waits: a request arriving now must not take it (no barging).
  held.reset();
  auto late = pool.Acquire(RunLanguage::kPython, absl::Now() + absl::Milliseconds(100));
  EXPECT_FALSE(late.ok()) << "a later request overtook the waiting one";
  first.WaitForNotification();
  release_first.Notify();
  t1.join();
  // Waiting requests of another language are not in the way.
  node.AddPod("js", false, true);
  pool.Refresh();
  auto py_holder = pool.Acquire(RunLanguage::kPython, Soon());
  ASSERT_TRUE(py_holder.ok());
  std::thread t2([&] { (void)pool.Acquire(RunLanguage::kPython, absl::Now() + absl::Seconds(2)); });
  ASSERT_TRUE(Eventually([&] { return pool.QueueDepth() == 1; }));
  EXPECT_TRUE(pool.Acquire(RunLanguage::kNodejs, Soon()).ok());
  t2.join();
}

TEST(Pool, SetAsideUntilHealthAnswers) {
  FakeNode node;
  node.AddPod("a");
  node.AddPod("b");
  PoolOptions o = Opts(node);
  o.set_aside_min = absl::ZeroDuration();
  Pool pool(o, node.Factory(), nullptr);
  pool.Refresh();
  std::string failed;
  {
    auto l = pool.Acquire(RunLanguage::kPython, Soon());
    ASSERT_TRUE(l.ok());
    failed = l->pod_name();
    l->SetAside("gRPC UNAVAILABLE");
  }
  EXPECT_EQ(pool.ReadyCount(), 1);
  for (int i = 0; i < 4; ++i) {
    auto l = pool.Acquire(RunLanguage::kPython, Soon());
    ASSERT_TRUE(l.ok());
    EXPECT_NE(l->pod_name(), failed) << "a pod set aside got a request";
  }
  pool.Refresh();  // its Health answers: back in the pool
  EXPECT_EQ(pool.ReadyCount(), 2);
}

TEST(Pool, SetAsideUntilAProbeSnippetRuns) {
  FakeNode node;
  auto a = node.AddPod("a");
  PoolOptions o = Opts(node);
  o.set_aside_min = absl::ZeroDuration();
  Pool pool(o, node.Factory(), nullptr);
  pool.Refresh();
  // Health says SERVING, but the pod cannot run anything (its sandbox is gone).
  a->on_execute = [](const ev1::ExecuteRequest&, ev1::ExecuteResponse*) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "cannot execute in container in state stopped");
  };
  pool.Acquire(RunLanguage::kPython, Soon())->SetAside("FAILED_PRECONDITION");
  int before = a->executes.load();
  pool.Refresh();
  EXPECT_EQ(a->executes.load(), before + 1) << "no probe snippet";
  EXPECT_EQ(pool.ReadyCount(), 0) << "a pod whose probe failed came back";
  {
    absl::MutexLock lock(&a->mu);
    EXPECT_EQ(a->last.code(), "pass");
    EXPECT_LE(a->last.limits().wall_timeout_ms(), 5000u);
  }
  a->on_execute = nullptr;  // it recovers
  pool.Refresh();
  EXPECT_EQ(pool.ReadyCount(), 1);
}

TEST(Pool, SetAsideLastsAtLeastTheMinimum) {
  FakeNode node;
  node.AddPod("a");
  PoolOptions o = Opts(node);
  o.set_aside_min = absl::Hours(1);
  Pool pool(o, node.Factory(), nullptr);
  pool.Refresh();
  pool.Acquire(RunLanguage::kPython, Soon())->SetAside("internal error");
  pool.Refresh();  // Health answers, but a pod being deleted may still do that: it stays aside
  EXPECT_EQ(pool.ReadyCount(), 0);
}

TEST(Pool, PodThatGoesAway) {
  FakeNode node;
  auto a = node.AddPod("a");
  auto b = node.AddPod("b");
  Pool pool(Opts(node), node.Factory(), nullptr);
  pool.Refresh();
  auto la = pool.Acquire(RunLanguage::kPython, Soon());
  ASSERT_TRUE(la.ok());
  std::string gone = la->pod_name() == "ns/a" ? "a" : "b";
  node.RemovePod(gone);
  pool.Refresh();
  EXPECT_EQ(pool.KnownCount(), 1);
  for (int i = 0; i < 3; ++i) {
    auto l = pool.Acquire(RunLanguage::kPython, Soon());
    ASSERT_TRUE(l.ok());
    EXPECT_NE(l->pod_name(), "ns/" + gone);
  }
  // A pod whose Health fails is not ready.
  (gone == "a" ? b : a)->SetHealth(grpc::Status(grpc::StatusCode::UNAVAILABLE, "connect failed"));
  pool.Refresh();
  EXPECT_EQ(pool.ReadyCount(), 0);
}

TEST(Pool, SelectorAndLimits) {
  FakeNode node;
  auto a = node.AddPod("pool-a", true, true, {{"dev.gvshim.pool", "ragflow"}});
  node.AddPod("other", true, true, {{"dev.gvshim.pool", "else"}});
  node.AddPod("bare");  // no annotations in its record
  {
    absl::MutexLock lock(&a->mu);
    ev1::Limits max;
    max.set_wall_timeout_ms(5000);
    a->max_limits = max;
  }
  PoolOptions o = Opts(node);
  o.selector = *ParseSelector({"dev.gvshim.pool=ragflow"}, "");
  Pool pool(o, node.Factory(), nullptr);
  pool.Refresh();
  EXPECT_EQ(pool.KnownCount(), 1);
  auto l = pool.Acquire(RunLanguage::kPython, Soon());
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->pod_name(), "ns/pool-a");
  ASSERT_TRUE(l->max_limits().has_value());
  EXPECT_EQ(l->max_limits()->wall_timeout_ms(), 5000u);
}

TEST(Pool, StopWakesWaiters) {
  FakeNode node;
  Pool pool(Opts(node), node.Factory(), nullptr);
  pool.Refresh();
  absl::Notification done;
  std::thread t([&] {
    EXPECT_EQ(pool.Acquire(RunLanguage::kPython, Soon()).status().code(), absl::StatusCode::kUnavailable);
    done.Notify();
  });
  ASSERT_TRUE(Eventually([&] { return pool.QueueDepth() == 1; }));
  pool.Stop();
  t.join();
  EXPECT_TRUE(done.HasBeenNotified());
}

TEST(Pool, BackgroundLoopNoticesNewPods) {
  FakeNode node;
  Pool pool(Opts(node), node.Factory(), nullptr);
  pool.Start(absl::Milliseconds(20));
  EXPECT_EQ(pool.ReadyCount(), 0);
  node.AddPod("late");
  EXPECT_TRUE(Eventually([&] { return pool.ReadyCount() == 1; }));
  pool.Stop();
}

}  // namespace
}  // namespace gvshim::gateway
