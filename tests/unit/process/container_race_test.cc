// process::Container: races between exits, waits, deletes and starts, and the state machine's refusals.
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
