// The helpers directory lookup and the execute container's id (common/helpers.h).
#include "shim/execute/common/helpers.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace gvshim::execute {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

TEST(HelpersTest, ConfiguredDirMustHoldBothHelpers) {
  char tmpl[] = "/tmp/gvhl-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  auto missing = FindHelpersDir(dir);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(missing.status().message(), HasSubstr(kLauncherName));
  EXPECT_THAT(missing.status().message(), HasSubstr("helpers_dir"));
  std::ofstream(dir + "/" + kLauncherName) << "";
  EXPECT_THAT(FindHelpersDir(dir).status().message(), HasSubstr(kPyIsolateName));
  std::ofstream(dir + "/" + kPyIsolateName) << "";
  auto found = FindHelpersDir(dir);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(*found, dir);
  fs::remove_all(dir);
}

TEST(HelpersTest, TheBuildsHelpersAreThere) { EXPECT_TRUE(CheckHelpersDir(GVSHIM_TEST_HELPERS_DIR).ok()); }

TEST(HelpersTest, ExecContainerIdCannotBeAContainerdId) {
  EXPECT_EQ(ExecContainerId("web"), "web/execute");
  EXPECT_NE(ExecContainerId("web"), ExecContainerId("web2"));
}

}  // namespace
}  // namespace gvshim::execute
