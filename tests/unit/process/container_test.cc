// process::Container: the init's lifecycle (create, start, exit, kill, wait), pause, failures, stdio, OOM
// and stats.
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
  fake_.SetError("Kill",
                 absl::UnknownError("runsc kill c1: connecting to control server: connection refused"));
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

}  // namespace
}  // namespace gvshim::process
