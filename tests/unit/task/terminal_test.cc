// task/terminal: the pty relay mount and the wrapping of terminal processes.
#include "shim/task/terminal.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace gvshim::task {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

json Spec(bool terminal) {
  return {{"process", {{"terminal", terminal}, {"args", {"sh", "-l"}}}}, {"root", {{"path", "rootfs"}}}};
}

TEST(TerminalTest, RelayIsMountedReadOnlyAndFrontsATerminalInit) {
  json spec = Spec(true);
  ASSERT_TRUE(AddPtyRelay(&spec, "/opt/gv/gvshim-ptyrelay").ok());
  ASSERT_EQ(spec["mounts"].size(), 1u);
  const json& m = spec["mounts"][0];
  EXPECT_EQ(m["destination"], kPtyRelayPath);
  EXPECT_EQ(m["source"], "/opt/gv/gvshim-ptyrelay");
  EXPECT_EQ(m["type"], "bind");
  EXPECT_EQ(m["options"], json({"rbind", "ro", "nosuid", "nodev"}));
  EXPECT_EQ(spec["process"]["args"], json({kPtyRelayPath, "sh", "-l"}));
  // Idempotent: a second pass adds nothing.
  ASSERT_TRUE(AddPtyRelay(&spec, "/opt/gv/gvshim-ptyrelay").ok());
  EXPECT_EQ(spec["mounts"].size(), 1u);
  EXPECT_EQ(spec["process"]["args"].size(), 3u);
}

TEST(TerminalTest, NonTerminalInitKeepsItsArgs) {
  json spec = Spec(false);
  ASSERT_TRUE(AddPtyRelay(&spec, "/r").ok());
  EXPECT_EQ(spec["mounts"].size(), 1u);
  EXPECT_EQ(spec["process"]["args"], json({"sh", "-l"}));
}

TEST(TerminalTest, NoRelayNoChange) {
  json spec = Spec(true);
  ASSERT_TRUE(AddPtyRelay(&spec, "").ok());
  EXPECT_EQ(spec, Spec(true));
}

TEST(TerminalTest, TerminalWithoutArgsIsAnError) {
  json spec = {{"process", {{"terminal", true}}}};
  auto st = AddPtyRelay(&spec, "/r");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("needs process.args"));
}

TEST(TerminalTest, WrapTerminalExec) {
  auto w = WrapTerminalProcess(R"({"terminal":true,"args":["tty"],"cwd":"/"})");
  ASSERT_TRUE(w.ok()) << w.status();
  json j = json::parse(*w);
  EXPECT_EQ(j["args"], json({kPtyRelayPath, "tty"}));
  EXPECT_EQ(j["cwd"], "/");
  const std::string plain = R"({"terminal":false,"args":["tty"]})";
  EXPECT_EQ(*WrapTerminalProcess(plain), plain);
  EXPECT_EQ(WrapTerminalProcess("[1]").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WrapTerminalProcess(R"({"terminal":true,"args":[]})").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TerminalTest, ResolvePtyRelay) {
  char tmpl[] = "/tmp/gvterm-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  config::Config cfg;
  // Next to the shim binary by default; missing → none.
  EXPECT_EQ(ResolvePtyRelay(cfg, dir + "/containerd-shim-gvisor-v1"), "");
  const std::string relay = dir + "/" + kPtyRelayFile;
  std::ofstream(relay) << "#!/bin/sh\n";
  ::chmod(relay.c_str(), 0755);
  EXPECT_EQ(ResolvePtyRelay(cfg, dir + "/containerd-shim-gvisor-v1"), relay);
  cfg.shim.pty_relay = "off";
  EXPECT_EQ(ResolvePtyRelay(cfg, dir + "/containerd-shim-gvisor-v1"), "");
  cfg.shim.pty_relay = relay;
  EXPECT_EQ(ResolvePtyRelay(cfg, "/elsewhere/shim"), relay);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace gvshim::task
