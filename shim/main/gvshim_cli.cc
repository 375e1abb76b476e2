// gvshim: the command-line tool of the project.
//   gvshim version
//   gvshim profile check FILE...   validate seccomp profiles with libseccomp (exit 1 if any is invalid)
//   gvshim exec ...                run a snippet through a pod's Execute service
//   gvshim runsc-id [--root R | --namespace NS [--config F]] ID...   runsc's id of a container (runsc::ContainerId)
//   gvshim gateway ...             RAGFlow's executor-manager HTTP API on top of the node's Execute services
//   gvshim node install|uninstall|status|run|retire|canary   the Kubernetes node installer (shim/node)
//   gvshim execute-server          (started by the shim) the Execute server of one pod; see
//   shim/execute/common/wire.h
#include <cstdio>
#include <string>
#include <vector>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "shim/config/config.h"
#include "shim/execute/server/server_main.h"
#include "shim/gateway/gateway_main.h"
#include "shim/main/exec_client.h"
#include "shim/node/node_main.h"
#include "shim/runsc/runsc.h"
#include "shim/seccomp/profile.h"

namespace {

constexpr char kVersion[] = "0.1.0";

int Usage() {
  std::fprintf(
      stderr,
      "usage:\n"
      "  gvshim version\n"
      "  gvshim profile check FILE...   validate seccomp JSON profiles (OCI/Docker format)\n"
      "  gvshim exec --pod NS/NAME | --id ID [--lang python|javascript] (-c CODE | FILE) [--arg k=v ...]\n"
      "                                  run a snippet in a pod's sandbox (gvshim exec --help)\n"
      "  gvshim runsc-id (--root RUNSC_ROOT | --namespace NS [--config FILE]) ID...\n"
      "                                  the id runsc knows a container by (runsc list/state/ps/events)\n"
      "  gvshim node install|uninstall|status|run|retire|canary ...   the Kubernetes node installer\n"
      "  gvshim gateway [--listen HOST:PORT] [--dir DISCOVERY_DIR] [--token-file FILE] [options]\n"
      "                                  RAGFlow's sandbox executor-manager API on this node's pool pods\n");
  return 2;
}

int ProfileCheck(const std::vector<std::string>& files) {
  if (files.empty()) return Usage();
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

// The runsc root is the shim's: [runsc] root of the config, plus "/<containerd namespace>".
int RunscId(const std::vector<std::string>& args) {
  std::string root, ns, config_path;
  std::vector<std::string> ids;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if ((a == "--root" || a == "--namespace" || a == "-n" || a == "--config") && i + 1 < args.size()) {
      (a == "--root" ? root : a == "--config" ? config_path : ns) = args[++i];
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "gvshim runsc-id: unknown option %s\n", a.c_str());
      return 2;
    } else {
      ids.push_back(a);
    }
  }
  if (ids.empty() || root.empty() == ns.empty()) return Usage();
  if (root.empty()) {
    if (config_path.empty()) {
      const char* env = std::getenv("GVSHIM_CONFIG");
      config_path = env != nullptr && *env != '\0' ? env : gvshim::config::kDefaultPath;
    }
    auto cfg = gvshim::config::Load(config_path, /*explicit_path=*/false);
    if (!cfg.ok()) {
      std::fprintf(stderr, "gvshim runsc-id: %s\n", std::string(cfg.status().message()).c_str());
      return 1;
    }
    root = absl::StrCat(cfg->runsc.root, "/", ns);
  }
  for (const std::string& id : ids) std::printf("%s\n", gvshim::runsc::ContainerId(root, id).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return Usage();
  if (args[0] == "version" || args[0] == "--version" || args[0] == "-v") {
    std::printf("gvshim %s\n", kVersion);
    return 0;
  }
  if (args[0] == "profile" && args.size() >= 2 && args[1] == "check") {
    return ProfileCheck({args.begin() + 2, args.end()});
  }
  if (args[0] == "runsc-id") return RunscId({args.begin() + 1, args.end()});
  if (args[0] == "node") return gvshim::node::NodeMain({args.begin() + 1, args.end()});
  if (args[0] == "exec") return gvshim::cli::ExecMain({args.begin() + 1, args.end()});
  if (args[0] == "gateway") return gvshim::gateway::GatewayMain({args.begin() + 1, args.end()});
  if (args[0] == "execute-server" && args.size() == 1) return gvshim::execute::ExecuteServerMain(0);
  return Usage();
}
