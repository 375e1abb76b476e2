// `gvshim node COMMAND`'s command line (CLI11, shim/cli): the argument lists the chart and
// tests/e2e/test_node_installer.sh pass, the canary's command after `--`, per-command flags, and the errors
// that name the bad flag.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <optional>
#include <sstream>

#include "shim/cli/cli.h"
#include "shim/node/node_main.h"

namespace gvshim::node {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Result {
  std::optional<int> rc;
  std::string out, err;
};

// Sets or unsets an environment variable for one test.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = ::getenv(name)) old_ = old;
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

Result ParseNode(std::vector<std::string> args, NodeFlags& f) {
  CLI::App app("test", "gvshim");
  cli::UseCommonSettings(app);
  AddNodeCommand(app, f);
  args.insert(args.begin(), "node");
  std::ostringstream out, err;
  std::optional<int> rc = cli::Parse(app, args, out, err);
  return {rc, out.str(), err.str()};
}

// tests/e2e/test_node_installer.sh's ARGS, given to install, status and uninstall.
std::vector<std::string> E2eArgs(const std::string& command) {
  return {command,
          "--host-root=/",
          "--install-dir=/hr/opt/gvshim/bin",
          "--profiles-dir=/hr/opt/gvshim/seccomp-profiles",
          "--state-dir=/hr/opt/gvshim/state",
          "--containerd-config=/d/config.toml",
          "--gvshim-config=/hr/etc/containerd/gvshim.toml",
          "--cri-socket=/d/containerd.sock",
          "--shim-link-dir=/hr/usr/local/bin",
          "--restart-command=bash /d/restart.sh",
          "--node-config=/d/gvshim.json",
          "--payload=/d/payload",
          "--canary-image=gvshim-node:test",
          "--canary-host-network",
          "--node-name=node-a",
          "--handler=gvisor",
          "--node-label=e2e.gvshim.dev/gvisor=ready"};
}

TEST(NodeFlagsTest, TheE2eInstallerArguments) {
  for (const char* command : {"install", "status", "uninstall"}) {
    NodeFlags f;
    Result r = ParseNode(E2eArgs(command), f);
    ASSERT_EQ(r.rc, std::nullopt) << command << ": " << r.err;
    EXPECT_EQ(f.command, command);
    auto o = InstallerFromFlags(f);
    ASSERT_TRUE(o.ok()) << o.status();
    EXPECT_EQ(o->host_root, "/");
    EXPECT_EQ(o->install_dir, "/hr/opt/gvshim/bin");
    EXPECT_EQ(o->profiles_dir, "/hr/opt/gvshim/seccomp-profiles");
    EXPECT_EQ(o->state_dir, "/hr/opt/gvshim/state");
    EXPECT_EQ(o->containerd_config, "/d/config.toml");
    EXPECT_EQ(o->gvshim_config, "/hr/etc/containerd/gvshim.toml");
    EXPECT_EQ(o->cri_socket, "/d/containerd.sock");
    EXPECT_EQ(o->shim_link_dir, "/hr/usr/local/bin");
    EXPECT_THAT(o->restart_command, ElementsAre("bash", "/d/restart.sh"));
    EXPECT_EQ(o->node_config_json, "/d/gvshim.json");
    EXPECT_EQ(o->payload_dir, "/d/payload");
    EXPECT_EQ(o->canary_image, "gvshim-node:test");
    EXPECT_TRUE(o->canary_host_network);
    EXPECT_EQ(o->node_name, "node-a");
    EXPECT_EQ(o->handler, "gvisor");
    EXPECT_EQ(o->label_key, "e2e.gvshim.dev/gvisor");
    EXPECT_EQ(o->label_value, "ready");
    EXPECT_FALSE(f.no_kube);
  }
}

// charts/gvshim/templates/node/daemonset.yaml: `gvshim node run` with the node and namespace from the
// environment, and a --host-exec value that holds spaces and a `--` of its own.
TEST(NodeFlagsTest, TheChartsRunArguments) {
  ScopedEnv node("NODE_NAME", "worker-1");
  ScopedEnv ns("POD_NAMESPACE", "gvshim-system");
  NodeFlags f;
  Result r = ParseNode(
      {"run", "--host-root=/host", "--install-dir=/opt/gvshim/bin",
       "--containerd-config=/etc/containerd/config.toml", "--cri-socket=/run/containerd/containerd.sock",
       "--containerd-binary=containerd", "--host-exec=nsenter --target 1 --mount --",
       "--restart-command=systemctl restart containerd", "--handler=gvisor",
       "--node-label=gvshim.dev/gvisor=ready", "--node-config=/etc/gvshim-node/gvshim.json",
       "--payload=/opt/gvshim-node/payload", "--canary-image=gvshim-node:1", "--canary-timeout=300",
       "--ready-file=/run/gvshim-node/ready", "--daemonset=gvshim-node", "--log-level=debug"},
      f);
  ASSERT_EQ(r.rc, std::nullopt) << r.err;
  EXPECT_EQ(f.command, "run");
  EXPECT_EQ(f.host_exec, "nsenter --target 1 --mount --");
  EXPECT_EQ(f.ready_file, "/run/gvshim-node/ready");
  EXPECT_EQ(f.daemonset, "gvshim-node");
  EXPECT_EQ(f.ns, "gvshim-system");
  EXPECT_EQ(f.log_level, "debug");
  auto o = InstallerFromFlags(f);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->node_name, "worker-1");
  EXPECT_EQ(o->canary_timeout, absl::Seconds(300));
  EXPECT_THAT(o->restart_command, ElementsAre("systemctl", "restart", "containerd"));
  EXPECT_EQ(o->shim_link_dir, InstallerOptions().shim_link_dir);
}

// The four installer commands share NodeFlags: the environment must not reach it through a command that was
// not given (CLI11 applies environment fallbacks of every command that has no parse-complete callback).
TEST(NodeFlagsTest, FlagsWinOverTheEnvironment) {
  ScopedEnv node("NODE_NAME", "from-env");
  ScopedEnv ns("POD_NAMESPACE", "env-ns");
  for (const char* command : {"install", "uninstall", "status", "run"}) {
    NodeFlags f;
    Result r = ParseNode({command, "--node-name", "from-flag", "--no-kube"}, f);
    ASSERT_EQ(r.rc, std::nullopt) << r.err;
    EXPECT_EQ(f.installer.node_name, "from-flag") << command;
    EXPECT_TRUE(f.no_kube);
  }
  for (const char* command : {"run", "retire"}) {
    NodeFlags f;
    Result r = ParseNode({command, "--namespace", "flag-ns"}, f);
    ASSERT_EQ(r.rc, std::nullopt) << r.err;
    EXPECT_EQ(f.ns, "flag-ns") << command;
  }
}

TEST(NodeFlagsTest, DefaultsAreTheInstallersAndTheEnvironmentIsOptional) {
  ScopedEnv node("NODE_NAME", nullptr);
  NodeFlags f;
  Result r = ParseNode({"status", "--no-kube"}, f);
  ASSERT_EQ(r.rc, std::nullopt) << r.err;
  auto o = InstallerFromFlags(f);
  ASSERT_TRUE(o.ok()) << o.status();
  InstallerOptions d;
  EXPECT_EQ(o->host_root, d.host_root);
  EXPECT_EQ(o->install_dir, d.install_dir);
  EXPECT_EQ(o->cri_socket, d.cri_socket);
  EXPECT_EQ(o->handler, d.handler);
  EXPECT_EQ(o->label_key, d.label_key);
  EXPECT_EQ(o->canary_timeout, d.canary_timeout);
  EXPECT_EQ(o->node_name, "");
  EXPECT_TRUE(o->restart_command.empty());
  EXPECT_EQ(f.log_level, "info");
}

// charts/gvshim/templates/node/retire-hook.yaml.
TEST(NodeFlagsTest, TheChartsRetireArguments) {
  ScopedEnv ns("POD_NAMESPACE", "gvshim-system");
  NodeFlags f;
  Result r = ParseNode({"retire", "--daemonset=gvshim-node", "--timeout=270"}, f);
  ASSERT_EQ(r.rc, std::nullopt) << r.err;
  EXPECT_EQ(f.command, "retire");
  EXPECT_EQ(f.daemonset, "gvshim-node");
  EXPECT_EQ(f.ns, "gvshim-system");
  EXPECT_EQ(f.retire_timeout_s, 270u);
}

// tests/e2e/test_node_installer.sh's replay of the chart's helm test pods: everything after `--` is the pod's
// command, even words that look like this command's flags or name another command.
TEST(NodeFlagsTest, CanaryCommandAfterDoubleDash) {
  NodeFlags f;
  Result r = ParseNode({"canary", "--cri-socket=/d/containerd.sock", "--handler=runc", "--image=test:1",
                        "--host-network", "--log-dir=/d/canary-logs", "--name=t1-runc", "--namespace=default",
                        "--", "/bin/sh", "-c", "echo --image=other; exit 3", "--timeout=1", "install"},
                       f);
  ASSERT_EQ(r.rc, std::nullopt) << r.err;
  EXPECT_EQ(f.command, "canary");
  EXPECT_THAT(f.canary_command,
              ElementsAre("/bin/sh", "-c", "echo --image=other; exit 3", "--timeout=1", "install"));
  EXPECT_EQ(f.canary.image, "test:1");
  EXPECT_EQ(f.canary.handler, "runc");
  EXPECT_EQ(f.canary.name, "t1-runc");
  EXPECT_EQ(f.canary.ns, "default");
  EXPECT_TRUE(f.canary.host_network);
  EXPECT_EQ(f.canary.log_dir, "/d/canary-logs");
  EXPECT_EQ(f.canary_cri_socket, "/d/containerd.sock");
  EXPECT_EQ(f.canary_pod_timeout_s, 120u);
  EXPECT_EQ(f.canary_host_root, "/");
}

// `--flag=` is an empty value, as before CLI11 (`--shim-link-dir=`: no link): it must not take the next word.
TEST(NodeFlagsTest, AnEmptyValueAfterTheEqualsSign) {
  NodeFlags f;
  Result r = ParseNode({"install", "--shim-link-dir=", "--no-kube", "--restart-command="}, f);
  ASSERT_EQ(r.rc, std::nullopt) << r.err;
  EXPECT_EQ(f.installer.shim_link_dir, "");
  EXPECT_TRUE(f.no_kube);
  EXPECT_EQ(f.restart_command, "");
  NodeFlags c;
  r = ParseNode({"canary", "--image=i", "--", "env", "--x="}, c);
  ASSERT_EQ(r.rc, std::nullopt) << r.err;
  EXPECT_THAT(c.canary_command, ElementsAre("env", "--x="));
  NodeFlags t;
  r = ParseNode({"retire", "--timeout=", "--daemonset=d"}, t);
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, HasSubstr("--timeout"));
}

TEST(NodeFlagsTest, CanaryNeedsAnImageAndACommand) {
  NodeFlags a, b, c;
  Result r = ParseNode({"canary", "--image=i"}, a);
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, HasSubstr("CMD"));
  r = ParseNode({"canary", "--", "true"}, b);
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, HasSubstr("--image"));
  r = ParseNode({"canary", "--image=", "--", "true"}, c);
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, HasSubstr("--image"));
}

TEST(NodeFlagsTest, UnknownFlagIsNamed) {
  NodeFlags f;
  Result r = ParseNode({"install", "--no-kube", "--bogus=1"}, f);
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, HasSubstr("gvshim node install: "));
  EXPECT_THAT(r.err, HasSubstr("--bogus"));
}

TEST(NodeFlagsTest, EachCommandTakesOnlyItsOwnFlags) {
  NodeFlags a, b, c;
  Result r = ParseNode({"retire", "--daemonset=d", "--canary-image=x"}, a);
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, HasSubstr("--canary-image"));
  r = ParseNode({"install", "--ready-file=/r"}, b);  // run's
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, HasSubstr("--ready-file"));
  r = ParseNode({"retire", "--no-kube"}, c);  // retire needs the API
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, HasSubstr("--no-kube"));
}

TEST(NodeFlagsTest, MissingOrBadValuesAreNamed) {
  struct Case {
    std::vector<std::string> args;
    std::string names;
  };
  for (const Case& c :
       std::vector<Case>{{{"install", "--install-dir"}, "--install-dir"},
                         {{"run", "--no-kube", "--daemonset"}, "--daemonset"},
                         {{"retire", "--timeout=soon"}, "--timeout"},
                         {{"retire", "--timeout=0"}, "--timeout"},
                         {{"canary", "--image=i", "--timeout", "x", "--", "true"}, "--timeout"}}) {
    NodeFlags f;
    Result r = ParseNode(c.args, f);
    EXPECT_EQ(r.rc, 2) << c.names;
    EXPECT_THAT(r.err, HasSubstr(c.names));
  }
}

TEST(NodeFlagsTest, ACommandIsRequired) {
  NodeFlags a, b;
  Result r = ParseNode({}, a);
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, HasSubstr("gvshim node: "));
  r = ParseNode({"reinstall"}, b);
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, HasSubstr("reinstall"));
}

// Values CLI11 parses but the installer refuses: the same messages (and exit code 1) as before CLI11.
TEST(NodeFlagsTest, InstallerChecksTheValues) {
  struct Case {
    std::string flag;
    std::string message;
  };
  for (const Case& c :
       std::vector<Case>{{"--install-dir=opt/gvshim", "--install-dir must be an absolute host path"},
                         {"--cri-socket=", "--cri-socket must be an absolute host path"},
                         {"--node-label=ready", "--node-label must be KEY=VALUE"},
                         {"--node-label==ready", "--node-label must be KEY=VALUE"},
                         {"--canary-timeout=0", "--canary-timeout must be a number of seconds"},
                         {"--canary-timeout=2m", "--canary-timeout must be a number of seconds"},
                         {"--canary-timeout=", "--canary-timeout must be a number of seconds"}}) {
    NodeFlags f;
    Result r = ParseNode({"install", "--no-kube", c.flag}, f);
    ASSERT_EQ(r.rc, std::nullopt) << r.err;
    auto o = InstallerFromFlags(f);
    ASSERT_FALSE(o.ok()) << c.flag;
    EXPECT_EQ(o.status().message(), c.message);
  }
}

TEST(NodeFlagsTest, HelpForEachCommand) {
  for (const char* command : {"install", "uninstall", "status", "run", "retire", "canary"}) {
    NodeFlags f;
    Result r = ParseNode({command, "--help"}, f);
    EXPECT_EQ(r.rc, 0) << command;
    EXPECT_THAT(r.out, HasSubstr(std::string("gvshim node ") + command)) << command;
    EXPECT_THAT(r.out, HasSubstr("--log-level")) << command;
  }
}

}  // namespace
}  // namespace gvshim::node
