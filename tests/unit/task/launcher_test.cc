// task/launcher: the launcher mounts and how terminal processes and execs are run through it.
#include "shim/task/launcher.h"

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

json RoBind(const std::string& dest, const std::string& src) {
  return {{"destination", dest},
          {"type", "bind"},
          {"source", src},
          {"options", {"rbind", "ro", "nosuid", "nodev"}}};
}

TEST(LauncherTest, MountedReadOnlyAndFrontsATerminalInit) {
  json spec = Spec(true);
  ASSERT_TRUE(AddLauncher(&spec, "/opt/gv/gvshim-launch", "/b/gvshim-seccomp.bpf").ok());
  EXPECT_EQ(spec["mounts"], json({RoBind(kLauncherPath, "/opt/gv/gvshim-launch"),
                                  RoBind(kExecSeccompPath, "/b/gvshim-seccomp.bpf")}));
  EXPECT_EQ(spec["process"]["args"], json({kLauncherPath, "--pty", "--", "sh", "-l"}));
  // Idempotent.
  ASSERT_TRUE(AddLauncher(&spec, "/opt/gv/gvshim-launch", "/b/gvshim-seccomp.bpf").ok());
  EXPECT_EQ(spec["mounts"].size(), 2u);
  EXPECT_EQ(spec["process"]["args"].size(), 5u);
}

TEST(LauncherTest, NonTerminalInitKeepsItsArgsAndNoBpfNoSecondMount) {
  json spec = Spec(false);
  ASSERT_TRUE(AddLauncher(&spec, "/l", "").ok());
  EXPECT_EQ(spec["mounts"], json({RoBind(kLauncherPath, "/l")}));
  EXPECT_EQ(spec["process"]["args"], json({"sh", "-l"}));
}

TEST(LauncherTest, NoLauncherNoChange) {
  json spec = Spec(true);
  ASSERT_TRUE(AddLauncher(&spec, "", "/b/x.bpf").ok());
  EXPECT_EQ(spec, Spec(true));
}

TEST(LauncherTest, TerminalWithoutArgsIsAnError) {
  json spec = {{"process", {{"terminal", true}}}};
  auto st = AddLauncher(&spec, "/l", "");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("process.args is empty"));
}

TEST(LauncherTest, WrapExecProcessTable) {
  struct Case {
    const char* name;
    json process;
    bool seccomp;
    json want_args;
  };
  const Case cases[] = {
      {"plain", {{"args", {"id"}}}, false, {"id"}},
      {"terminal", {{"terminal", true}, {"args", {"tty"}}}, false, {kLauncherPath, "--pty", "--", "tty"}},
      {"seccomp",
       {{"args", {"id", "-u"}}},
       true,
       {kLauncherPath, "--seccomp", kExecSeccompPath, "--", "id", "-u"}},
      {"both",
       {{"terminal", true}, {"args", {"sh"}}},
       true,
       {kLauncherPath, "--pty", "--seccomp", kExecSeccompPath, "--", "sh"}},
  };
  for (const Case& c : cases) {
    auto w = WrapExecProcess(c.process, c.seccomp);
    ASSERT_TRUE(w.ok()) << c.name << ": " << w.status();
    EXPECT_EQ((*w)["args"], c.want_args) << c.name;
  }
  EXPECT_EQ(WrapExecProcess(json::array(), true).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WrapExecProcess({{"args", json::array()}}, true).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LauncherTest, ResolveLauncher) {
  char tmpl[] = "/tmp/gvlaunch-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  config::Config cfg;
  EXPECT_EQ(ResolveLauncher(cfg, dir + "/containerd-shim-gvisor-v1"), "");  // missing: none
  const std::string launcher = dir + "/" + kLauncherFile;
  std::ofstream(launcher) << "#!/bin/sh\n";
  ::chmod(launcher.c_str(), 0755);
  EXPECT_EQ(ResolveLauncher(cfg, dir + "/containerd-shim-gvisor-v1"), launcher);
  cfg.shim.launcher = "off";
  EXPECT_EQ(ResolveLauncher(cfg, dir + "/containerd-shim-gvisor-v1"), "");
  cfg.shim.launcher = launcher;
  EXPECT_EQ(ResolveLauncher(cfg, "/elsewhere/shim"), launcher);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace gvshim::task
