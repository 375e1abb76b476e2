// process::Container against FakeRunsc: real child processes stand in for the sandbox and the execs, so exits
// arrive through the test binary's reaper (handed to the Container) as they do in the shim.
#include "shim/process/container.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/fakes/fake_runsc.h"
#include "tests/unit/fakes/recording_publisher.h"

namespace gvshim::process {
namespace {

using ::gvshim::testing::FakeRunsc;
using ::gvshim::testing::ReadFile;
using ::gvshim::testing::RecordedEvent;
using ::gvshim::testing::RecordingPublisher;
using namespace ::gvshim::testing::event_types;  // NOLINT
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Generous: these only bound a wait for something that normally happens in milliseconds.
constexpr absl::Duration kTimeout = absl::Seconds(20);

std::string ProcessJson(const std::string& shell) {
  nlohmann::json j = {{"args", {"/bin/sh", "-c", shell}}, {"cwd", "/"}};
  return j.dump();
}

stdio::StdioConfig StdoutTo(const std::string& path) {
  stdio::StdioConfig c;
  c.stdout_path = path;
  return c;
}

uint32_t Status999(const absl::StatusOr<ExitInfo>& e) { return e.ok() ? e->status : 999; }

// Matches the TaskExit of one process (exec id, or the container id for the init).
RecordingPublisher::Match ExitOf(const std::string& id) {
  return [id](const RecordedEvent& e) { return e.As<containerd::events::TaskExit>().id() == id; };
}

class ContainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gvpt-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    bundle_ = tmpl;
  }
  void TearDown() override {
    // Let every child go (a joining container's destructor waits for its `runsc wait`), then drop the
    // container.
    fake_.KillAll();
    container_.reset();
    std::error_code ec;
    std::filesystem::remove_all(bundle_, ec);
  }

  ContainerOptions Options(const std::string& id = "c1") {
    ContainerOptions o;
    o.id = id;
    o.ns = "testns";
    o.bundle = bundle_;
    return o;
  }

  absl::Status Create(ContainerOptions o) {
    auto c = Container::Create({&fake_, &events_, &testing::TestReaper()}, std::move(o));
    if (!c.ok()) return c.status();
    container_ = std::move(*c);
    return absl::OkStatus();
  }
  void CreateAndStart(ContainerOptions o) {
    ASSERT_TRUE(Create(std::move(o)).ok());
    auto pid = container_->Start("");
    ASSERT_TRUE(pid.ok()) << pid.status();
  }

  // Waits for the TaskExit of `id` and returns its event index.
  size_t WaitExit(const std::string& id) {
    auto i = events_.WaitFor(kTaskExit, kTimeout, ExitOf(id));
    EXPECT_TRUE(i.has_value()) << "no TaskExit for " << id;
    return i.value_or(0);
  }
  containerd::events::TaskExit ExitEvent(const std::string& id) {
    auto i = events_.Find(kTaskExit, ExitOf(id));
    return i ? events_.Events()[*i].As<containerd::events::TaskExit>() : containerd::events::TaskExit();
  }
  Status StateOf(const std::string& exec_id) {
    auto st = container_->State(exec_id);
    EXPECT_TRUE(st.ok()) << st.status();
    return st.ok() ? st->status : Status::kDeleted;
  }

  std::string bundle_;
  FakeRunsc fake_;
  RecordingPublisher events_;
  std::unique_ptr<Container> container_;
};

TEST_F(ContainerTest, CreateReportsPidAndCreatedState) {
  ASSERT_TRUE(Create(Options()).ok());
  const pid_t pid = fake_.ContainerPid("c1");
  ASSERT_GT(pid, 0);
  EXPECT_EQ(container_->init_pid(), static_cast<uint32_t>(pid));
  auto st = container_->State("");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->status, Status::kCreated);
  EXPECT_EQ(st->pid, static_cast<uint32_t>(pid));
  EXPECT_EQ(container_->id(), "c1");
  EXPECT_EQ(container_->bundle(), bundle_);

  auto creates = fake_.CallsOf("Create");
  ASSERT_EQ(creates.size(), 1u);
  EXPECT_EQ(creates[0].id, "c1");
  EXPECT_EQ(creates[0].bundle, bundle_);
  EXPECT_THAT(creates[0].pid_file, HasSubstr(bundle_ + "/"));
  EXPECT_TRUE(creates[0].console_socket.empty());
  // TaskCreate belongs to the task layer: the container publishes nothing at create.
  EXPECT_THAT(events_.Types(), IsEmpty());
}

TEST_F(ContainerTest, StartPublishesTaskStartWithPid) {
  ASSERT_TRUE(Create(Options()).ok());
  auto pid = container_->Start("");
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_EQ(*pid, static_cast<uint32_t>(fake_.ContainerPid("c1")));
  EXPECT_EQ(StateOf(""), Status::kRunning);
  ASSERT_THAT(events_.Types(), ElementsAre(kTaskStart));
  auto ev = events_.Events()[0].As<containerd::events::TaskStart>();
  EXPECT_EQ(ev.container_id(), "c1");
  EXPECT_EQ(ev.pid(), *pid);
  // The sandbox's root container took its stdio at create; start passes none.
  auto starts = fake_.CallsOf("Start");
  ASSERT_EQ(starts.size(), 1u);
  EXPECT_EQ(starts[0].stdio.out, -1);
  // No `runsc wait` for the sandbox's own container: its exit comes from the sandbox pid.
  EXPECT_THAT(fake_.CallsOf("Wait"), IsEmpty());

  auto again = container_->Start("");
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition) << again.status();
}

TEST_F(ContainerTest, InitExitPublishesTaskExitAndStops) {
  CreateAndStart(Options());
  const uint32_t pid = container_->init_pid();
  const absl::Time before = absl::Now();
  ASSERT_TRUE(fake_.ExitInit("c1", 3).ok());
  const size_t exit_index = WaitExit("c1");
  auto exit = container_->Wait("");
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->status, 3u);
  EXPECT_GE(exit->at, before);

  auto ev = ExitEvent("c1");
  EXPECT_EQ(ev.container_id(), "c1");
  EXPECT_EQ(ev.id(), "c1");
  EXPECT_EQ(ev.pid(), pid);
  EXPECT_EQ(ev.exit_status(), 3u);
  EXPECT_GT(ev.exited_at().seconds(), 0);
  EXPECT_LT(*events_.Find(kTaskStart), exit_index);
  EXPECT_EQ(events_.Count(kTaskExit), 1u);
  EXPECT_EQ(StateOf(""), Status::kStopped);
  EXPECT_EQ(container_->State("")->exit.status, 3u);
}

TEST_F(ContainerTest, InitExitCodesArePassedThrough) {
  // exit 0 and a high code (a shell-style signal code from the sandbox).
  for (int code : {0, 255}) {
    SCOPED_TRACE(code);
    const std::string id = absl::StrCat("c-", code);
    CreateAndStart(Options(id));
    ASSERT_TRUE(fake_.ExitInit(id, code).ok());
    WaitExit(id);
    EXPECT_EQ(container_->Wait("")->status, static_cast<uint32_t>(code));
    ASSERT_TRUE(container_->Delete("").ok());
    container_.reset();
  }
}

TEST_F(ContainerTest, WaitReturnsForEveryWaiter) {
  CreateAndStart(Options());
  std::vector<std::thread> waiters;
  std::vector<uint32_t> got(3, 0);
  for (int i = 0; i < 3; ++i) {
    waiters.emplace_back([&, i] { got[i] = Status999(container_->Wait("")); });
  }
  ASSERT_TRUE(fake_.ExitInit("c1", 42).ok());
  for (auto& t : waiters) t.join();
  EXPECT_THAT(got, ElementsAre(42u, 42u, 42u));
}

TEST_F(ContainerTest, KillRunningInitGoesThroughRunscKill) {
  CreateAndStart(Options());
  ASSERT_TRUE(container_->Kill("", SIGKILL, /*all=*/false).ok());
  auto kills = fake_.CallsOf("Kill");
  ASSERT_EQ(kills.size(), 1u);
  EXPECT_EQ(kills[0].signal, SIGKILL);
  EXPECT_EQ(kills[0].pid, 0);
  EXPECT_FALSE(kills[0].all);
  WaitExit("c1");
  EXPECT_EQ(container_->Wait("")->status, 128u + SIGKILL);
  EXPECT_EQ(StateOf(""), Status::kStopped);
}

TEST_F(ContainerTest, KillAllIsPassedToRunsc) {
  CreateAndStart(Options());
  ASSERT_TRUE(container_->Kill("", SIGTERM, /*all=*/true).ok());
  auto kills = fake_.CallsOf("Kill");
  ASSERT_EQ(kills.size(), 1u);
  EXPECT_TRUE(kills[0].all);
  WaitExit("c1");
  EXPECT_EQ(container_->Wait("")->status, 128u + SIGTERM);
}

TEST_F(ContainerTest, KillCreatedInitForceDeletesAndReportsSignal) {
  ASSERT_TRUE(Create(Options()).ok());
  ASSERT_TRUE(container_->Kill("", SIGTERM, false).ok());
  // runsc refuses to kill a created container: the shim force-deletes it instead of calling kill.
  EXPECT_THAT(fake_.CallsOf("Kill"), IsEmpty());
  auto deletes = fake_.CallsOf("Delete");
  ASSERT_EQ(deletes.size(), 1u);
  EXPECT_EQ(deletes[0].id, "c1");
  EXPECT_TRUE(deletes[0].force);
  WaitExit("c1");
  // The sandbox died of SIGKILL (force delete); the reported status is that of the requested signal.
  EXPECT_EQ(container_->Wait("")->status, 128u + SIGTERM);
  EXPECT_EQ(ExitEvent("c1").exit_status(), 128u + SIGTERM);
  EXPECT_EQ(StateOf(""), Status::kStopped);
  EXPECT_EQ(events_.Count(kTaskStart), 0u);
}

TEST_F(ContainerTest, KillStoppedIsNotFound) {
  CreateAndStart(Options());
  ASSERT_TRUE(fake_.ExitInit("c1", 0).ok());
  WaitExit("c1");
  absl::Status st = container_->Kill("", SIGTERM, false);
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
  EXPECT_THAT(st.message(), HasSubstr("c1"));
  EXPECT_THAT(fake_.CallsOf("Kill"), IsEmpty());
}

// runsc kill fails when the sandbox is already on its way out ("connection refused"); the exit that arrives
// meanwhile makes it "already finished" (NOT_FOUND), which a `ctr task delete --force` goes on with.
TEST_F(ContainerTest, AKillThatFailsBecauseTheProcessEndedIsNotFound) {
  CreateAndStart(Options());
  fake_.SetError("Kill", absl::UnknownError("runsc kill c1: connecting to control server: connection refused"));
  std::thread exiter([&] {
    absl::SleepFor(absl::Milliseconds(100));
    ASSERT_TRUE(fake_.ExitInit("c1", 137).ok());
  });
  absl::Status st = container_->Kill("", SIGKILL, false);
  exiter.join();
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
  EXPECT_THAT(st.message(), HasSubstr("already finished"));
}

// A failed kill of a process that keeps running is still the error runsc gave.
TEST_F(ContainerTest, AKillThatFailsWhileTheProcessRunsIsTheError) {
  CreateAndStart(Options());
  fake_.SetError("Kill", absl::UnknownError("runsc kill c1: something else"));
  absl::Status st = container_->Kill("", SIGKILL, false);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnknown) << st;
  EXPECT_THAT(st.message(), HasSubstr("something else"));
}

TEST_F(ContainerTest, UnknownProcessIsNotFound) {
  ASSERT_TRUE(Create(Options()).ok());
  EXPECT_EQ(container_->Start("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(container_->Kill("nope", SIGKILL, false).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(container_->Delete("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(container_->Wait("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(container_->State("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(container_->CloseIO("nope").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(container_->ResizePty("nope", 80, 24).code(), absl::StatusCode::kNotFound);
}

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

TEST_F(ContainerTest, PauseAndResume) {
  ASSERT_TRUE(Create(Options()).ok());
  EXPECT_EQ(container_->Pause().code(), absl::StatusCode::kFailedPrecondition);  // created
  EXPECT_EQ(container_->Resume().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(container_->Start("").ok());

  ASSERT_TRUE(container_->Pause().ok());
  EXPECT_EQ(StateOf(""), Status::kPaused);
  EXPECT_EQ(container_->Pause().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(container_->Resume().ok());
  EXPECT_EQ(StateOf(""), Status::kRunning);
  EXPECT_EQ(container_->Resume().code(), absl::StatusCode::kFailedPrecondition);

  EXPECT_THAT(events_.Types(), ElementsAre(kTaskStart, kPaused, kResumed));
  EXPECT_EQ(events_.Events()[1].As<containerd::events::TaskPaused>().container_id(), "c1");
  EXPECT_EQ(events_.Events()[2].As<containerd::events::TaskResumed>().container_id(), "c1");
  EXPECT_EQ(fake_.CallsOf("Pause").size(), 1u);
  EXPECT_EQ(fake_.CallsOf("Resume").size(), 1u);
}

TEST_F(ContainerTest, PauseFailureKeepsStateAndPublishesNothing) {
  CreateAndStart(Options());
  fake_.SetError("Pause", absl::UnknownError("runsc pause c1: exit 1: nope"));
  EXPECT_EQ(container_->Pause().code(), absl::StatusCode::kUnknown);
  EXPECT_EQ(StateOf(""), Status::kRunning);
  fake_.SetError("Pause", absl::OkStatus());
  ASSERT_TRUE(container_->Pause().ok());
  fake_.SetError("Resume", absl::UnknownError("runsc resume c1: exit 1: nope"));
  EXPECT_EQ(container_->Resume().code(), absl::StatusCode::kUnknown);
  EXPECT_EQ(StateOf(""), Status::kPaused);
  EXPECT_EQ(events_.Count(kResumed), 0u);
  EXPECT_EQ(events_.Count(kPaused), 1u);
}

TEST_F(ContainerTest, PausedInitCanBeKilledAndExits) {
  CreateAndStart(Options());
  ASSERT_TRUE(container_->Pause().ok());
  ASSERT_TRUE(container_->Kill("", SIGKILL, false).ok());
  WaitExit("c1");
  EXPECT_EQ(StateOf(""), Status::kStopped);
}

TEST_F(ContainerTest, StartExecNeedsARunningInit) {
  CreateAndStart(Options());
  ASSERT_TRUE(container_->AddExec("e1", {}, ProcessJson("true")).ok());  // allowed while paused too
  ASSERT_TRUE(container_->Pause().ok());
  ASSERT_TRUE(container_->AddExec("e2", {}, ProcessJson("true")).ok());
  auto st = container_->Start("e1");
  EXPECT_EQ(st.status().code(), absl::StatusCode::kFailedPrecondition) << st.status();
  EXPECT_THAT(st.status().message(), HasSubstr("not running"));
  ASSERT_TRUE(container_->Resume().ok());

  ASSERT_TRUE(fake_.ExitInit("c1", 0).ok());
  WaitExit("c1");
  EXPECT_EQ(container_->Start("e1").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(fake_.CallsOf("StartExec"), IsEmpty());
  EXPECT_EQ(events_.Count(kExecStarted), 0u);
}

TEST_F(ContainerTest, RunscCreateFailureLeavesNothingBehind) {
  fake_.SetError("Create", absl::UnknownError("runsc create c1: exit 1: cannot create sandbox"));
  absl::Status st = Create(Options());
  EXPECT_EQ(st.code(), absl::StatusCode::kUnknown);
  EXPECT_THAT(st.message(), HasSubstr("cannot create sandbox"));
  EXPECT_EQ(container_, nullptr);
  auto deletes = fake_.CallsOf("Delete");
  ASSERT_EQ(deletes.size(), 1u);
  EXPECT_EQ(deletes[0].id, "c1");
  EXPECT_TRUE(deletes[0].force);
  EXPECT_THAT(events_.Types(), IsEmpty());
}

TEST_F(ContainerTest, BadStdioFailsCreateBeforeRunsc) {
  ContainerOptions o = Options();
  o.stdio.stdout_path = "ftp://example/x";
  EXPECT_FALSE(Create(std::move(o)).ok());
  EXPECT_THAT(fake_.Calls(), IsEmpty());
}

TEST_F(ContainerTest, StartFailureKeepsCreated) {
  ASSERT_TRUE(Create(Options()).ok());
  fake_.SetError("Start", absl::UnknownError("runsc start c1: exit 1: no"));
  EXPECT_EQ(container_->Start("").status().code(), absl::StatusCode::kUnknown);
  EXPECT_EQ(StateOf(""), Status::kCreated);
  EXPECT_EQ(events_.Count(kTaskStart), 0u);
}

TEST_F(ContainerTest, SandboxContainerTakesStdioAtCreateAndOutputIsDrainedBeforeExit) {
  ContainerOptions o = Options();
  o.stdio.stdout_path = "file://" + bundle_ + "/out.log";
  ASSERT_TRUE(Create(std::move(o)).ok());
  auto creates = fake_.CallsOf("Create");
  ASSERT_EQ(creates.size(), 1u);
  EXPECT_GE(creates[0].stdio.out, 0);
  ASSERT_TRUE(container_->Start("").ok());
  EXPECT_EQ(fake_.CallsOf("Start")[0].stdio.out, -1);
  ASSERT_TRUE(fake_.ExitInit("c1", 4).ok());
  WaitExit("c1");
  // The fake's container process printed "exit 4" just before exiting; it is in the file by the time the
  // exit is published.
  EXPECT_EQ(ReadFile(bundle_ + "/out.log"), "exit 4\n");
}

TEST_F(ContainerTest, JoiningContainerTakesStdioAtStartAndUsesRunscWait) {
  ContainerOptions o = Options("c2");
  o.creates_sandbox = false;
  o.stdio.stdout_path = "file://" + bundle_ + "/out.log";
  ASSERT_TRUE(Create(std::move(o)).ok());
  auto creates = fake_.CallsOf("Create");
  ASSERT_EQ(creates.size(), 1u);
  EXPECT_EQ(creates[0].stdio.out, -1);
  auto pid = container_->Start("");
  ASSERT_TRUE(pid.ok()) << pid.status();
  auto starts = fake_.CallsOf("Start");
  ASSERT_EQ(starts.size(), 1u);
  EXPECT_GE(starts[0].stdio.out, 0);
  ASSERT_TRUE(fake_.ExitInit("c2", 5).ok());
  WaitExit("c2");
  EXPECT_EQ(container_->Wait("")->status, 5u);
  EXPECT_EQ(fake_.CallsOf("Wait").size(), 1u);
  EXPECT_EQ(ReadFile(bundle_ + "/out.log"), "started c2\n");
}

TEST_F(ContainerTest, KillCreatedJoiningContainerReportsSignal) {
  ContainerOptions o = Options("c2");
  o.creates_sandbox = false;
  ASSERT_TRUE(Create(std::move(o)).ok());
  ASSERT_TRUE(container_->Kill("", SIGINT, false).ok());
  ASSERT_EQ(fake_.CallsOf("Delete").size(), 1u);
  WaitExit("c2");
  EXPECT_EQ(container_->Wait("")->status, 128u + SIGINT);
}

TEST_F(ContainerTest, OomKillIsPublishedBeforeTheInitExit) {
  ContainerOptions o = Options();
  o.oom_counter_file = bundle_ + "/memory.events";
  std::ofstream(o.oom_counter_file) << "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n";
  CreateAndStart(std::move(o));
  ASSERT_TRUE(fake_.ExitInit("c1", 137).ok());
  const size_t exit_index = WaitExit("c1");
  auto oom = events_.Find(kTaskOOM);
  ASSERT_TRUE(oom.has_value());
  EXPECT_LT(*oom, exit_index);
  EXPECT_EQ(events_.Events()[*oom].As<containerd::events::TaskOOM>().container_id(), "c1");
}

TEST_F(ContainerTest, NoOomEventWithoutOomKill) {
  ContainerOptions o = Options();
  o.oom_counter_file = bundle_ + "/memory.events";
  std::ofstream(o.oom_counter_file) << "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n";
  CreateAndStart(std::move(o));
  ASSERT_TRUE(fake_.ExitInit("c1", 0).ok());
  WaitExit("c1");
  EXPECT_EQ(events_.Count(kTaskOOM), 0u);
}

TEST_F(ContainerTest, ExecOutputGoesToItsStdout) {
  CreateAndStart(Options());
  const std::string out = bundle_ + "/exec.log";
  ASSERT_TRUE(container_->AddExec("e1", StdoutTo("file://" + out), ProcessJson("echo hello; exit 2")).ok());
  ASSERT_TRUE(container_->Start("e1").ok());
  WaitExit("e1");
  EXPECT_EQ(ReadFile(out), "hello\n");
  EXPECT_EQ(container_->Wait("e1")->status, 2u);
}

TEST_F(ContainerTest, PidsAndStatsComeFromRunsc) {
  CreateAndStart(Options());
  runsc::Stats s;
  s.cpu_total_ns = 123;
  s.pids_current = 4;
  fake_.SetStats(s);
  auto stats = container_->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->cpu_total_ns, 123u);
  EXPECT_EQ(stats->pids_current, 4u);
  auto pids = container_->Pids();
  ASSERT_TRUE(pids.ok()) << pids.status();
  ASSERT_EQ(pids->size(), 1u);
  EXPECT_EQ((*pids)[0].pid, 1);
}

TEST_F(ContainerTest, ManyShortExecsEachPublishOneExitAfterTheirStart) {
  CreateAndStart(Options());
  constexpr int kExecs = 20;
  for (int i = 0; i < kExecs; ++i) {
    const std::string id = absl::StrCat("e", i);
    ASSERT_TRUE(container_->AddExec(id, {}, ProcessJson(absl::StrCat("exit ", i))).ok());
    ASSERT_TRUE(container_->Start(id).ok());
  }
  for (int i = 0; i < kExecs; ++i) {
    const std::string id = absl::StrCat("e", i);
    const size_t exit_index = WaitExit(id);
    auto started = events_.Find(kExecStarted, [&](const RecordedEvent& e) {
      return e.As<containerd::events::TaskExecStarted>().exec_id() == id;
    });
    ASSERT_TRUE(started.has_value()) << id;
    EXPECT_LT(*started, exit_index) << id;
    EXPECT_EQ(ExitEvent(id).exit_status(), static_cast<uint32_t>(i));
  }
  EXPECT_EQ(events_.Count(kTaskExit), static_cast<size_t>(kExecs));
}

// Deleting a never-started init force-deletes the sandbox; the sandbox's death is reported afterwards by the
// reaper. A deleted process must stay deleted (deleted -> stopped is not a legal transition): the exit is
// recorded (Wait returns it) but no TaskExit is published after the delete.
TEST_F(ContainerTest, DeletedInitStaysDeletedWhenTheSandboxExitArrives) {
  ASSERT_TRUE(Create(Options()).ok());
  auto del = container_->Delete("");
  ASSERT_TRUE(del.ok()) << del.status();
  EXPECT_EQ(del->status, Status::kCreated);
  // Wait returns once the sandbox's exit has been processed.
  auto exit = container_->Wait("");
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->status, 128u + SIGKILL);
  EXPECT_EQ(StateOf(""), Status::kDeleted);
  EXPECT_EQ(events_.Count(kTaskExit), 0u);
  // And a second delete is an illegal transition.
  EXPECT_EQ(container_->Delete("").status().code(), absl::StatusCode::kFailedPrecondition);
}

// A joining container deleted before it started has no `runsc wait` and no sandbox pid of its own: Wait must
// still return.
TEST_F(ContainerTest, WaitOnAJoiningContainerDeletedBeforeStartReturns) {
  ContainerOptions o = Options("c2");
  o.creates_sandbox = false;
  ASSERT_TRUE(Create(std::move(o)).ok());
  ASSERT_TRUE(container_->Delete("").ok());
  auto exit = container_->Wait("");
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(StateOf(""), Status::kDeleted);
  EXPECT_EQ(events_.Count(kTaskExit), 0u);
}

// containerd calls Wait on an exec before it starts it, and deletes the exec if the start fails. The waiter
// must neither hang nor read a freed process record: it gets NOT_FOUND once the exec is deleted.
TEST_F(ContainerTest, WaitOnAnExecDeletedBeforeItRanReturnsNotFound) {
  CreateAndStart(Options());
  ASSERT_TRUE(container_->AddExec("e1", {}, ProcessJson("true")).ok());
  auto result = std::make_shared<absl::StatusOr<ExitInfo>>(absl::UnknownError("not returned"));
  auto returned = std::make_shared<absl::Notification>();
  Container* c = container_.get();
  std::thread waiter([c, result, returned] {
    *result = c->Wait("e1");
    returned->Notify();
  });
  // The waiter is blocked (nothing can end an exec that never started) when the delete comes.
  EXPECT_FALSE(returned->WaitForNotificationWithTimeout(absl::Milliseconds(100)));
  ASSERT_TRUE(container_->Delete("e1").ok());
  if (!returned->WaitForNotificationWithTimeout(kTimeout)) {
    waiter.detach();  // it would never return; fail without hanging the test binary
    FAIL() << "Wait on a deleted exec did not return";
  }
  waiter.join();
  EXPECT_EQ(result->status().code(), absl::StatusCode::kNotFound) << result->status();
  EXPECT_THAT(result->status().message(), HasSubstr("deleted before it ran"));
}

// Two Exec requests with one exec id at the same time: exactly one is registered, the other is
// ALREADY_EXISTS, and the registered process is not replaced. The first AddExec is held inside its stdio
// setup (a logging binary that signals readiness only when the test says so) while the second one runs from
// start to end.
TEST_F(ContainerTest, ConcurrentAddExecOfOneIdRegistersOne) {
  CreateAndStart(Options());
  const std::string gate = bundle_ + "/gate";
  ASSERT_EQ(::mkfifo(gate.c_str(), 0600), 0);
  const std::string logger = bundle_ + "/logger.sh";
  {
    std::ofstream out(logger);
    out << "#!/bin/sh\nread go < " << gate << "\nexec 5>&-\nexec cat <&3 >/dev/null\n";
  }
  ASSERT_EQ(::chmod(logger.c_str(), 0755), 0);
  stdio::StdioConfig slow = StdoutTo("binary://" + logger);

  absl::Status first = absl::UnknownError("not returned");
  std::thread t([&] { first = container_->AddExec("e1", slow, ProcessJson("exit 1")); });
  // Wait until the logger of the first AddExec runs (it opens the gate fifo for reading), then let the second
  // AddExec through completely.
  sys::UniqueFd gate_w(::open(gate.c_str(), O_WRONLY | O_CLOEXEC));  // blocks until the logger opened it
  ASSERT_TRUE(gate_w.valid());
  absl::Status second = container_->AddExec("e1", {}, ProcessJson("exit 2"));
  ASSERT_TRUE(sys::WriteAll(gate_w.get(), "go\n", 3).ok());
  t.join();

  EXPECT_NE(first.ok(), second.ok()) << "first: " << first << "; second: " << second;
  absl::Status loser = first.ok() ? second : first;
  EXPECT_EQ(loser.code(), absl::StatusCode::kAlreadyExists) << loser;
  EXPECT_EQ(events_.Count(kExecAdded), 1u);
  EXPECT_THAT(container_->ExecIds(), ElementsAre("e1"));
  // The registered exec is the one that was accepted: it runs its own process spec.
  ASSERT_TRUE(container_->Start("e1").ok());
  WaitExit("e1");
  EXPECT_EQ(container_->Wait("e1")->status, first.ok() ? 1u : 2u);
}

// The exec's process JSON can carry secrets in its environment: owner-only on disk.
TEST_F(ContainerTest, ExecProcessSpecIsOwnerOnly) {
  CreateAndStart(Options());
  const mode_t old = ::umask(0);  // the mode must not depend on the caller's umask
  absl::Status added = container_->AddExec("e1", {}, ProcessJson("true"));
  ::umask(old);
  ASSERT_TRUE(added.ok()) << added;
  ASSERT_TRUE(container_->Start("e1").ok());
  auto execs = fake_.CallsOf("StartExec");
  ASSERT_EQ(execs.size(), 1u);
  struct stat st;
  ASSERT_EQ(::stat(execs[0].process_json.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

// Delete is serialised with Start: an exec whose start is under way is not deleted under it (the start would
// then use a freed record); once started, it is running and the delete is refused.
TEST_F(ContainerTest, DeleteWaitsForAStartInProgress) {
  CreateAndStart(Options());
  ASSERT_TRUE(container_->AddExec("e1", {}, ProcessJson("exec sleep 1000")).ok());
  fake_.Block("StartExec");
  absl::StatusOr<uint32_t> started = absl::UnknownError("not returned");
  std::thread starter([&] { started = container_->Start("e1"); });
  ASSERT_TRUE(fake_.WaitBlocked("StartExec", 1, kTimeout));
  absl::StatusOr<ProcessState> deleted = absl::UnknownError("not returned");
  absl::Notification delete_returned;
  std::thread deleter([&] {
    deleted = container_->Delete("e1");
    delete_returned.Notify();
  });
  // The delete waits while runsc exec is under way...
  EXPECT_FALSE(delete_returned.WaitForNotificationWithTimeout(absl::Milliseconds(200)));
  fake_.Unblock("StartExec");
  starter.join();
  deleter.join();
  ASSERT_TRUE(started.ok()) << started.status();
  // ...and then finds a running exec.
  EXPECT_EQ(deleted.status().code(), absl::StatusCode::kFailedPrecondition) << deleted.status();
  EXPECT_EQ(StateOf("e1"), Status::kRunning);
  ASSERT_TRUE(container_->Kill("e1", SIGKILL, false).ok());
  WaitExit("e1");
  EXPECT_TRUE(container_->Delete("e1").ok());
}

// Illegal transitions through the container's API are FAILED_PRECONDITION with the state named.
TEST_F(ContainerTest, IllegalTransitionsAreFailedPrecondition) {
  ASSERT_TRUE(Create(Options()).ok());
  auto resume = container_->Resume();
  EXPECT_EQ(resume.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(resume.message(), HasSubstr("created"));
  ASSERT_TRUE(container_->Start("").ok());
  ASSERT_TRUE(container_->AddExec("e1", {}, ProcessJson("exit 0")).ok());
  ASSERT_TRUE(container_->Start("e1").ok());
  WaitExit("e1");
  // stopped -> running
  auto again = container_->Start("e1");
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition) << again.status();
  EXPECT_THAT(again.status().message(), HasSubstr("exec process is stopped"));
  ASSERT_TRUE(container_->Delete("e1").ok());
  ASSERT_TRUE(fake_.ExitInit("c1", 0).ok());
  WaitExit("c1");
  EXPECT_EQ(container_->Pause().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(container_->Resume().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(container_->Start("").status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(container_->Delete("").ok());
  auto twice = container_->Delete("");
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(twice.status().message(), HasSubstr("init process is deleted"));
}

}  // namespace
}  // namespace gvshim::process
