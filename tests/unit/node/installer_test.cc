// The installer's steps and rollbacks against a host root in a temp dir, with containerd (version, config
// dump, restart), the CRI and the Kubernetes API faked. The fake `config dump` merges the drop-in into the
// root as containerd 1.6 does (whole CRI table replaced) so that the installer's own checks see realistic
// dumps; the real containerd is exercised by tests/e2e/test_node_installer.sh.
#include "shim/node/installer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <toml++/toml.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace gvshim::node {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kBaseDump[] = R"(version = 2
root = "/var/lib/containerd"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "pause:3.6"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
)";
constexpr char kRootConfig[] =
    "# the node's own config, with a comment the installer must give back\nversion = 2\n"
    "[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"pause:3.6\"\n";

std::string Slurp(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
void Spit(const std::string& p, const std::string& s) {
  fs::create_directories(fs::path(p).parent_path());
  std::ofstream(p) << s;
}

class FakeHost : public Host {
 public:
  explicit FakeHost(std::string root) : root_(std::move(root)) {}
  absl::StatusOr<CommandResult> Run(const std::vector<std::string>& argv, absl::Duration) override {
    calls.push_back(argv);
    CommandResult r;
    if (argv.size() == 2 && argv[1] == "--version") {
      r.out = "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1\n";
    } else if (argv.size() == 5 && argv[3] == "config" && argv[4] == "dump") {
      return Dump(argv[2]);
    } else if (argv == restart_argv) {
      ++restarts;
      if (fail_restart) r.exit_code = 1;
    } else {
      r.exit_code = 127;
      r.err = "unknown command";
    }
    return r;
  }

  // containerd 1.6: each import replaces whole plugin tables.
  CommandResult Dump(const std::string& config) {
    CommandResult r;
    toml::table out = toml::parse(kBaseDump);
    toml::array imports{config};
    toml::table root;
    try {
      root = toml::parse(Slurp(root_ + config));
    } catch (const toml::parse_error&) {
      return {1, "", "failed to load TOML: root"};
    }
    if (auto* im = root["imports"].as_array()) {
      for (auto& e : *im) {
        std::string path = *e.value<std::string>();
        std::string dropin = Slurp(root_ + path);
        if (absl::StrContains(dropin, "BROKEN") || break_every_dropin) {
          return {1, "", absl::StrCat("containerd: failed to load TOML from ", path, ": invalid value")};
        }
        toml::table d;
        try {
          d = toml::parse(dropin);
        } catch (const toml::parse_error&) {
          return {1, "", "failed to load TOML: drop-in"};
        }
        if (auto* cri = d["plugins"]["io.containerd.grpc.v1.cri"].as_table()) {
          out["plugins"].as_table()->insert_or_assign("io.containerd.grpc.v1.cri", *cri);
        }
        imports.push_back(path);
      }
    }
    out.insert_or_assign("imports", imports);
    std::ostringstream s;
    s << out;
    r.out = s.str();
    return r;
  }

  std::string root_;
  std::vector<std::vector<std::string>> calls;
  std::vector<std::string> restart_argv = {"restart-containerd"};
  int restarts = 0;
  bool fail_restart = false;
  bool break_every_dropin = false;
};

class FakeCri : public Cri {
 public:
  absl::Status WaitReady(absl::Duration) override { return absl::OkStatus(); }
  absl::StatusOr<PodResult> RunPod(const PodRun& pod) override {
    pods.push_back(pod);
    PodResult r;
    r.exit_code = exit_code;
    r.reason = exit_code == 0 ? "Completed" : "Error";
    return r;
  }
  int exit_code = 0;
  std::vector<PodRun> pods;
};

class FakeKube : public KubeApi {
 public:
  absl::StatusOr<std::optional<nlohmann::json>> Get(const std::string& path) override {
    if (path != NodePath("n1")) return std::optional<nlohmann::json>();
    return std::optional<nlohmann::json>(nlohmann::json{{"metadata", {{"name", "n1"}, {"labels", labels}}}});
  }
  absl::Status MergePatch(const std::string& path, const nlohmann::json& patch) override {
    patches.push_back(patch);
    for (auto& [k, v] : patch["metadata"]["labels"].items()) {
      if (v.is_null()) {
        labels.erase(k);
      } else {
        labels[k] = v;
      }
    }
    return absl::OkStatus();
  }
  nlohmann::json labels = nlohmann::json::object();
  std::vector<nlohmann::json> patches;
};

class InstallerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gvshim-node-test.XXXXXX";
    dir_ = mkdtemp(tmpl);
    host_root_ = dir_ + "/host";
    payload_ = dir_ + "/payload";
    for (const char* b : {"containerd-shim-gvisor-v1", "gvshim", "runsc"})
      Spit(payload_ + "/" + b, std::string(b) + "-v1");
    Spit(payload_ + "/seccomp-profiles/default.json", "{}");
    Spit(payload_ + "/gvshim-helpers/gvshim-launch", "launch");
    Spit(payload_ + "/gvshim-helpers/_gvshim_isolate.abi3.so", "so");
    Spit(payload_ + "/gvshim-helpers/gvshim-wrap", "wrap");
    Spit(host_root_ + "/etc/containerd/config.toml", kRootConfig);
    host_ = std::make_unique<FakeHost>(host_root_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  InstallerOptions Opts() {
    InstallerOptions o;
    o.host_root = host_root_;
    o.payload_dir = payload_;
    o.restart_command = {"restart-containerd"};
    o.node_name = "n1";
    o.canary_image = "localhost/gvshim-node:test";
    return o;
  }
  Installer Make() { return Installer(Opts(), *host_, cri_, &kube_); }
  std::string Host(const std::string& p) { return host_root_ + p; }

  std::string dir_, host_root_, payload_;
  std::unique_ptr<FakeHost> host_;
  FakeCri cri_;
  FakeKube kube_;
};

TEST_F(InstallerTest, InstallsRestartsOnceVerifiesAndLabels) {
  Installer inst = Make();
  auto rep = inst.Install();
  ASSERT_TRUE(rep.ok()) << rep.status();
  EXPECT_TRUE(rep->config_changed);
  EXPECT_TRUE(rep->restarted);
  EXPECT_TRUE(rep->labelled);
  EXPECT_EQ(host_->restarts, 1);
  ASSERT_EQ(cri_.pods.size(), 1u);
  EXPECT_EQ(cri_.pods[0].handler, "gvisor");
  EXPECT_EQ(kube_.labels["gvshim.dev/gvisor"], "ready");
  // The label patch names that one label and nothing else.
  EXPECT_EQ(kube_.patches[0], (nlohmann::json{{"metadata", {{"labels", {{"gvshim.dev/gvisor", "ready"}}}}}}));
  EXPECT_EQ(Slurp(Host("/opt/gvshim/bin/runsc")), "runsc-v1");
  EXPECT_EQ(fs::status(Host("/opt/gvshim/bin/runsc")).permissions() & fs::perms::owner_exec,
            fs::perms::owner_exec);
  EXPECT_TRUE(fs::exists(Host("/opt/gvshim/seccomp-profiles/default.json")));
  EXPECT_EQ(Slurp(Host("/opt/gvshim/bin/gvshim-helpers/gvshim-launch")), "launch");
  EXPECT_EQ(Slurp(Host("/opt/gvshim/bin/gvshim-helpers/gvshim-wrap")), "wrap");
  EXPECT_THAT(Slurp(Host("/etc/containerd/gvshim.toml")), HasSubstr("/opt/gvshim/bin/runsc"));
  EXPECT_THAT(Slurp(Host("/etc/containerd/config.toml")),
              HasSubstr("/etc/containerd/gvshim/cri-gvisor.toml"));
  EXPECT_EQ(Slurp(Host("/opt/gvshim/state/config.toml.orig")), kRootConfig);
  EXPECT_EQ(fs::read_symlink(Host("/usr/local/bin/containerd-shim-gvisor-v1")),
            "/opt/gvshim/bin/containerd-shim-gvisor-v1");
  auto st = inst.Status();
  EXPECT_TRUE(st.ok()) << st.status();
}

TEST_F(InstallerTest, ReRunWithTheSameFilesChangesNothing) {
  ASSERT_TRUE(Make().Install().ok());
  auto mtime = fs::last_write_time(Host("/opt/gvshim/bin/runsc"));
  std::string root = Slurp(Host("/etc/containerd/config.toml"));
  std::string dropin = Slurp(Host("/etc/containerd/gvshim/cri-gvisor.toml"));
  auto rep = Make().Install();
  ASSERT_TRUE(rep.ok()) << rep.status();
  EXPECT_TRUE(rep->written.empty());
  EXPECT_FALSE(rep->config_changed);
  EXPECT_FALSE(rep->restarted);
  EXPECT_FALSE(rep->canary_ran);
  EXPECT_EQ(host_->restarts, 1);
  EXPECT_EQ(fs::last_write_time(Host("/opt/gvshim/bin/runsc")), mtime);
  EXPECT_EQ(Slurp(Host("/etc/containerd/config.toml")), root);
  EXPECT_EQ(Slurp(Host("/etc/containerd/gvshim/cri-gvisor.toml")), dropin);
  // A new runsc is copied (and verified by a canary), without touching containerd's config.
  Spit(payload_ + "/runsc", "runsc-v2");
  rep = Make().Install();
  ASSERT_TRUE(rep.ok()) << rep.status();
  EXPECT_EQ(rep->written, std::vector<std::string>{"/opt/gvshim/bin/runsc"});
  EXPECT_FALSE(rep->restarted);
  EXPECT_TRUE(rep->canary_ran);
}

TEST_F(InstallerTest, ConfigContainerdRefusesIsRolledBackWithoutRestart) {
  host_->break_every_dropin = true;
  auto rep = Make().Install();
  ASSERT_FALSE(rep.ok());
  EXPECT_THAT(rep.status().message(), HasSubstr("invalid value"));
  EXPECT_THAT(rep.status().message(), HasSubstr("original containerd config restored"));
  EXPECT_EQ(host_->restarts, 0);
  EXPECT_TRUE(cri_.pods.empty());
  EXPECT_TRUE(kube_.patches.empty());
  EXPECT_EQ(Slurp(Host("/etc/containerd/config.toml")), kRootConfig);
  EXPECT_FALSE(fs::exists(Host("/etc/containerd/gvshim/cri-gvisor.toml")));
  EXPECT_FALSE(fs::exists(Host("/opt/gvshim/bin/runsc")));
  EXPECT_FALSE(fs::exists(Host("/etc/containerd/gvshim.toml")));
}

TEST_F(InstallerTest, FailedCanaryRestoresConfigAndDoesNotLabel) {
  cri_.exit_code = 1;
  auto rep = Make().Install();
  ASSERT_FALSE(rep.ok());
  EXPECT_THAT(rep.status().message(), HasSubstr("canary pod under handler \"gvisor\" exited 1"));
  EXPECT_THAT(rep.status().message(), HasSubstr("not restarted again"));
  EXPECT_EQ(host_->restarts, 1);
  EXPECT_TRUE(kube_.patches.empty());
  EXPECT_EQ(Slurp(Host("/etc/containerd/config.toml")), kRootConfig);
  EXPECT_FALSE(fs::exists(Host("/etc/containerd/gvshim/cri-gvisor.toml")));
}

TEST_F(InstallerTest, FailedRestartRestoresConfig) {
  host_->fail_restart = true;
  auto rep = Make().Install();
  ASSERT_FALSE(rep.ok());
  EXPECT_THAT(rep.status().message(), HasSubstr("restart containerd"));
  EXPECT_EQ(Slurp(Host("/etc/containerd/config.toml")), kRootConfig);
  EXPECT_TRUE(kube_.patches.empty());
}

TEST_F(InstallerTest, UninstallRestoresTheOriginalExactly) {
  ASSERT_TRUE(Make().Install().ok());
  ASSERT_TRUE(Make().Uninstall().ok());
  EXPECT_EQ(Slurp(Host("/etc/containerd/config.toml")), kRootConfig);
  EXPECT_FALSE(fs::exists(Host("/etc/containerd/gvshim/cri-gvisor.toml")));
  EXPECT_FALSE(fs::exists(Host("/opt/gvshim")));
  EXPECT_FALSE(fs::exists(Host("/etc/containerd/gvshim.toml")));
  EXPECT_FALSE(fs::exists(fs::symlink_status(Host("/usr/local/bin/containerd-shim-gvisor-v1"))));
  EXPECT_FALSE(fs::exists(Host("/usr")));  // made by the install, so removed again
  EXPECT_FALSE(kube_.labels.contains("gvshim.dev/gvisor"));
  EXPECT_EQ(host_->restarts, 2);
  // The restart is the last host command, after the restored config was validated.
  EXPECT_EQ(host_->calls.back(), host_->restart_argv);
  EXPECT_EQ(host_->calls[host_->calls.size() - 2][4], "dump");
  EXPECT_EQ(Make().Status().status().code(), absl::StatusCode::kNotFound);
}

TEST_F(InstallerTest, NoRootConfigIsCreatedAndRemoved) {
  fs::remove(Host("/etc/containerd/config.toml"));
  ASSERT_TRUE(Make().Install().ok());
  EXPECT_THAT(Slurp(Host("/etc/containerd/config.toml")), HasSubstr("version = 2"));
  ASSERT_TRUE(Make().Uninstall().ok());
  EXPECT_FALSE(fs::exists(Host("/etc/containerd/config.toml")));
}

TEST_F(InstallerTest, RootEditedAfterInstallKeepsTheEdit) {
  ASSERT_TRUE(Make().Install().ok());
  std::string edited = Slurp(Host("/etc/containerd/config.toml")) + "\n[debug]\nlevel = \"debug\"\n";
  Spit(Host("/etc/containerd/config.toml"), edited);
  ASSERT_TRUE(Make().Uninstall().ok());
  std::string now = Slurp(Host("/etc/containerd/config.toml"));
  EXPECT_EQ(toml::parse(now)["debug"]["level"].value_or(""), std::string("debug"));
  EXPECT_THAT(now, ::testing::Not(HasSubstr("cri-gvisor.toml")));
}

TEST_F(InstallerTest, SomeoneElsesShimOnThePathIsRefused) {
  Spit(Host("/usr/local/bin/containerd-shim-gvisor-v1"), "another shim");
  auto rep = Make().Install();
  EXPECT_THAT(rep.status().message(), HasSubstr("is not gvshim's symlink"));
  EXPECT_EQ(Slurp(Host("/usr/local/bin/containerd-shim-gvisor-v1")), "another shim");
  EXPECT_FALSE(fs::exists(Host("/opt/gvshim")));
  EXPECT_EQ(host_->restarts, 0);
}

TEST_F(InstallerTest, OutsideAClusterAReRunSkipsTheCanaryToo) {
  InstallerOptions o = Opts();
  o.node_name.clear();
  ASSERT_TRUE(Installer(o, *host_, cri_, nullptr).Install().ok());
  EXPECT_EQ(cri_.pods.size(), 1u);
  auto rep = Installer(o, *host_, cri_, nullptr).Install();
  ASSERT_TRUE(rep.ok()) << rep.status();
  EXPECT_FALSE(rep->canary_ran);
  EXPECT_FALSE(rep->labelled);
  EXPECT_EQ(cri_.pods.size(), 1u);
  EXPECT_TRUE(kube_.patches.empty());
}

TEST_F(InstallerTest, BadNodeConfigChangesNothing) {
  Spit(dir_ + "/gvshim.json", R"({"runsc":{"netwerk":"none"}})");
  InstallerOptions o = Opts();
  o.node_config_json = dir_ + "/gvshim.json";
  Installer inst(o, *host_, cri_, &kube_);
  auto rep = inst.Install();
  EXPECT_THAT(rep.status().message(), HasSubstr("netwerk"));
  EXPECT_FALSE(fs::exists(Host("/opt/gvshim")));
  EXPECT_EQ(Slurp(Host("/etc/containerd/config.toml")), kRootConfig);
  EXPECT_EQ(host_->restarts, 0);
}

}  // namespace
}  // namespace gvshim::node
