// The pure parts of task/spec_prep: reading the bundle's spec, finding the OOM counter, the delete-info file
// and the metrics conversion.
#include "shim/task/spec_prep.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "shim/runsc/runsc.h"
#include "tests/unit/fakes/test_util.h"

namespace gvshim::task {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class SpecPrepTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gvsp-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  static nlohmann::json MinimalSpec() {
    return {{"ociVersion", "1.0.2"},
            {"process", {{"args", {"/bin/sh"}}, {"cwd", "/"}}},
            {"root", {{"path", "rootfs"}}}};
  }
  void WriteSpec(const std::string& text) { std::ofstream(dir_ + "/config.json", std::ios::trunc) << text; }
  std::string dir_;
  ProfileCache profiles_;
};

TEST_F(SpecPrepTest, PrepareSpecTable) {
  struct Case {
    const char* name;
    nlohmann::json spec;
    bool creates_sandbox;
    bool oci_seccomp;
  };
  const Case cases[] = {
      {"plain container", nlohmann::json::object(), true, false},
      {"CRI sandbox", {{"annotations", {{kContainerTypeAnnotation, "sandbox"}}}}, true, false},
      {"CRI container joins",
       {{"annotations", {{kContainerTypeAnnotation, "container"}, {kSandboxIdAnnotation, "sb"}}}},
       false,
       false},
      {"seccomp profile", {{"linux", {{"seccomp", {{"defaultAction", "SCMP_ACT_ERRNO"}}}}}}, true, true},
      {"linux without seccomp", {{"linux", {{"namespaces", {{{"type", "network"}}}}}}}, true, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    nlohmann::json spec = MinimalSpec();
    spec.merge_patch(c.spec);
    WriteSpec(spec.dump());
    auto p = PrepareSpec(dir_, config::Config(), &profiles_);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->creates_sandbox, c.creates_sandbox);
    EXPECT_EQ(p->oci_seccomp, c.oci_seccomp);
    EXPECT_EQ(p->rootfs, dir_ + "/rootfs");
  }
}

TEST_F(SpecPrepTest, PrepareSpecErrorsNameTheFile) {
  auto missing = PrepareSpec(dir_, config::Config(), &profiles_);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr(dir_ + "/config.json"));
  // Malformed JSON: the file with line and column.
  for (const char* text : {"{", "", "{\n  \"ociVersion\": \"1.0.2\",\n  oops\n}"}) {
    SCOPED_TRACE(text);
    WriteSpec(text);
    auto p = PrepareSpec(dir_, config::Config(), &profiles_);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(p.status().message(), HasSubstr(dir_ + "/config.json:"));
  }
  // Well-formed JSON that is not a spec.
  for (const char* text : {"[1,2]", "\"str\"", "{\"ociVersion\":\"1.0.2\"}"}) {
    SCOPED_TRACE(text);
    WriteSpec(text);
    auto p = PrepareSpec(dir_, config::Config(), &profiles_);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST_F(SpecPrepTest, MalformedAnnotationsAreRejected) {
  for (nlohmann::json ann : {nlohmann::json{{kContainerTypeAnnotation, 1}}, nlohmann::json("x")}) {
    SCOPED_TRACE(ann.dump());
    nlohmann::json spec = MinimalSpec();
    spec["annotations"] = ann;
    WriteSpec(spec.dump());
    auto p = PrepareSpec(dir_, config::Config(), &profiles_);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << p.status();
    EXPECT_THAT(p.status().message(), HasSubstr("annotations"));
  }
}

TEST_F(SpecPrepTest, AbsoluteRootPath) {
  nlohmann::json spec = MinimalSpec();
  spec["root"]["path"] = dir_ + "/elsewhere";
  WriteSpec(spec.dump());
  auto p = PrepareSpec(dir_, config::Config(), &profiles_);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->rootfs, dir_ + "/elsewhere");
}

TEST_F(SpecPrepTest, SandboxIdAnnotation) {
  nlohmann::json spec = MinimalSpec();
  spec["annotations"] = {{kSandboxIdAnnotation, "sb-1"}, {kContainerTypeAnnotation, "container"}};
  WriteSpec(spec.dump());
  auto p = PrepareSpec(dir_, config::Config(), &profiles_);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->sandbox_id, "sb-1");
  EXPECT_EQ(p->annotations.at(kSandboxIdAnnotation), "sb-1");
  EXPECT_FALSE(p->creates_sandbox);
}

TEST_F(SpecPrepTest, JoiningContainerGetsRunscsIdOfTheSandbox) {
  nlohmann::json spec = MinimalSpec();
  spec["annotations"] = {{kSandboxIdAnnotation, "sb-1"}, {kContainerTypeAnnotation, "container"}};
  WriteSpec(spec.dump());
  auto p = PrepareSpec(dir_, config::Config(), &profiles_, "/run/r/ns1");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->sandbox_id, "sb-1");  // containerd's id for the shim
  auto saved = nlohmann::json::parse(gvshim::testing::ReadFile(dir_ + "/config.json"));
  EXPECT_EQ(saved["annotations"][kSandboxIdAnnotation], runsc::ContainerId("/run/r/ns1", "sb-1"));  // runsc's
}

TEST_F(SpecPrepTest, SandboxContainerKeepsItsAnnotation) {
  nlohmann::json spec = MinimalSpec();
  spec["annotations"] = {{kSandboxIdAnnotation, "sb-1"}, {kContainerTypeAnnotation, "sandbox"}};
  WriteSpec(spec.dump());
  ASSERT_TRUE(PrepareSpec(dir_, config::Config(), &profiles_, "/run/r/ns1").ok());
  auto saved = nlohmann::json::parse(gvshim::testing::ReadFile(dir_ + "/config.json"));
  EXPECT_EQ(saved["annotations"][kSandboxIdAnnotation], "sb-1");
}

TEST_F(SpecPrepTest, OomCounterFile) {
  const std::string v1 = dir_ + "/v1", v2 = dir_ + "/v2", none = dir_ + "/none";
  std::filesystem::create_directories(v1 + "/memory");
  std::filesystem::create_directories(v2);
  std::filesystem::create_directories(none);
  std::ofstream(v2 + "/cgroup.controllers") << "cpu memory pids\n";
  EXPECT_EQ(OomCounterFile(v1, "/kubepods/pod1/c1"), v1 + "/memory/kubepods/pod1/c1/memory.oom_control");
  EXPECT_EQ(OomCounterFile(v2, "/kubepods/pod1/c1"), v2 + "/kubepods/pod1/c1/memory.events");
  EXPECT_EQ(OomCounterFile(none, "/kubepods/pod1/c1"), "");
  // Only absolute paths without "..": systemd-style "slice:prefix:name" paths and escapes give nothing.
  EXPECT_EQ(OomCounterFile(v2, ""), "");
  EXPECT_EQ(OomCounterFile(v2, "system.slice:cri:c1"), "");
  EXPECT_EQ(OomCounterFile(v2, "/a/../../etc"), "");
}

TEST_F(SpecPrepTest, DeleteInfoRoundTrip) {
  runsc::GlobalOptions g;
  g.binary = "/usr/bin/runsc";
  g.root = "/run/gvshim/runsc/k8s.io";
  g.platform = "ptrace";
  g.network = "none";
  g.extra_flags = {"--overlay2=none", "--x"};
  ASSERT_TRUE(WriteDeleteInfo(dir_, g).ok());
  auto back = ReadDeleteInfo(dir_);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->binary, g.binary);
  EXPECT_EQ(back->root, g.root);
  EXPECT_EQ(back->platform, g.platform);
  EXPECT_EQ(back->network, g.network);
  EXPECT_THAT(back->extra_flags, ElementsAre("--overlay2=none", "--x"));
}

TEST_F(SpecPrepTest, DeleteInfoErrors) {
  EXPECT_FALSE(ReadDeleteInfo(dir_).ok());  // missing
  std::ofstream(dir_ + "/" + kDeleteInfoFile) << R"({"binary":"runsc","root":7})";
  auto r = ReadDeleteInfo(dir_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr(kDeleteInfoFile));
  EXPECT_FALSE(WriteDeleteInfo(dir_ + "/no/such/dir", runsc::GlobalOptions()).ok());
}

TEST(FillMetricsTest, ZeroStatsGiveZeroMetrics) {
  io::containerd::cgroups::v1::Metrics m;
  FillMetrics(runsc::Stats(), &m);
  EXPECT_EQ(m.cpu().usage().total(), 0u);
  EXPECT_EQ(m.cpu().usage().per_cpu_size(), 0);
  EXPECT_EQ(m.memory().usage().usage(), 0u);
  EXPECT_EQ(m.pids().current(), 0u);
}

}  // namespace
}  // namespace gvshim::task
