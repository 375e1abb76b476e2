// task::Service: execs, CRI pods (the sandbox container and the containers that join it), seccomp, stats,
// pause/resume, Connect and deletes.
#include "tests/unit/task/service_test_fixture.h"

namespace gvshim::task {
namespace {

namespace tv2 = containerd::task::v2;
using ::gvshim::testing::FakeRunscView;
using ::gvshim::testing::ReadFile;
using ::gvshim::testing::RecordedEvent;
using namespace ::gvshim::testing::event_types;  // NOLINT
using ::testing::ElementsAre;
using testing::ExitOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::kTimeout;
using testing::ServiceTest;

TEST_F(ServiceTest, ExecWithSpecThatIsNotJson) {
  ASSERT_TRUE(Create("c1", Bundle("b1")).ok());
  ASSERT_TRUE(Start("c1").ok());
  absl::Status st = Exec("c1", "e1", "args: [sh]");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(st.message(), HasSubstr("e1"));
  EXPECT_EQ(events_.Count(kExecAdded), 0u);
  EXPECT_EQ(State("c1", "e1").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ServiceTest, ExecLifecycle) {
  ASSERT_TRUE(Create("c1", Bundle("b1")).ok());
  ASSERT_TRUE(Start("c1").ok());
  const std::string out = dir_ + "/exec.out";
  tv2::ExecProcessRequest req;
  req.set_id("c1");
  req.set_exec_id("e1");
  req.set_stdout("file://" + out);
  req.mutable_spec()->set_value(R"({"args":["/bin/sh","-c","echo hi; exit 6"],"cwd":"/"})");
  ASSERT_TRUE(CallEmpty("Exec", req).ok());
  auto st = State("c1", "e1");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->status(), containerd::v1::types::CREATED);
  EXPECT_EQ(st->id(), "e1");
  EXPECT_EQ(st->exec_id(), "e1");
  EXPECT_EQ(st->stdout(), "file://" + out);

  auto pid = Start("c1", "e1");
  ASSERT_TRUE(pid.ok()) << pid.status();
  auto w = Wait("c1", "e1");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->exit_status(), 6u);
  EXPECT_EQ(ReadFile(out), "hi\n");
  EXPECT_EQ(State("c1", "e1")->status(), containerd::v1::types::STOPPED);

  auto del = Delete("c1", "e1");
  ASSERT_TRUE(del.ok()) << del.status();
  EXPECT_EQ(del->exit_status(), 6u);
  EXPECT_EQ(del->pid(), *pid);
  // An exec's delete publishes no TaskDelete and keeps the container.
  EXPECT_EQ(events_.Count(kTaskDelete), 0u);
  EXPECT_EQ(service_->ContainerCount(), 1u);
  EXPECT_THAT(events_.Types(), ElementsAre(kTaskCreate, kTaskStart, kExecAdded, kExecStarted, kTaskExit));
}

TEST_F(ServiceTest, CriContainerJoinsTheSandbox) {
  const std::string out = dir_ + "/c2.out";
  const std::string bundle = Bundle(
      "b2", {{"io.kubernetes.cri.container-type", "container"}, {"io.kubernetes.cri.sandbox-id", "sb1"}});
  tv2::CreateTaskRequest req = CreateReq("c2", bundle);
  req.set_stdout("file://" + out);
  ASSERT_TRUE(Call<tv2::CreateTaskResponse>("Create", req).ok());
  auto creates = fake_.CallsOf("Create");
  ASSERT_EQ(creates.size(), 1u);
  EXPECT_EQ(creates[0].stdio.out, -1);  // not the sandbox: no stdio at create

  ASSERT_TRUE(Start("c2").ok());
  auto starts = fake_.CallsOf("Start");
  ASSERT_EQ(starts.size(), 1u);
  EXPECT_GE(starts[0].stdio.out, 0);  // stdio at start
  ASSERT_TRUE(fake_.ExitInit("c2", 12).ok());
  auto w = Wait("c2");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->exit_status(), 12u);
  // The exit came from `runsc wait`.
  EXPECT_EQ(fake_.CallsOf("Wait").size(), 1u);
  EXPECT_EQ(ReadFile(out), "started c2\n");
}

TEST_F(ServiceTest, CriSandboxContainerOwnsTheSandbox) {
  const std::string out = dir_ + "/sb.out";
  const std::string bundle = Bundle("sb", {{"io.kubernetes.cri.container-type", "sandbox"}});
  tv2::CreateTaskRequest req = CreateReq("sb1", bundle);
  req.set_stdout("file://" + out);
  ASSERT_TRUE(Call<tv2::CreateTaskResponse>("Create", req).ok());
  EXPECT_GE(fake_.CallsOf("Create")[0].stdio.out, 0);
  ASSERT_TRUE(Start("sb1").ok());
  EXPECT_EQ(fake_.CallsOf("Start")[0].stdio.out, -1);
  ASSERT_TRUE(fake_.ExitInit("sb1", 0).ok());
  ASSERT_TRUE(Wait("sb1").ok());
  EXPECT_THAT(fake_.CallsOf("Wait"), IsEmpty());
}

TEST_F(ServiceTest, SeccompInSpecTurnsOnOciSeccomp) {
  ASSERT_TRUE(Create("c1", Bundle("b1", nlohmann::json::object(),
                                  {{"seccomp", {{"defaultAction", "SCMP_ACT_ERRNO"}}}}))
                  .ok());
  ASSERT_EQ(globals_.size(), 1u);
  EXPECT_TRUE(globals_[0].oci_seccomp);
}

TEST_F(ServiceTest, StatsAreCgroupV1Metrics) {
  ASSERT_TRUE(Create("c1", Bundle("b1")).ok());
  ASSERT_TRUE(Start("c1").ok());
  runsc::Stats s;
  s.cpu_total_ns = 1000;
  s.cpu_user_ns = 600;
  s.cpu_kernel_ns = 400;
  s.cpu_per_cpu_ns = {700, 300};
  s.memory_usage = 4096;
  s.memory_max = 8192;
  s.memory_limit = 1 << 20;
  s.memory_failcnt = 2;
  s.swap_usage = 11;
  s.swap_limit = 22;
  s.kernel_usage = 33;
  s.memory_cache = 44;
  s.memory_rss = 55;
  s.pids_current = 3;
  s.pids_limit = 100;
  fake_.SetStats(s);
  tv2::StatsRequest req;
  req.set_id("c1");
  auto r = Call<tv2::StatsResponse>("Stats", req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stats().type_url(), "io.containerd.cgroups.v1.Metrics");
  io::containerd::cgroups::v1::Metrics m;
  ASSERT_TRUE(m.ParseFromString(r->stats().value()));
  EXPECT_EQ(m.cpu().usage().total(), 1000u);
  EXPECT_EQ(m.cpu().usage().user(), 600u);
  EXPECT_EQ(m.cpu().usage().kernel(), 400u);
  EXPECT_THAT(m.cpu().usage().per_cpu(), ElementsAre(700u, 300u));
  EXPECT_EQ(m.memory().usage().usage(), 4096u);
  EXPECT_EQ(m.memory().usage().max(), 8192u);
  EXPECT_EQ(m.memory().usage().limit(), 1u << 20);
  EXPECT_EQ(m.memory().usage().failcnt(), 2u);
  EXPECT_EQ(m.memory().swap().usage(), 11u);
  EXPECT_EQ(m.memory().swap().limit(), 22u);
  EXPECT_EQ(m.memory().kernel().usage(), 33u);
  EXPECT_EQ(m.memory().cache(), 44u);
  EXPECT_EQ(m.memory().rss(), 55u);
  EXPECT_EQ(m.pids().current(), 3u);
  EXPECT_EQ(m.pids().limit(), 100u);

  fake_.SetError("GetStats", absl::UnknownError("runsc events c1: exit 1: boom"));
  EXPECT_EQ(Call<tv2::StatsResponse>("Stats", req).status().code(), absl::StatusCode::kUnknown);
}

TEST_F(ServiceTest, PauseResumeAndPids) {
  ASSERT_TRUE(Create("c1", Bundle("b1")).ok());
  ASSERT_TRUE(Start("c1").ok());
  tv2::PauseRequest pause;
  pause.set_id("c1");
  ASSERT_TRUE(CallEmpty("Pause", pause).ok());
  EXPECT_EQ(State("c1")->status(), containerd::v1::types::PAUSED);
  tv2::ResumeRequest resume;
  resume.set_id("c1");
  ASSERT_TRUE(CallEmpty("Resume", resume).ok());
  EXPECT_EQ(State("c1")->status(), containerd::v1::types::RUNNING);

  tv2::PidsRequest pids;
  pids.set_id("c1");
  auto r = Call<tv2::PidsResponse>("Pids", pids);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->processes_size(), 1);
  EXPECT_EQ(r->processes(0).pid(), 1u);
}

TEST_F(ServiceTest, ConnectReportsShimAndTaskPid) {
  ASSERT_TRUE(Create("c1", Bundle("b1")).ok());
  tv2::ConnectRequest req;
  req.set_id("c1");
  auto r = Call<tv2::ConnectResponse>("Connect", req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->shim_pid(), static_cast<uint32_t>(::getpid()));
  EXPECT_EQ(r->task_pid(), static_cast<uint32_t>(fake_.ContainerPid("c1")));
  EXPECT_EQ(r->version(), kVersion);
  req.set_id("nope");  // Connect does not fail for an unknown task
  r = Call<tv2::ConnectResponse>("Connect", req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->task_pid(), 0u);
}

// Deleting a task that was never started force-deletes its sandbox; whatever the shim does with the sandbox's
// exit, containerd must not get a TaskExit after the TaskDelete (containerd's runc shim drops that exit).
TEST_F(ServiceTest, DeleteOfCreatedTaskPublishesNoExitAfterDelete) {
  ASSERT_TRUE(Create("c1", Bundle("b1")).ok());
  auto del = Delete("c1");
  ASSERT_TRUE(del.ok()) << del.status();
  ASSERT_TRUE(fake_.WaitContainerExit("c1", kTimeout));
  // The container object is gone once Delete returned; anything it was going to publish has been published.
  auto del_index = events_.Find(kTaskDelete);
  ASSERT_TRUE(del_index.has_value());
  auto exit_index = events_.Find(kTaskExit);
  if (exit_index.has_value()) {
    EXPECT_LT(*exit_index, *del_index);
  }
}

TEST_F(ServiceTest, TwoContainersAreIndependent) {
  ASSERT_TRUE(Create("c1", Bundle("b1")).ok());
  ASSERT_TRUE(Create("c2", Bundle("b2", {{"io.kubernetes.cri.container-type", "container"}})).ok());
  ASSERT_TRUE(Start("c1").ok());
  ASSERT_TRUE(Start("c2").ok());
  ASSERT_TRUE(fake_.ExitInit("c2", 1).ok());
  EXPECT_EQ(Wait("c2")->exit_status(), 1u);
  EXPECT_EQ(State("c1")->status(), containerd::v1::types::RUNNING);
  ASSERT_TRUE(Delete("c2").ok());
  EXPECT_EQ(service_->ContainerCount(), 1u);
  ASSERT_TRUE(Shutdown().ok());
  EXPECT_EQ(shutdowns_.load(), 0);
}

}  // namespace
}  // namespace gvshim::task
