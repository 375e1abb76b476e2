#include "shim/node/containerd_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <toml++/toml.h>

namespace gvshim::node {
namespace {

using ::testing::HasSubstr;

// The shape of `containerd config dump` (1.6): version 2 keys, a CRI table with one runtime.
constexpr char kDump[] = R"(imports = ["/etc/containerd/config.toml"]
root = "/var/lib/containerd"
version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.6"
    stream_idle_timeout = "4h0m0s"
    max_concurrent_downloads = 3
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/opt/cni/bin"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes]
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          runtime_type = "io.containerd.runc.v2"
          pod_annotations = []
          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            SystemdCgroup = true
  [plugins."io.containerd.internal.v1.opt"]
    path = "/opt/containerd"
)";

RuntimeEntry Entry() {
  RuntimeEntry e;
  e.runtime_path = "/opt/gvshim/bin/containerd-shim-gvisor-v1";
  e.config_path = "/etc/containerd/gvshim.toml";
  return e;
}

TEST(ContainerdConfig, ParsesVersions) {
  EXPECT_EQ(*ParseContainerdMajor("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1\n"),
            1);
  EXPECT_EQ(*ParseContainerdMajor("containerd containerd.io v2.0.4 1a43cb6a"), 2);
  EXPECT_FALSE(ParseContainerdMajor("command not found").ok());
}

TEST(ContainerdConfig, SchemaFollowsRootVersion) {
  struct Case {
    int major;
    bool exists;
    int64_t version;
    bool ok;
    Schema want;
  } cases[] = {
      {1, false, 0, true, Schema::kV2}, {1, true, 0, true, Schema::kV1}, {1, true, 1, true, Schema::kV1},
      {1, true, 2, true, Schema::kV2},  {1, true, 3, false, {}},         {2, true, 3, true, Schema::kV3},
      {2, false, 0, true, Schema::kV3}, {2, true, 2, false, {}},         {3, true, 4, false, {}},
  };
  for (const auto& c : cases) {
    RootConfig r;
    r.exists = c.exists;
    r.version = c.version;
    auto s = ChooseSchema(c.major, r);
    EXPECT_EQ(s.ok(), c.ok) << c.major << "/" << c.version;
    if (c.ok && s.ok()) {
      EXPECT_EQ(*s, c.want) << c.major << "/" << c.version;
    }
  }
}

TEST(ContainerdConfig, V2DropInCarriesTheWholeCriTable) {
  auto text = BuildDropIn(Schema::kV2, kDump, Entry());
  ASSERT_TRUE(text.ok()) << text.status();
  toml::table doc = toml::parse(*text);
  EXPECT_EQ(doc["version"].value_or(0), 2);
  auto cri = doc["plugins"]["io.containerd.grpc.v1.cri"];
  // Everything from the dump is kept as it was...
  EXPECT_EQ(cri["sandbox_image"].value_or(""), std::string("registry.k8s.io/pause:3.6"));
  EXPECT_EQ(cri["max_concurrent_downloads"].value_or(0), 3);
  EXPECT_EQ(cri["cni"]["bin_dir"].value_or(""), std::string("/opt/cni/bin"));
  EXPECT_EQ(cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"].value_or(false), true);
  // ...our runtime is added, and nothing outside the CRI plugin is in the drop-in.
  auto g = cri["containerd"]["runtimes"]["gvisor"];
  EXPECT_EQ(g["runtime_type"].value_or(""), std::string("io.containerd.gvisor.v1"));
  EXPECT_EQ(g["runtime_path"].value_or(""), std::string("/opt/gvshim/bin/containerd-shim-gvisor-v1"));
  EXPECT_EQ(g["options"]["ConfigPath"].value_or(""), std::string("/etc/containerd/gvshim.toml"));
  EXPECT_EQ(g["pod_annotations"][0].value_or(""), std::string("dev.gvshim.*"));
  EXPECT_FALSE(doc["plugins"]["io.containerd.internal.v1.opt"]);
  EXPECT_FALSE(doc["root"]);
}

TEST(ContainerdConfig, V1DropInUsesThePluginId) {
  auto text = BuildDropIn(Schema::kV1, kDump, Entry());
  ASSERT_TRUE(text.ok()) << text.status();
  toml::table doc = toml::parse(*text);
  EXPECT_EQ(doc["version"].value_or(0), 1);
  EXPECT_TRUE(doc["plugins"]["cri"]["containerd"]["runtimes"]["gvisor"]);
  EXPECT_FALSE(doc["plugins"]["io.containerd.grpc.v1.cri"]);
}

TEST(ContainerdConfig, V3DropInHoldsOnlyOurRuntime) {
  auto text = BuildDropIn(Schema::kV3, "version = 3\n", Entry());
  ASSERT_TRUE(text.ok()) << text.status();
  toml::table doc = toml::parse(*text);
  EXPECT_EQ(doc["version"].value_or(0), 3);
  auto rt = doc["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"];
  EXPECT_TRUE(rt["gvisor"]);
  EXPECT_EQ(rt.as_table()->size(), 1u);
}

TEST(ContainerdConfig, ReRunFromItsOwnDumpIsIdentical) {
  auto first = BuildDropIn(Schema::kV2, kDump, Entry());
  ASSERT_TRUE(first.ok());
  // containerd's dump after the install: the drop-in's CRI table, our runtime with containerd's defaults
  // added.
  toml::table dump = toml::parse(kDump);
  toml::table dropin = toml::parse(*first);
  dump["plugins"].as_table()->insert_or_assign("io.containerd.grpc.v1.cri",
                                               *dropin["plugins"]["io.containerd.grpc.v1.cri"].as_table());
  dump["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["gvisor"].as_table()->insert(
      "runtime_root", "");
  std::ostringstream s;
  s << dump;
  auto second = BuildDropIn(Schema::kV2, s.str(), Entry());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*first, *second);
}

TEST(ContainerdConfig, RefusesSomeoneElsesHandler) {
  std::string dump = std::string(kDump) + R"(
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.gvisor]
  runtime_type = "io.containerd.runsc.v1"
)";
  auto text = BuildDropIn(Schema::kV2, dump, Entry());
  EXPECT_EQ(text.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(text.status().message(), HasSubstr("io.containerd.runsc.v1"));
}

TEST(ContainerdConfig, NoCriPluginIsAnError) {
  auto text = BuildDropIn(
      Schema::kV2, "version = 2\n[plugins.\"io.containerd.internal.v1.opt\"]\npath = \"/x\"\n", Entry());
  EXPECT_THAT(text.status().message(), HasSubstr("CRI plugin disabled"));
}

TEST(ContainerdConfig, ImportsCoverExactGlobAndRelative) {
  RootConfig r;
  r.exists = true;
  r.imports = {"/etc/containerd/conf.d/*.toml"};
  EXPECT_TRUE(ImportsCover(r, "/etc/containerd", "/etc/containerd/conf.d/gvshim-gvisor.toml"));
  EXPECT_FALSE(ImportsCover(r, "/etc/containerd", "/etc/containerd/gvshim/cri-gvisor.toml"));
  r.imports = {"gvshim/cri-gvisor.toml"};
  EXPECT_TRUE(ImportsCover(r, "/etc/containerd", "/etc/containerd/gvshim/cri-gvisor.toml"));
}

TEST(ContainerdConfig, AddAndRemoveImport) {
  const std::string root = "version = 2\nimports = [\"/etc/a.toml\"]\n[grpc]\naddress = \"/run/c.sock\"\n";
  auto rc = ParseRootConfig(root, true, "config.toml");
  ASSERT_TRUE(rc.ok());
  EXPECT_EQ(rc->version, 2);
  auto added = AddImport(root, *rc, Schema::kV2, "/etc/containerd/gvshim/cri-gvisor.toml");
  ASSERT_TRUE(added.ok());
  toml::table a = toml::parse(*added);
  ASSERT_EQ(a["imports"].as_array()->size(), 2u);
  EXPECT_EQ(a["imports"][1].value_or(""), std::string("/etc/containerd/gvshim/cri-gvisor.toml"));
  EXPECT_EQ(a["grpc"]["address"].value_or(""), std::string("/run/c.sock"));
  auto removed = RemoveImport(*added, "/etc/containerd/gvshim/cri-gvisor.toml");
  ASSERT_TRUE(removed.ok());
  toml::table r = toml::parse(*removed);
  EXPECT_EQ(r["imports"].as_array()->size(), 1u);
  // No root config: one is made with the version containerd would otherwise assume for our drop-in.
  auto made = AddImport("", RootConfig{}, Schema::kV2, "/x.toml");
  ASSERT_TRUE(made.ok());
  EXPECT_EQ(toml::parse(*made)["version"].value_or(0), 2);
}

TEST(ContainerdConfig, CheckOnlyRuntimeAdded) {
  auto dropin = BuildDropIn(Schema::kV2, kDump, Entry());
  ASSERT_TRUE(dropin.ok());
  toml::table after = toml::parse(kDump);
  toml::table d = toml::parse(*dropin);
  after["plugins"].as_table()->insert_or_assign("io.containerd.grpc.v1.cri",
                                                *d["plugins"]["io.containerd.grpc.v1.cri"].as_table());
  after.insert_or_assign("imports", toml::array{"/etc/containerd/config.toml", "/x.toml"});
  std::ostringstream s;
  s << after;
  EXPECT_TRUE(CheckOnlyRuntimeAdded(Schema::kV2, kDump, s.str(), Entry()).ok());
  // Any other change is named.
  after["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["runc"]["options"]
      .as_table()
      ->insert_or_assign("SystemdCgroup", false);
  std::ostringstream s2;
  s2 << after;
  auto st = CheckOnlyRuntimeAdded(Schema::kV2, kDump, s2.str(), Entry());
  EXPECT_THAT(st.message(), HasSubstr("runtimes.runc.options.SystemdCgroup"));
  // And a merged config without our runtime (e.g. a later import replaced the CRI table) is refused.
  EXPECT_THAT(CheckOnlyRuntimeAdded(Schema::kV2, kDump, kDump, Entry()).message(),
              HasSubstr("does not register"));
}

}  // namespace
}  // namespace gvshim::node
