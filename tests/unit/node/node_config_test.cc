#include "shim/node/node_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <toml++/toml.h>

namespace gvshim::node {
namespace {

using ::testing::HasSubstr;

TEST(NodeConfig, HelmFloatsBecomeIntegersAndDefaultsAreFilled) {
  auto t = RenderGvshimToml(
      R"({"runsc":{"network":"sandbox","platform":""},"execute":{"enabled":true,"max_concurrent":4.0,
          "limits":{"memory_bytes":2.68435456e+08}},"hardening":{"seccomp_profile":"strict"}})",
      {"/opt/gvshim/bin/runsc", "/opt/gvshim/seccomp-profiles"});
  ASSERT_TRUE(t.ok()) << t.status();
  toml::table doc = toml::parse(*t);
  EXPECT_EQ(doc["execute"]["max_concurrent"].value<int64_t>(), 4);
  EXPECT_TRUE(doc["execute"]["max_concurrent"].is_integer());
  EXPECT_EQ(doc["execute"]["limits"]["memory_bytes"].value<int64_t>(), 268435456);
  EXPECT_EQ(doc["runsc"]["binary"].value_or(""), std::string("/opt/gvshim/bin/runsc"));
  EXPECT_EQ(doc["hardening"]["profiles_dir"].value_or(""), std::string("/opt/gvshim/seccomp-profiles"));
}

TEST(NodeConfig, ExplicitValuesWin) {
  auto t = RenderGvshimToml(R"({"runsc":{"binary":"/usr/bin/runsc"}})", {"/opt/gvshim/bin/runsc", ""});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(toml::parse(*t)["runsc"]["binary"].value_or(""), std::string("/usr/bin/runsc"));
}

TEST(NodeConfig, WhatTheShimWouldRefuseIsRefusedHere) {
  struct Case {
    const char* json;
    const char* want;
  } cases[] = {
      {R"({"runsc":{"netwrk":"none"}})", "netwrk"},
      {R"({"hardening":{"readonly_rootfs":"yes"}})", "readonly_rootfs"},
      {R"({"execute":{"max_concurrent":"four"}})", "max_concurrent"},
      {R"({"runsc":"none"})", "must be a table"},
      {R"([1,2])", "not a JSON object"},
      {R"({"runsc":{"debug_log":null}})", "null"},
  };
  for (const auto& c : cases) {
    auto t = RenderGvshimToml(c.json, {});
    EXPECT_FALSE(t.ok()) << c.json;
    EXPECT_THAT(t.status().message(), HasSubstr(c.want)) << c.json;
  }
}

}  // namespace
}  // namespace gvshim::node
