// The process state machine (CheckTransition) and the OOM counter reader.
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

// The documented machine (containerd's task lifecycle): created -> running | stopped (killed before start) |
// deleted (deleted before start); running <-> paused; running | paused -> stopped; stopped -> deleted.
const std::set<std::pair<Status, Status>>& Legal() {
  static const auto* legal = new std::set<std::pair<Status, Status>>{
      {Status::kCreated, Status::kRunning}, {Status::kCreated, Status::kStopped},
      {Status::kCreated, Status::kDeleted}, {Status::kRunning, Status::kPaused},
      {Status::kRunning, Status::kStopped}, {Status::kPaused, Status::kRunning},
      {Status::kPaused, Status::kStopped},  {Status::kStopped, Status::kDeleted},
  };
  return *legal;
}

TEST(CheckTransitionTest, EveryPair) {
  int checked = 0;
  for (Status from : kAll) {
    for (Status to : kAll) {
      SCOPED_TRACE(absl::StrCat(StatusName(from), " -> ", StatusName(to)));
      absl::Status st = CheckTransition(from, to, "start c1");
      ++checked;
      if (Legal().count({from, to})) {
        EXPECT_TRUE(st.ok()) << st;
        continue;
      }
      EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
      // The message names the operation and both states.
      EXPECT_THAT(st.message(), HasSubstr("start c1"));
      EXPECT_THAT(st.message(), HasSubstr(absl::StrCat("is ", StatusName(from))));
      EXPECT_THAT(st.message(), HasSubstr(absl::StrCat("become ", StatusName(to))));
    }
  }
  EXPECT_EQ(checked, 25);
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
