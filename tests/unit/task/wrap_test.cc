// task/wrap: the wrapper mount and how terminal processes and execs are run through it.
#include "shim/task/wrap.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace gvshim::task {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

json Spec(bool terminal) {
  return {{"process", {{"terminal", terminal}, {"args", {"sh", "-l"}}}}, {"root", {{"path", "rootfs"}}}};
}

const json kWrapMount = {{"destination", kWrapPath},
                         {"type", "bind"},
                         {"source", "/opt/gv/gvshim-wrap"},
                         {"options", {"rbind", "ro", "nosuid", "nodev"}}};

TEST(WrapTest, MountedReadOnlyAndFrontsATerminalInit) {
  json spec = Spec(true);
  ASSERT_TRUE(AddWrap(&spec, "/opt/gv/gvshim-wrap").ok());
  EXPECT_EQ(spec["mounts"], json({kWrapMount}));
  EXPECT_EQ(spec["process"]["args"], json({kWrapPath, "--pty", "--", "sh", "-l"}));
  ASSERT_TRUE(AddWrap(&spec, "/opt/gv/gvshim-wrap").ok());  // idempotent
  EXPECT_EQ(spec["mounts"].size(), 1u);
  EXPECT_EQ(spec["process"]["args"].size(), 5u);
}

TEST(WrapTest, NonTerminalInitKeepsItsArgs) {
  json spec = Spec(false);
  ASSERT_TRUE(AddWrap(&spec, "/opt/gv/gvshim-wrap").ok());
  EXPECT_EQ(spec["mounts"], json({kWrapMount}));
  EXPECT_EQ(spec["process"]["args"], json({"sh", "-l"}));
}

TEST(WrapTest, NoWrapNoChange) {
  json spec = Spec(true);
  ASSERT_TRUE(AddWrap(&spec, "").ok());
  EXPECT_EQ(spec, Spec(true));
}

TEST(WrapTest, TerminalWithoutArgsIsAnError) {
  json spec = {{"process", {{"terminal", true}}}};
  auto st = AddWrap(&spec, "/w");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("process.args is empty"));
}

TEST(WrapTest, WrapExecProcessTable) {
  const std::string bpf("\x06\x00\x00\x00\x00\x00\xff\x7f", 8);  // one instruction: RET ALLOW
  const std::string env = std::string(kSeccompEnv) + "=060000000000ff7f";
  struct Case {
    const char* name;
    json process;
    std::string bpf;
    json want_args;
    json want_env;
  };
  const Case cases[] = {
      {"plain", {{"args", {"id"}}, {"env", {"A=1"}}}, "", {"id"}, {"A=1"}},
      {"terminal", {{"terminal", true}, {"args", {"tty"}}}, "", {kWrapPath, "--pty", "--", "tty"}, nullptr},
      {"seccomp",
       {{"args", {"id", "-u"}}, {"env", {"A=1"}}},
       bpf,
       {kWrapPath, "--seccomp-env", "--", "id", "-u"},
       {"A=1", env}},
      {"both, a forged variable replaced",
       {{"terminal", true}, {"args", {"sh"}}, {"env", {std::string(kSeccompEnv) + "=00"}}},
       bpf,
       {kWrapPath, "--pty", "--seccomp-env", "--", "sh"},
       {env}},
  };
  for (const Case& c : cases) {
    auto w = WrapExecProcess(c.process, c.bpf);
    ASSERT_TRUE(w.ok()) << c.name << ": " << w.status();
    EXPECT_EQ((*w)["args"], c.want_args) << c.name;
    if (!c.want_env.is_null()) {
      EXPECT_EQ((*w)["env"], c.want_env) << c.name;
    }
  }
  EXPECT_EQ(WrapExecProcess(json::array(), bpf).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WrapExecProcess({{"args", json::array()}}, bpf).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(WrapTest, ResolveWrap) {
  char tmpl[] = "/tmp/gvwrap-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  config::Config cfg;
  EXPECT_EQ(ResolveWrap(cfg, dir + "/bin/containerd-shim-gvisor-v1"), "");  // nowhere: none
  std::filesystem::create_directories(dir + "/lib/gvshim");
  std::filesystem::create_directories(dir + "/bin/gvshim-helpers");
  auto make = [](const std::string& path) {
    std::ofstream(path) << "#!/bin/sh\n";
    ::chmod(path.c_str(), 0755);
  };
  make(dir + "/lib/gvshim/gvshim-wrap");
  EXPECT_EQ(ResolveWrap(cfg, dir + "/bin/containerd-shim-gvisor-v1"), dir + "/bin/../lib/gvshim/gvshim-wrap");
  make(dir + "/bin/gvshim-helpers/gvshim-wrap");  // the build tree's layout wins
  EXPECT_EQ(ResolveWrap(cfg, dir + "/bin/containerd-shim-gvisor-v1"),
            dir + "/bin/gvshim-helpers/gvshim-wrap");
  cfg.shim.wrap = "off";
  EXPECT_EQ(ResolveWrap(cfg, dir + "/bin/containerd-shim-gvisor-v1"), "");
  cfg.shim.wrap = dir + "/lib/gvshim/gvshim-wrap";
  EXPECT_EQ(ResolveWrap(cfg, "/elsewhere/shim"), dir + "/lib/gvshim/gvshim-wrap");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace gvshim::task
