// gvshim: the command-line tool of the project. Its command line is parsed by CLI11 (shim/cli/cli.h);
// `gvshim --help` and `gvshim COMMAND --help` describe every command and flag.
//   gvshim version | --version | -v
//   gvshim profile check FILE...   validate seccomp profiles with libseccomp (exit 1 if any is invalid)
//   gvshim exec ...                run a snippet through a pod's Execute service (shim/main/exec_client.h)
//   gvshim runsc-id (--root R | --namespace NS [--config F]) ID...   runsc's id of a container
//   gvshim gateway ...             RAGFlow's executor-manager HTTP API (shim/gateway/gateway_main.h)
//   gvshim node install|uninstall|status|run|retire|canary   the Kubernetes node installer (shim/node)
//   gvshim execute-server          (started by the shim) the Execute server of one pod; see
//   shim/execute/common/wire.h
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "shim/cli/cli.h"
#include "shim/config/config.h"
#include "shim/execute/server/server_main.h"
#include "shim/gateway/gateway_main.h"
#include "shim/main/exec_client.h"
#include "shim/node/node_main.h"
#include "shim/runsc/runsc.h"
#include "shim/seccomp/profile.h"

namespace {

constexpr char kVersion[] = "0.1.0";

int ProfileCheck(const std::vector<std::string>& files) {
  int bad = 0;
  for (const std::string& f : files) {
    auto p = gvshim::seccomp::LoadProfileFile(f);
    if (!p.ok()) {
      std::printf("%s: INVALID: %s\n", f.c_str(), std::string(p.status().message()).c_str());
      ++bad;
      continue;
    }
    const auto& s = p->summary;
    std::string arches = s.architectures.empty() ? "native" : absl::StrJoin(s.architectures, ",");
    std::printf("%s: OK: default %s", f.c_str(), s.default_action.c_str());
    if (s.default_errno != 0) std::printf("(%u)", s.default_errno);
    std::printf(
        ", architectures %s, %d rules: %d allowed, %d denied, %d other syscall names; %d BPF instructions\n",
        arches.c_str(), s.rule_count, s.allowed_syscalls, s.denied_syscalls, s.other_syscalls,
        s.bpf_instructions);
  }
  return bad == 0 ? 0 : 1;
}

struct RunscIdFlags {
  std::string root, ns, config_path;
  std::vector<std::string> ids;
};

// The runsc root is the shim's: [runsc] root of the config, plus "/<containerd namespace>".
int RunscId(RunscIdFlags f) {
  if (f.root.empty()) {
    if (f.config_path.empty()) {
      const char* env = std::getenv("GVSHIM_CONFIG");
      f.config_path = env != nullptr && *env != '\0' ? env : gvshim::config::kDefaultPath;
    }
    auto cfg = gvshim::config::Load(f.config_path, /*explicit_path=*/false);
    if (!cfg.ok()) {
      std::fprintf(stderr, "gvshim runsc-id: %s\n", std::string(cfg.status().message()).c_str());
      return 1;
    }
    f.root = absl::StrCat(cfg->runsc.root, "/", f.ns);
  }
  for (const std::string& id : f.ids) std::printf("%s\n", gvshim::runsc::ContainerId(f.root, id).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("gvshim: the command-line tool of gvshim, the containerd shim that runs pods in gVisor",
               "gvshim");
  gvshim::cli::UseCommonSettings(app);
  // One command per command line: a later word that names a command (an id "node", a file "version") is an
  // argument of the first command, never a second command.
  app.require_subcommand(0, 1);
  app.set_version_flag("-v,--version", absl::StrCat("gvshim ", kVersion), "print the version and exit");

  CLI::App* version = gvshim::cli::AddCommand(app, "version", "print the version");

  CLI::App* profile = gvshim::cli::AddCommand(app, "profile", "seccomp profiles");
  std::vector<std::string> profile_files;
  CLI::App* profile_check = gvshim::cli::AddCommand(
      *profile, "check",
      "validate seccomp JSON profiles (OCI/Docker format) with libseccomp; exit 1 if any is invalid");
  profile_check->add_option("FILE", profile_files, "a profile")->required();
  gvshim::cli::RequireOneSubcommand(*profile);

  gvshim::cli::ExecOptions exec_opts;
  CLI::App* exec = gvshim::cli::AddExecCommand(app, exec_opts);

  RunscIdFlags runsc_id_flags;
  CLI::App* runsc_id = gvshim::cli::AddCommand(
      app, "runsc-id", "the id runsc knows a container by (for runsc list, state, ps, events)");
  runsc_id->footer("Form: gvshim runsc-id (--root RUNSC_ROOT | --namespace NS [--config FILE]) ID...");
  CLI::Option* root = runsc_id->add_option("--root", runsc_id_flags.root, "the runsc root of the containers");
  CLI::Option* ns =
      runsc_id->add_option("-n,--namespace", runsc_id_flags.ns,
                           "the containerd namespace: the root is the config's [runsc] root/NS");
  root->excludes(ns);
  runsc_id->add_option("--config", runsc_id_flags.config_path,
                       "the shim's config, for --namespace (default: $GVSHIM_CONFIG, else " +
                           std::string(gvshim::config::kDefaultPath) + ")");
  runsc_id->add_option("ID", runsc_id_flags.ids, "a container id (containerd's)")->required();
  runsc_id->callback([&runsc_id_flags] {
    if (runsc_id_flags.root.empty() && runsc_id_flags.ns.empty())
      throw CLI::RequiredError("--root or --namespace");
  });

  gvshim::gateway::GatewayFlags gateway_flags;
  CLI::App* gateway = gvshim::gateway::AddGatewayCommand(app, gateway_flags);

  gvshim::node::NodeFlags node_flags;
  CLI::App* node = gvshim::node::AddNodeCommand(app, node_flags);

  // Started by the shim (shim/execute/supervisor), not by people: left out of the help.
  CLI::App* execute_server =
      gvshim::cli::AddCommand(app, "execute-server", "the Execute server of one pod (started by the shim)");
  execute_server->group("");

  // Set last: a subcommand copies its parent's footer when it is added.
  app.footer("Run 'gvshim COMMAND --help' for a command's flags. A bad command line exits with 2.");

  if (auto rc =
          gvshim::cli::Parse(app, std::vector<std::string>(argv + 1, argv + argc), std::cout, std::cerr)) {
    return *rc;
  }
  if (version->parsed()) {
    std::printf("gvshim %s\n", kVersion);
    return 0;
  }
  if (profile_check->parsed()) return ProfileCheck(profile_files);
  if (exec->parsed()) return gvshim::cli::RunExec(exec_opts);
  if (runsc_id->parsed()) return RunscId(runsc_id_flags);
  if (gateway->parsed()) return gvshim::gateway::RunGateway(gateway_flags);
  if (node->parsed()) return gvshim::node::RunNode(node_flags);
  if (execute_server->parsed()) return gvshim::execute::ExecuteServerMain(0);
  std::cerr << app.help() << "gvshim: a command is required\n";
  return gvshim::cli::kUsageExitCode;
}
