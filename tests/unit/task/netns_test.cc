#include "shim/task/netns.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace gvshim::task {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

// Two distinct files stand in for the node's and another network namespace: the check compares device and
// inode, which any file has.
class NetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gvshim-netns-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    node_ = dir_ + "/node";
    pod_ = dir_ + "/pod";
    std::ofstream(node_) << "";
    std::ofstream(pod_) << "";
  }
  void TearDown() override {
    ::unlink(node_.c_str());
    ::unlink(pod_.c_str());
    ::rmdir(dir_.c_str());
  }
  static json SpecWithNetns(const std::string& path) {
    json ns = {{"type", "network"}};
    if (!path.empty()) ns["path"] = path;
    return {{"linux", {{"namespaces", json::array({{{"type", "pid"}}, ns})}}}};
  }
  std::string dir_, node_, pod_;
};

TEST_F(NetnsTest, APodNamespaceOtherThanTheNodesMayHideSysctls) {
  auto r = SandboxNetnsIsNotTheNodes(SpecWithNetns(pod_), {node_, node_, ""});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(*r);
}

TEST_F(NetnsTest, TheNodesNamespaceByPathIsRefused) {
  auto r = SandboxNetnsIsNotTheNodes(SpecWithNetns(node_), {node_, pod_, ""});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("node's network namespace"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(node_));
}

TEST_F(NetnsTest, AFreshNamespaceNeedsNoPath) {
  auto r = SandboxNetnsIsNotTheNodes(SpecWithNetns(""), {node_, node_, ""});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(*r);
}

TEST_F(NetnsTest, HostNetworkIsTheShimsNamespace) {
  const json host_network = {{"linux", {{"namespaces", json::array({{{"type", "pid"}}})}}}};
  // The shim in the node's namespace: refused.
  auto refused = SandboxNetnsIsNotTheNodes(host_network, {node_, node_, ""});
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("hostNetwork"));
  // The shim (with containerd) in a namespace of its own: that one is not the node's.
  auto allowed = SandboxNetnsIsNotTheNodes(host_network, {node_, pod_, ""});
  ASSERT_TRUE(allowed.ok()) << allowed.status();
  EXPECT_TRUE(*allowed);
}

TEST_F(NetnsTest, AMissingPodNamespaceIsAnErrorNamingIt) {
  auto r = SandboxNetnsIsNotTheNodes(SpecWithNetns(dir_ + "/gone"), {node_, node_, ""});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(dir_ + "/gone"));
}

TEST_F(NetnsTest, UnreadableInitOnAnOlderKernelLeavesTheDecisionToRunsc) {
  auto r = SandboxNetnsIsNotTheNodes(SpecWithNetns(pod_), {dir_ + "/no-init", node_, "6.1.0-27-amd64"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(*r);
}

TEST_F(NetnsTest, UnreadableInitFromLinux618OnIsRecognisedByItsFixedInode) {
  // A namespace file that is not the node's (the fixed inode is never a regular file's here).
  auto r = SandboxNetnsIsNotTheNodes(SpecWithNetns(pod_), {dir_ + "/no-init", node_, "6.18.44-fc-v1300"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(*r);
  // This machine's own network namespace, when it is the node's on a 6.18+ kernel, is refused.
  struct utsname u {};
  ASSERT_EQ(::uname(&u), 0);
  struct stat self {};
  ASSERT_EQ(::stat("/proc/self/ns/net", &self), 0);
  if (!KernelNumbersInitNetFixed(u.release) || self.st_ino != 0xEFFFFFF9) {
    GTEST_SKIP() << "needs a 6.18+ kernel and this test in the node's network namespace";
  }
  auto node = SandboxNetnsIsNotTheNodes(SpecWithNetns("/proc/self/ns/net"),
                                        {dir_ + "/no-init", "/proc/self/ns/net", ""});
  ASSERT_FALSE(node.ok());
  EXPECT_EQ(node.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(KernelReleaseTest, FixedInitNetInodeFrom618) {
  EXPECT_TRUE(KernelNumbersInitNetFixed("6.18.44-fc-v1300"));
  EXPECT_TRUE(KernelNumbersInitNetFixed("6.19"));
  EXPECT_TRUE(KernelNumbersInitNetFixed("7.0.1"));
  EXPECT_FALSE(KernelNumbersInitNetFixed("6.17.9"));
  EXPECT_FALSE(KernelNumbersInitNetFixed("6.1.0-27-amd64"));
  EXPECT_FALSE(KernelNumbersInitNetFixed("5.10.0"));
  EXPECT_FALSE(KernelNumbersInitNetFixed("garbage"));
  EXPECT_FALSE(KernelNumbersInitNetFixed(""));
}

}  // namespace
}  // namespace gvshim::task
