#include "shim/execute/common/interpreter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace gvshim::execute {
namespace {

namespace fs = std::filesystem;

class InterpreterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gvx-root-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { fs::remove_all(root_); }

  void File(const std::string& rel, mode_t mode) {
    fs::create_directories(fs::path(root_ + rel).parent_path());
    std::ofstream(root_ + rel) << "#!/bin/sh\n";
    ASSERT_EQ(::chmod((root_ + rel).c_str(), mode), 0);
  }
  void Link(const std::string& rel, const std::string& target) {
    fs::create_directories(fs::path(root_ + rel).parent_path());
    ASSERT_EQ(::symlink(target.c_str(), (root_ + rel).c_str()), 0) << rel;
  }

  std::string root_;
};

TEST_F(InterpreterTest, FindsRelativeSymlinkChain) {
  File("/usr/bin/python3.11", 0755);
  Link("/usr/bin/python3", "python3.11");
  auto i = FindInterpreter(root_, "python3");
  ASSERT_TRUE(i.has_value());
  EXPECT_EQ(i->path, "/usr/bin/python3");
  EXPECT_EQ(i->resolved, "/usr/bin/python3.11");
}

TEST_F(InterpreterTest, AbsoluteSymlinkStaysInsideTheRootfs) {
  File("/opt/node/bin/node", 0755);
  Link("/usr/local/bin/node", "/opt/node/bin/node");
  auto i = FindInterpreter(root_, "node");
  ASSERT_TRUE(i.has_value());
  EXPECT_EQ(i->path, "/usr/local/bin/node");
  EXPECT_EQ(i->resolved, "/opt/node/bin/node");
}

TEST_F(InterpreterTest, AbsoluteSymlinkToAHostOnlyFileIsNotFollowedOutOfTheRootfs) {
  // The host has /bin/sh; the rootfs does not. A link to it must resolve inside the rootfs, and fail there.
  ASSERT_EQ(::access("/bin/sh", X_OK), 0);
  Link("/usr/bin/python3", "/bin/sh");
  Link("/usr/local/bin/python3", "../../../../../../../../bin/sh");
  EXPECT_FALSE(FindInterpreter(root_, "python3").has_value());
  auto r = ResolveInRoot(root_, "/usr/bin/python3");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
}

TEST_F(InterpreterTest, MergedUsrDirectorySymlinkAndBinFallback) {
  File("/usr/bin/node", 0755);
  Link("/bin", "usr/bin");
  auto r = ResolveInRoot(root_, "/bin/node");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "/usr/bin/node");
  auto i = FindInterpreter(root_, "/bin/node");  // an absolute configured path
  ASSERT_TRUE(i.has_value());
  EXPECT_EQ(i->resolved, "/usr/bin/node");
}

TEST_F(InterpreterTest, SkipsNonExecutablesDirectoriesAndLoops) {
  File("/usr/bin/python3", 0644);
  fs::create_directories(root_ + "/usr/local/bin/python3");
  Link("/bin/python3", "python3b");
  Link("/bin/python3b", "python3");
  EXPECT_FALSE(FindInterpreter(root_, "python3").has_value());
  auto r = ResolveInRoot(root_, "/bin/python3");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  // Later directories are still searched.
  File("/usr/local/bin/node", 0700);
  EXPECT_TRUE(FindInterpreter(root_, "node").has_value());
  EXPECT_FALSE(FindInterpreter(root_, "no/such").has_value());
}

}  // namespace
}  // namespace gvshim::execute
