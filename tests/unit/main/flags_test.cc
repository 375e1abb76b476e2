#include "shim/main/flags.h"

#include <gtest/gtest.h>

namespace gvshim::shim_main {
namespace {

TEST(FlagsTest, ParsesContainerdStartCommandLine) {
  auto f = ParseFlags({"-namespace", "k8s.io", "-address", "/run/containerd/containerd.sock",
                       "-publish-binary", "/usr/bin/containerd", "-id", "abc", "-debug", "start"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->ns, "k8s.io");
  EXPECT_EQ(f->address, "/run/containerd/containerd.sock");
  EXPECT_EQ(f->publish_binary, "/usr/bin/containerd");
  EXPECT_EQ(f->id, "abc");
  EXPECT_TRUE(f->debug);
  EXPECT_EQ(f->action, "start");
}

TEST(FlagsTest, AcceptsEqualsAndDoubleDash) {
  auto f = ParseFlags({"--namespace=default", "-id=x", "-bundle", "/b", "-debug=false", "delete"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->ns, "default");
  EXPECT_EQ(f->id, "x");
  EXPECT_EQ(f->bundle, "/b");
  EXPECT_FALSE(f->debug);
  EXPECT_EQ(f->action, "delete");
}

TEST(FlagsTest, Errors) {
  EXPECT_FALSE(ParseFlags({"-namespace"}).ok());
  EXPECT_FALSE(ParseFlags({"-frobnicate", "1"}).ok());
  EXPECT_FALSE(ParseFlags({"stop"}).ok());
  EXPECT_FALSE(ParseFlags({"start", "delete"}).ok());
  EXPECT_FALSE(ParseFlags({"-debug=maybe"}).ok());
  EXPECT_TRUE(ParseFlags({"-v"}).value().version);
}

TEST(FlagsTest, SocketPathGroupsBySandboxAndIsShort) {
  std::string a = SocketPath("/run/containerd/containerd.sock", "k8s.io", "sandbox-1");
  EXPECT_EQ(a, SocketPath("/run/containerd/containerd.sock", "k8s.io", "sandbox-1"));
  EXPECT_NE(a, SocketPath("/run/containerd/containerd.sock", "k8s.io", "sandbox-2"));
  EXPECT_NE(a, SocketPath("/run/containerd/containerd.sock", "default", "sandbox-1"));
  EXPECT_NE(a, SocketPath("/tmp/other.sock", "k8s.io", "sandbox-1"));
  EXPECT_EQ(a.rfind("/run/containerd/s/", 0), 0u);
  EXPECT_LT(a.size(), 108u);
}

// A running pod's shim is found again by this path when containerd starts the pod's next container, also
// after gvshim was upgraded: the value must not change between versions (computed independently of this
// code).
TEST(FlagsTest, SocketPathIsStableAcrossVersions) {
  EXPECT_EQ(SocketPath("/run/containerd/containerd.sock", "k8s.io", "sandbox-1"),
            "/run/containerd/s/gv-55c05c7696d0fba8d4bbe584069c9c85");
}

}  // namespace
}  // namespace gvshim::shim_main
