// The execute container's spec (a pure function) and its creation/deletion through a fake runsc.
#include "shim/execute/supervisor/exec_container.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "shim/execute/common/helpers.h"
#include "tests/unit/fakes/fake_runsc.h"
#include "tests/unit/fakes/test_util.h"

namespace gvshim::execute {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

ExecContainerParams Params() {
  ExecContainerParams p;
  p.rootfs = "/b/rootfs";
  p.sandbox_runsc_id = "gvsandbox";
  p.helpers_dir = "/usr/lib/gvshim";
  p.tmpfs_bytes = 1 << 24;
  return p;
}

const nlohmann::json* MountAt(const nlohmann::json& spec, const std::string& dest) {
  for (const auto& m : spec["mounts"]) {
    if (m["destination"] == dest) return &m;
  }
  return nullptr;
}

TEST(ExecContainerSpecTest, SharesTheRootReadOnlyAndJoinsTheSandbox) {
  auto spec = ExecContainerSpec(nlohmann::json::object(), Params());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ((*spec)["root"], (nlohmann::json{{"path", "/b/rootfs"}, {"readonly", true}}));
  EXPECT_EQ((*spec)["annotations"]["io.kubernetes.cri.container-type"], "container");
  EXPECT_EQ((*spec)["annotations"]["io.kubernetes.cri.sandbox-id"], "gvsandbox");
  EXPECT_EQ((*spec)["process"]["args"], (nlohmann::json{"/.gvshim/gvshim-launch", "init"}));
  EXPECT_EQ((*spec)["process"]["noNewPrivileges"], true);
  EXPECT_EQ((*spec)["process"]["user"]["uid"], 0);
  // Its own pid and mount namespaces: the pod's containers and the snippets do not see each other.
  std::vector<std::string> types;
  for (const auto& ns : (*spec)["linux"]["namespaces"]) types.push_back(ns["type"]);
  EXPECT_THAT(types, ::testing::IsSupersetOf({"pid", "mount", "ipc", "uts", "network"}));
}

TEST(ExecContainerSpecTest, MountsTheHelpersReadOnlyAndTheScratchDirs) {
  auto spec = ExecContainerSpec(nlohmann::json::object(), Params());
  ASSERT_TRUE(spec.ok());
  const nlohmann::json* h = MountAt(*spec, "/.gvshim");
  ASSERT_NE(h, nullptr);
  EXPECT_EQ((*h)["source"], "/usr/lib/gvshim");
  EXPECT_THAT((*h)["options"].get<std::vector<std::string>>(), ::testing::Contains("ro"));
  EXPECT_THAT((*h)["options"].get<std::vector<std::string>>(), ::testing::Not(::testing::Contains("noexec")));
  for (const char* d : {"/tmp", "/var/tmp", "/dev/shm", "/workspace", "/proc", "/dev"}) {
    EXPECT_NE(MountAt(*spec, d), nullptr) << d;
  }
  EXPECT_THAT((*MountAt(*spec, "/tmp"))["options"].get<std::vector<std::string>>(),
              ::testing::Contains("size=16777216"));
}

TEST(ExecContainerSpecTest, TakesHostnamePathAndNetworkNamespaceFromTheServedContainer) {
  nlohmann::json target = {
      {"hostname", "my-pod"},
      {"process", {{"env", {"A=1", "PATH=/opt/py/bin:/usr/bin"}}}},
      {"linux", {{"namespaces", {{{"type", "network"}, {"path", "/var/run/netns/cni-1"}}}}}}};
  auto spec = ExecContainerSpec(target, Params());
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ((*spec)["hostname"], "my-pod");
  EXPECT_EQ((*spec)["process"]["env"], (nlohmann::json{"PATH=/opt/py/bin:/usr/bin"}));  // nothing else leaks
  bool found = false;
  for (const auto& ns : (*spec)["linux"]["namespaces"]) {
    if (ns["type"] == "network") {
      EXPECT_EQ(ns["path"], "/var/run/netns/cni-1");
      found = true;
    }
  }
  EXPECT_TRUE(found);
}

TEST(ExecContainerSpecTest, BadParamsAreRefused) {
  auto p = Params();
  p.rootfs = "rootfs";
  EXPECT_THAT(ExecContainerSpec({}, p).status().message(), HasSubstr("not absolute"));
  p = Params();
  p.helpers_dir.clear();
  EXPECT_EQ(ExecContainerSpec({}, p).status().code(), absl::StatusCode::kInvalidArgument);
}

class ExecContainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gvec-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ + "/rootfs");
    std::ofstream(dir_ + "/config.json") << R"({"ociVersion":"1.0.2","root":{"path":"rootfs"}})";
    p_ = Params();
    p_.rootfs = dir_ + "/rootfs";
  }
  void TearDown() override {
    fake_.KillAll();
    fs::remove_all(dir_);
  }
  std::string dir_;
  ExecContainerParams p_;
  testing::FakeRunsc fake_;
};

TEST_F(ExecContainerTest, CreateStartDelete) {
  ASSERT_TRUE(CreateExecContainer(fake_, "web", dir_, p_).ok());
  EXPECT_THAT(fake_.MethodNames(), ::testing::ElementsAre("Create", "Start"));
  EXPECT_EQ(fake_.CallsOf("Create")[0].id, "web/execute");
  EXPECT_TRUE(fs::exists(dir_ + "/gvshim-execute/config.json"));
  ASSERT_TRUE(DeleteExecContainer(fake_, "web", dir_).ok());
  EXPECT_EQ(fake_.CallsOf("Delete")[0].id, "web/execute");
  EXPECT_TRUE(fake_.CallsOf("Delete")[0].force);
  EXPECT_FALSE(fs::exists(dir_ + "/gvshim-execute"));
  // Nothing left: a second delete does not call runsc.
  ASSERT_TRUE(DeleteExecContainer(fake_, "web", dir_).ok());
  EXPECT_EQ(fake_.CallsOf("Delete").size(), 1u);
}

TEST_F(ExecContainerTest, FailedCreateLeavesNothing) {
  fake_.SetError("Create", absl::InternalError("runsc create: no"));
  absl::Status st = CreateExecContainer(fake_, "web", dir_, p_);
  EXPECT_THAT(st.message(), HasSubstr("execute container for web"));
  EXPECT_THAT(st.message(), HasSubstr("runsc create: no"));
  EXPECT_FALSE(fs::exists(dir_ + "/gvshim-execute"));
}

TEST_F(ExecContainerTest, DeleteOfAContainerRunscNoLongerKnowsStillRemovesTheDirectory) {
  fs::create_directories(dir_ + "/gvshim-execute");
  EXPECT_TRUE(DeleteExecContainer(fake_, "gone", dir_).ok());  // the fake answers NOT_FOUND
  EXPECT_FALSE(fs::exists(dir_ + "/gvshim-execute"));
}

TEST_F(ExecContainerTest, MountPointsForOldRunsc) {
  ASSERT_TRUE(MakeMountPoints(dir_ + "/rootfs").ok());
  for (const std::string& d : ExecMountPoints()) EXPECT_TRUE(fs::is_directory(dir_ + "/rootfs" + d)) << d;
}

}  // namespace
}  // namespace gvshim::execute
