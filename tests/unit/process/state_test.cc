// The process state machines (CheckTransition, Lifecycle) and the OOM counter reader.
#include "shim/process/state.h"

#include <unistd.h>

#include <fstream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shim/process/container.h"

namespace gvshim::process {
namespace {

using ::testing::HasSubstr;

constexpr Status kAll[] = {Status::kCreated, Status::kRunning, Status::kPaused, Status::kStopped,
                           Status::kDeleted};

// The documented machines (containerd's task lifecycle). Init: created -> running | stopped (killed before
// start) | deleted (deleted before start); running <-> paused; running | paused -> stopped; stopped ->
// deleted. Exec: the same without paused.
const std::set<std::pair<Status, Status>>& LegalInit() {
  static const auto* legal = new std::set<std::pair<Status, Status>>{
      {Status::kCreated, Status::kRunning}, {Status::kCreated, Status::kStopped},
      {Status::kCreated, Status::kDeleted}, {Status::kRunning, Status::kPaused},
      {Status::kRunning, Status::kStopped}, {Status::kPaused, Status::kRunning},
      {Status::kPaused, Status::kStopped},  {Status::kStopped, Status::kDeleted},
  };
  return *legal;
}
const std::set<std::pair<Status, Status>>& LegalExec() {
  static const auto* legal = new std::set<std::pair<Status, Status>>{
      {Status::kCreated, Status::kRunning}, {Status::kCreated, Status::kStopped},
      {Status::kCreated, Status::kDeleted}, {Status::kRunning, Status::kStopped},
      {Status::kStopped, Status::kDeleted},
  };
  return *legal;
}

TEST(CheckTransitionTest, EveryPairOfBothKinds) {
  int checked = 0;
  for (Kind kind : {Kind::kInit, Kind::kExec}) {
    const auto& legal = kind == Kind::kInit ? LegalInit() : LegalExec();
    for (Status from : kAll) {
      for (Status to : kAll) {
        SCOPED_TRACE(absl::StrCat(KindName(kind), ": ", StatusName(from), " -> ", StatusName(to)));
        absl::Status st = CheckTransition(kind, from, to, "start c1");
        ++checked;
        EXPECT_EQ(IsLegal(kind, from, to), legal.count({from, to}) == 1);
        if (legal.count({from, to})) {
          EXPECT_TRUE(st.ok()) << st;
          continue;
        }
        EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
        // The message names the operation, the kind and both states.
        EXPECT_THAT(st.message(), HasSubstr("start c1"));
        EXPECT_THAT(st.message(), HasSubstr(absl::StrCat(KindName(kind), " process is ", StatusName(from))));
        EXPECT_THAT(st.message(), HasSubstr(absl::StrCat("become ", StatusName(to))));
      }
    }
  }
  EXPECT_EQ(checked, 50);
}

// Lifecycle::Transition is the only writer: it applies exactly the legal moves and leaves the state alone
// otherwise. Walks every path of length 3 from created through both tables.
TEST(LifecycleTest, TransitionWritesOnlyLegalMoves) {
  for (Kind kind : {Kind::kInit, Kind::kExec}) {
    for (Status a : kAll) {
      for (Status b : kAll) {
        for (Status c : kAll) {
          Lifecycle l(kind);
          EXPECT_EQ(l.kind(), kind);
          EXPECT_EQ(l.status(), Status::kCreated);
          for (Status to : {a, b, c}) {
            const Status before = l.status();
            absl::Status st = l.Transition(to, "t");
            EXPECT_EQ(st.ok(), IsLegal(kind, before, to));
            EXPECT_EQ(l.status(), st.ok() ? to : before);
            if (!st.ok()) {
              EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
            }
          }
        }
      }
    }
  }
}

TEST(LifecycleTest, AliveIsRunningOrPaused) {
  Lifecycle l(Kind::kInit);
  EXPECT_FALSE(l.Alive());
  ASSERT_TRUE(l.Transition(Status::kRunning, "t").ok());
  EXPECT_TRUE(l.Alive());
  ASSERT_TRUE(l.Transition(Status::kPaused, "t").ok());
  EXPECT_TRUE(l.Alive());
  ASSERT_TRUE(l.Transition(Status::kStopped, "t").ok());
  EXPECT_FALSE(l.Alive());
  EXPECT_TRUE(l.Is(Status::kStopped));
}

TEST(CheckTransitionTest, StatusNames) {
  EXPECT_STREQ(StatusName(Status::kCreated), "created");
  EXPECT_STREQ(StatusName(Status::kRunning), "running");
  EXPECT_STREQ(StatusName(Status::kPaused), "paused");
  EXPECT_STREQ(StatusName(Status::kStopped), "stopped");
  EXPECT_STREQ(StatusName(Status::kDeleted), "deleted");
}

class OomCountTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const std::string& p : written_) ::unlink(p.c_str());
  }
  std::string Write(const std::string& text) {
    std::string path = absl::StrCat(::testing::TempDir(), "/oom-", ::getpid(), "-", counter_++);
    std::ofstream(path, std::ios::trunc) << text;
    written_.push_back(path);
    return path;
  }
  int counter_ = 0;
  std::vector<std::string> written_;
};

TEST_F(OomCountTest, Table) {
  struct Case {
    const char* name;
    const char* text;
    uint64_t want;
  };
  const Case cases[] = {
      {"v1 memory.oom_control, no kill", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n", 0},
      {"v1 memory.oom_control, kills", "oom_kill_disable 0\nunder_oom 1\noom_kill 3\n", 3},
      {"v1 before 4.13 (no oom_kill line)", "oom_kill_disable 0\nunder_oom 0\n", 0},
      {"v2 memory.events, no kill", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n", 0},
      {"v2 memory.events, kill", "low 0\nhigh 12\nmax 40\noom 2\noom_kill 1\noom_group_kill 0\n", 1},
      {"v2 without trailing newline", "low 0\nhigh 0\nmax 1\noom 1\noom_kill 7", 7},
      {"big counter", "oom_kill 18446744073709551615\n", 18446744073709551615ull},
      {"oom_group_kill is not oom_kill", "oom_group_kill 5\n", 0},
      {"empty file", "", 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(ReadOomKillCount(Write(c.text)), c.want);
  }
}

TEST_F(OomCountTest, MissingFileIsZero) {
  EXPECT_EQ(ReadOomKillCount(::testing::TempDir() + "/does-not-exist/memory.events"), 0u);
  EXPECT_EQ(ReadOomKillCount(""), 0u);
}

}  // namespace
}  // namespace gvshim::process
