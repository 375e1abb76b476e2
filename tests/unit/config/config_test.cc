#include "shim/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gvshim::config {
namespace {

using ::testing::HasSubstr;

TEST(ConfigTest, EmptyTextGivesDefaults) {
  auto c = Parse("", "x.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->runsc.binary, "runsc");
  EXPECT_EQ(c->runsc.root, "/run/gvshim/runsc");
  EXPECT_EQ(c->runsc.platform, "");  // runsc chooses (systrap in 0.0~20240729)
  EXPECT_EQ(c->runsc.network, "none");
  EXPECT_FALSE(c->runsc.debug);
  EXPECT_EQ(c->shim.log_level, "info");
  EXPECT_EQ(c->hardening, nullptr);
}

TEST(ConfigTest, ParsesEveryKey) {
  auto c = Parse(R"(
[runsc]
binary = "/usr/local/bin/runsc"
root = "/tmp/r"
platform = "systrap"
network = "sandbox"
debug = true
debug_log = "/tmp/dbg/"
extra_flags = ["--overlay2=root:memory", "--host-uds=open"]
[shim]
log_level = "debug"
[hardening]
readonly_rootfs = true
)",
                 "/etc/containerd/gvshim.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->runsc.binary, "/usr/local/bin/runsc");
  EXPECT_EQ(c->runsc.root, "/tmp/r");
  EXPECT_EQ(c->runsc.platform, "systrap");
  EXPECT_EQ(c->runsc.network, "sandbox");
  EXPECT_TRUE(c->runsc.debug);
  EXPECT_EQ(c->runsc.debug_log, "/tmp/dbg/");
  EXPECT_THAT(c->runsc.extra_flags, ::testing::ElementsAre("--overlay2=root:memory", "--host-uds=open"));
  EXPECT_EQ(c->shim.log_level, "debug");
  ASSERT_NE(c->hardening, nullptr);
  EXPECT_TRUE(c->hardening->contains("readonly_rootfs"));
  // Source positions survive, so the hardening module can name the line of a bad key.
  EXPECT_EQ(c->hardening->get("readonly_rootfs")->source().begin.line, 13u);
}

struct BadCase {
  const char* name;
  const char* text;
  const char* want;  // substring of the error
};

class ConfigErrorTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConfigErrorTest, NamesFileLineAndKey) {
  auto c = Parse(GetParam().text, "/etc/gv.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(GetParam().want));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ConfigErrorTest,
    ::testing::Values(
        BadCase{"syntax", "[runsc\nbinary = 1", "/etc/gv.toml:1:"},
        BadCase{"unknown_table", "[nope]\n", "/etc/gv.toml:1: nope: unknown key"},
        BadCase{"unknown_key", "[runsc]\n\nplatfrom = \"ptrace\"\n",
                "/etc/gv.toml:3: runsc.platfrom: unknown key"},
        BadCase{"wrong_type", "[runsc]\ndebug = \"yes\"\n",
                "/etc/gv.toml:2: runsc.debug: expected true or false"},
        BadCase{"relative_root", "[runsc]\nroot = \"rel\"\n", "runsc.root: must be an absolute path"},
        BadCase{"bad_network", "[runsc]\nnetwork = \"bridge\"\n", "runsc.network: must be"},
        BadCase{"bad_flags", "[runsc]\nextra_flags = \"--x\"\n", "runsc.extra_flags: expected an array"},
        BadCase{"bad_level", "[shim]\nlog_level = \"loud\"\n", "shim.log_level: must be"},
        BadCase{"table_not_table", "runsc = 3\n", "runsc: expected a table"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(ConfigTest, MissingDefaultFileGivesDefaultsButExplicitPathIsAnError) {
  auto d = Load("/nonexistent/gvshim.toml", /*explicit_path=*/false);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->runsc.binary, "runsc");
  auto e = Load("/nonexistent/gvshim.toml", /*explicit_path=*/true);
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(std::string(e.status().message()), HasSubstr("/nonexistent/gvshim.toml"));
}

}  // namespace
}  // namespace gvshim::config

namespace gvshim::config {
namespace {

TEST(ConfigTest, ShimWrapAndMemoryCheck) {
  auto d = Parse("", "x.toml");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->shim.wrap, "");
  EXPECT_EQ(d->shim.memory_check_ms, 1000);
  auto c = Parse("[shim]\nwrap = \"/opt/gvshim-wrap\"\nmemory_check_ms = 250\n", "x.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->shim.wrap, "/opt/gvshim-wrap");
  EXPECT_EQ(c->shim.memory_check_ms, 250);
  EXPECT_TRUE(Parse("[shim]\nwrap = \"off\"\nmemory_check_ms = 0\n", "x.toml").ok());
  for (const char* bad : {"[shim]\nwrap = \"relative/path\"\n", "[shim]\nmemory_check_ms = -1\n",
                          "[shim]\nmemory_check_ms = \"1s\"\n"}) {
    auto r = Parse(bad, "x.toml");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_THAT(std::string(r.status().message()), ::testing::HasSubstr("x.toml:2: shim.")) << bad;
  }
}

}  // namespace
}  // namespace gvshim::config
