// process::Container: execs (add, start, kill, exit order) and deletes.
#include "tests/unit/process/container_test_fixture.h"

namespace gvshim::process {
namespace {

using ::gvshim::testing::ReadFile;
using ::gvshim::testing::RecordedEvent;
using testing::ContainerTest;
using ::testing::ElementsAre;
using testing::ExitOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::kTimeout;
using testing::ProcessJson;
using testing::Status999;
using testing::StdoutTo;
using namespace ::gvshim::testing::event_types;  // NOLINT

TEST_F(ContainerTest, ExecLifecycle) {
  CreateAndStart(Options());
  ASSERT_TRUE(container_->AddExec("e1", {}, ProcessJson("exit 7")).ok());
  ASSERT_EQ(events_.Count(kExecAdded), 1u);
  auto added = events_.Events()[*events_.Find(kExecAdded)].As<containerd::events::TaskExecAdded>();
  EXPECT_EQ(added.container_id(), "c1");
  EXPECT_EQ(added.exec_id(), "e1");
  EXPECT_EQ(StateOf("e1"), Status::kCreated);
  EXPECT_THAT(container_->ExecIds(), ElementsAre("e1"));

  auto pid = container_->Start("e1");
  ASSERT_TRUE(pid.ok()) << pid.status();
  const size_t exit_index = WaitExit("e1");
  auto started_index = events_.Find(kExecStarted);
  ASSERT_TRUE(started_index.has_value());
  auto started = events_.Events()[*started_index].As<containerd::events::TaskExecStarted>();
  EXPECT_EQ(started.container_id(), "c1");
  EXPECT_EQ(started.exec_id(), "e1");
  EXPECT_EQ(started.pid(), *pid);
  EXPECT_LT(*events_.Find(kExecAdded), *started_index);
  EXPECT_LT(*started_index, exit_index);

  auto ev = ExitEvent("e1");
  EXPECT_EQ(ev.container_id(), "c1");
  EXPECT_EQ(ev.id(), "e1");
  EXPECT_EQ(ev.pid(), *pid);
  EXPECT_EQ(ev.exit_status(), 7u);
  EXPECT_EQ(container_->Wait("e1")->status, 7u);
  EXPECT_EQ(StateOf("e1"), Status::kStopped);
  // The init is unaffected.
  EXPECT_EQ(StateOf(""), Status::kRunning);

  // The exec's process JSON reached runsc; Delete removes it with the exec.
  auto execs = fake_.CallsOf("StartExec");
  ASSERT_EQ(execs.size(), 1u);
  const std::string json_path = execs[0].process_json;
  EXPECT_EQ(nlohmann::json::parse(ReadFile(json_path))["args"][2], "exit 7");
  auto del = container_->Delete("e1");
  ASSERT_TRUE(del.ok()) << del.status();
  EXPECT_EQ(del->exit.status, 7u);
  EXPECT_EQ(del->pid, *pid);
  EXPECT_NE(::access(json_path.c_str(), F_OK), 0);
  EXPECT_THAT(container_->ExecIds(), IsEmpty());
  EXPECT_EQ(container_->State("e1").status().code(), absl::StatusCode::kNotFound);
  // Deleting an exec does not touch runsc's container.
  EXPECT_THAT(fake_.CallsOf("Delete"), IsEmpty());
}

TEST_F(ContainerTest, ExecAddRules) {
  ASSERT_TRUE(Create(Options()).ok());
  // Not before the init runs.
  EXPECT_EQ(container_->AddExec("e1", {}, ProcessJson("true")).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(container_->Start("").ok());
  EXPECT_EQ(container_->AddExec("", {}, ProcessJson("true")).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(container_->AddExec("e1", {}, ProcessJson("true")).ok());
  EXPECT_EQ(container_->AddExec("e1", {}, ProcessJson("true")).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(events_.Count(kExecAdded), 1u);
  // A stdio string that cannot be used fails AddExec and registers nothing.
  EXPECT_FALSE(container_->AddExec("e2", StdoutTo("relative/path"), ProcessJson("true")).ok());
  EXPECT_THAT(container_->ExecIds(), ElementsAre("e1"));
  // An exec that was never started cannot be signalled.
  EXPECT_EQ(container_->Kill("e1", SIGKILL, false).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(ContainerTest, KillRunningExecSignalsItsPid) {
  CreateAndStart(Options());
  ASSERT_TRUE(container_->AddExec("e1", {}, ProcessJson("exec sleep 1000")).ok());
  auto pid = container_->Start("e1");
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_TRUE(container_->Kill("e1", SIGTERM, false).ok());
  auto kills = fake_.CallsOf("Kill");
  ASSERT_EQ(kills.size(), 1u);
  EXPECT_EQ(kills[0].pid, static_cast<int>(*pid));  // from the internal pid file
  EXPECT_EQ(kills[0].signal, SIGTERM);
  WaitExit("e1");
  EXPECT_EQ(container_->Wait("e1")->status, 128u + SIGTERM);
  EXPECT_EQ(StateOf(""), Status::kRunning);
}

TEST_F(ContainerTest, ExecExitsArePublishedBeforeTheInitExit) {
  CreateAndStart(Options());
  for (const char* e : {"e1", "e2"}) {
    ASSERT_TRUE(container_->AddExec(e, {}, ProcessJson("exec sleep 1000")).ok());
    ASSERT_TRUE(container_->Start(e).ok());
  }
  // The whole sandbox dies: the fake kills the container process and its execs.
  ASSERT_TRUE(container_->Kill("", SIGKILL, false).ok());
  const size_t init_exit = WaitExit("c1");
  auto e1 = events_.Find(kTaskExit, ExitOf("e1"));
  auto e2 = events_.Find(kTaskExit, ExitOf("e2"));
  ASSERT_TRUE(e1.has_value());
  ASSERT_TRUE(e2.has_value());
  EXPECT_LT(*e1, init_exit);
  EXPECT_LT(*e2, init_exit);
}

TEST_F(ContainerTest, InitExitWaitsForAnExecThatDiesLater) {
  CreateAndStart(Options());
  ASSERT_TRUE(container_->AddExec("e1", {}, ProcessJson("exec sleep 1000")).ok());
  ASSERT_TRUE(container_->Start("e1").ok());
  // The init dies first (SIGTERM does not take the execs with it in the fake); the exec is killed afterwards.
  ASSERT_TRUE(container_->Kill("", SIGTERM, false).ok());
  ASSERT_TRUE(fake_.WaitContainerExit("c1", kTimeout));
  ASSERT_TRUE(container_->Kill("e1", SIGKILL, false).ok());
  const size_t init_exit = WaitExit("c1");
  const size_t exec_exit = WaitExit("e1");
  EXPECT_LT(exec_exit, init_exit);
  EXPECT_EQ(ExitEvent("c1").exit_status(), 128u + SIGTERM);
  EXPECT_EQ(ExitEvent("e1").exit_status(), 128u + SIGKILL);
}

TEST_F(ContainerTest, DeleteRunningProcessIsFailedPrecondition) {
  CreateAndStart(Options());
  auto st = container_->Delete("");
  EXPECT_EQ(st.status().code(), absl::StatusCode::kFailedPrecondition) << st.status();
  EXPECT_THAT(st.status().message(), HasSubstr("running"));
  ASSERT_TRUE(container_->AddExec("e1", {}, ProcessJson("exec sleep 1000")).ok());
  ASSERT_TRUE(container_->Start("e1").ok());
  EXPECT_EQ(container_->Delete("e1").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(fake_.CallsOf("Delete"), IsEmpty());
  // Paused counts as running.
  ASSERT_TRUE(container_->Pause().ok());
  EXPECT_EQ(container_->Delete("").status().code(), absl::StatusCode::kFailedPrecondition);
}

// The init's exit waits (bounded, 3 s) for running execs; this test takes that long.
TEST_F(ContainerTest, DeleteInitWhileAnExecRunsIsFailedPrecondition) {
  CreateAndStart(Options());
  ASSERT_TRUE(container_->AddExec("e1", {}, ProcessJson("exec sleep 1000")).ok());
  ASSERT_TRUE(container_->Start("e1").ok());
  ASSERT_TRUE(fake_.ExitInit("c1", 0).ok());  // the exec keeps running
  WaitExit("c1");
  EXPECT_EQ(StateOf(""), Status::kStopped);
  auto st = container_->Delete("");
  EXPECT_EQ(st.status().code(), absl::StatusCode::kFailedPrecondition) << st.status();
  EXPECT_THAT(st.status().message(), HasSubstr("e1"));
  EXPECT_THAT(fake_.CallsOf("Delete"), IsEmpty());

  ASSERT_TRUE(container_->Kill("e1", SIGKILL, false).ok());
  WaitExit("e1");
  ASSERT_TRUE(container_->Delete("e1").ok());
  auto del = container_->Delete("");
  ASSERT_TRUE(del.ok()) << del.status();
  EXPECT_EQ(del->status, Status::kStopped);
  auto deletes = fake_.CallsOf("Delete");
  ASSERT_EQ(deletes.size(), 1u);
  EXPECT_TRUE(deletes[0].force);
}

TEST_F(ContainerTest, DeleteStoppedInit) {
  CreateAndStart(Options());
  ASSERT_TRUE(fake_.ExitInit("c1", 9).ok());
  WaitExit("c1");
  auto del = container_->Delete("");
  ASSERT_TRUE(del.ok()) << del.status();
  EXPECT_EQ(del->exit.status, 9u);
  EXPECT_EQ(del->pid, container_->init_pid());
  ASSERT_EQ(fake_.CallsOf("Delete").size(), 1u);
  // The record stays (as deleted) until the container object goes away; a second delete finds nothing to do.
  EXPECT_EQ(StateOf(""), Status::kDeleted);
}

TEST_F(ContainerTest, DeleteTreatsRunscNotFoundAsDone) {
  CreateAndStart(Options());
  ASSERT_TRUE(fake_.ExitInit("c1", 0).ok());
  WaitExit("c1");
  fake_.SetError("Delete", absl::NotFoundError("runsc delete c1: container does not exist"));
  EXPECT_TRUE(container_->Delete("").ok());
}

TEST_F(ContainerTest, DeleteReportsOtherRunscErrors) {
  CreateAndStart(Options());
  ASSERT_TRUE(fake_.ExitInit("c1", 0).ok());
  WaitExit("c1");
  fake_.SetError("Delete", absl::UnknownError("runsc delete c1: exit 1: boom"));
  auto del = container_->Delete("");
  EXPECT_EQ(del.status().code(), absl::StatusCode::kUnknown);
  EXPECT_THAT(del.status().message(), HasSubstr("boom"));
  EXPECT_EQ(StateOf(""), Status::kStopped);  // still there, can be retried
  fake_.SetError("Delete", absl::OkStatus());
  EXPECT_TRUE(container_->Delete("").ok());
}

}  // namespace
}  // namespace gvshim::process
