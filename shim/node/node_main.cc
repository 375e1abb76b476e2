#include "shim/node/node_main.h"

#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "shim/base/log.h"
#include "shim/base/status.h"
#include "shim/cli/cli.h"
#include "shim/node/files.h"

namespace gvshim::node {
namespace {

std::vector<std::string> Words(const std::string& s) {
  return absl::StrSplit(s, ' ', absl::SkipWhitespace());
}

// The installer's flags (install, uninstall, status, run). Defaults are InstallerOptions'.
void AddInstallerFlags(CLI::App& cmd, NodeFlags& f) {
  InstallerOptions& o = f.installer;
  auto option = [&cmd](const std::string& name, std::string& out, const std::string& help) {
    cmd.add_option(name, out, help)->capture_default_str();
  };
  option("--host-root", o.host_root, "where the host's / is mounted; the paths below are host paths");
  option("--install-dir", o.install_dir, "the binaries (absolute host path)");
  option("--profiles-dir", o.profiles_dir, "the seccomp profiles (absolute host path)");
  option("--state-dir", o.state_dir, "the install record and the root config's original bytes (absolute)");
  option("--containerd-config", o.containerd_config, "containerd's root config (absolute host path)");
  option("--gvshim-config", o.gvshim_config, "the shim's config for this node (absolute host path)");
  option("--shim-link-dir", o.shim_link_dir,
         "a directory on containerd's PATH for a link to the shim; empty: none");
  option("--cri-socket", o.cri_socket, "containerd's socket (absolute host path)");
  option("--containerd-binary", o.containerd_binary, "containerd as the host runs it (config dump, version)");
  option("--payload", o.payload_dir, "the files to install, in this process's filesystem");
  cmd.add_option("--host-exec", f.host_exec, "a command prefix that runs a command on the host")
      ->type_name("'PREFIX'");
  cmd.add_option("--restart-command", f.restart_command,
                 "restarts containerd (default: systemctl restart containerd)")
      ->type_name("'CMD'");
  option("--handler", o.handler, "the CRI runtime handler to register");
  cmd.add_option_function<std::string>(
         "--node-label", [&f](const std::string& v) { f.node_label = v; },
         absl::StrCat("the node label set once gvshim works [", o.label_key, "=", o.label_value, "]"))
      ->type_name("KEY=VALUE");
  cmd.add_option("--node-name", o.node_name, "this node's name (no label without it)")->envname("NODE_NAME");
  cmd.add_option("--node-config", o.node_config_json, "the chart's sandbox.gvisor.config as a JSON file")
      ->type_name("JSON_FILE");
  cmd.add_option("--canary-image", o.canary_image, "the canary pod's image (install)");
  cmd.add_flag("--canary-host-network", o.canary_host_network,
               "the canary pod uses the node's network namespace");
  // Taken as text and checked by InstallerFromFlags, as before CLI11 (exit 1 with the same message).
  cmd.add_option_function<std::string>(
         "--canary-timeout", [&f](const std::string& v) { f.canary_timeout = v; },
         absl::StrCat("seconds the canary pod may take [", absl::ToInt64Seconds(o.canary_timeout), "]"))
      ->type_name("SECONDS");
  cmd.add_flag("--no-kube", f.no_kube, "no node label and no Kubernetes API (outside a cluster)");
}

void AddDaemonSetFlags(CLI::App& cmd, NodeFlags& f) {
  cmd.add_option("--daemonset", f.daemonset, "the installer's DaemonSet");
  cmd.add_option("--namespace", f.ns, "the DaemonSet's namespace")->envname("POD_NAMESPACE");
}

CLI::App* AddNodeSubcommand(CLI::App& node, NodeFlags& f, const std::string& name, const std::string& help) {
  CLI::App* cmd = cli::AddCommand(node, name, help);
  // A parse-complete callback, not a final one: CLI11 then processes this command's options (environment
  // fallbacks included) only when it is the one given. The commands share NodeFlags, and a final callback
  // would let $NODE_NAME reach f.installer.node_name through a command that was not given, over the flag.
  cmd->parse_complete_callback([&f, name] { f.command = name; });
  cmd->add_option("--log-level", f.log_level, "debug, info, warn or error")->capture_default_str();
  return cmd;
}

int Fail(const std::string& what, const absl::Status& st) {
  std::fprintf(stderr, "gvshim node %s: %s\n", what.c_str(), std::string(st.message()).c_str());
  return 1;
}

// Blocks until SIGTERM or SIGINT (the kubelet stopping the pod).
int WaitForStop() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

int Run(Installer& inst, KubeApi* kube, const InstallerOptions& o, const NodeFlags& f) {
  // Signals are blocked before anything else runs, so a SIGTERM during install waits for its end.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  const std::string& ready = f.ready_file;
  auto rep = inst.Install();
  if (rep.ok()) {
    log::Infof("node install: %s; %zu file(s) written, config %s, containerd %s, canary %s%s", rep->schema,
               rep->written.size(), rep->config_changed ? "changed" : "unchanged",
               rep->restarted ? "restarted" : "not restarted", rep->canary_ran ? "passed" : "not needed",
               rep->labelled ? ", node labelled" : "");
    if (!ready.empty()) (void)InstallContent(ready, "ready\n", 0644);
  } else {
    // No retry loop: a retry would restart containerd again. The pod stays unready with this message.
    log::Errorf("node install failed: %s", std::string(rep.status().message()));
  }
  int sig = WaitForStop();
  log::Infof("node run: signal %d", sig);
  if (!ready.empty()) (void)RemoveFile(ready);
  if (kube == nullptr || f.daemonset.empty()) return rep.ok() ? 0 : 1;
  const std::string &ns = f.ns, &ds_name = f.daemonset;
  auto ds = kube->Get(DaemonSetPath(ns, ds_name));
  auto node = kube->Get(NodePath(o.node_name));
  if (!ds.ok() || !node.ok() || !*node) {
    log::Warnf("node run: cannot tell whether DaemonSet %s/%s still selects node %s (%s); keeping gvshim", ns,
               ds_name, o.node_name, std::string((!ds.ok() ? ds.status() : node.status()).message()));
    return 0;
  }
  if (*ds && DaemonSetSelectsNode(**ds, **node)) {
    log::Infof("node run: DaemonSet %s/%s still selects node %s: keeping gvshim (pod replaced, not removed)",
               ns, ds_name, o.node_name);
    return 0;
  }
  log::Infof("node run: DaemonSet %s/%s no longer selects node %s: uninstalling", ns, ds_name, o.node_name);
  absl::Status st = inst.Uninstall();
  if (!st.ok()) return Fail("uninstall", st);
  log::Infof("node uninstall: done");
  return 0;
}

std::string UrlEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += absl::StrFormat("%%%02X", c);
    }
  }
  return out;
}

int Retire(KubeApi& kube, const NodeFlags& f) {
  const std::string &ns = f.ns, &name = f.daemonset;
  if (ns.empty() || name.empty())
    return Fail("retire", absl::InvalidArgumentError("needs --daemonset and a namespace"));
  const int64_t secs = static_cast<int64_t>(f.retire_timeout_s);
  const std::string path = DaemonSetPath(ns, name);
  auto ds = kube.Get(path);
  if (!ds.ok()) return Fail("retire", ds.status());
  if (!*ds) return 0;
  std::string selector;
  const nlohmann::json match = (**ds)["spec"]["selector"].value("matchLabels", nlohmann::json::object());
  for (auto& [k, v] : match.items()) {
    selector += absl::StrCat(selector.empty() ? "" : ",", k, "=", v.get<std::string>());
  }
  nlohmann::json patch;
  patch["spec"]["template"]["spec"]["nodeSelector"]["gvshim.dev/retired"] = "true";
  if (absl::Status st = kube.MergePatch(path, patch); !st.ok()) return Fail("retire", st);
  log::Infof("node retire: DaemonSet %s/%s now selects no node; waiting for its pods to uninstall", ns, name);
  const absl::Time deadline = absl::Now() + absl::Seconds(secs);
  for (;;) {
    auto pods =
        kube.Get(absl::StrCat("/api/v1/namespaces/", ns, "/pods?labelSelector=", UrlEncode(selector)));
    if (!pods.ok()) return Fail("retire", pods.status());
    size_t n = *pods ? (**pods).value("items", nlohmann::json::array()).size() : 0;
    if (n == 0) return 0;
    if (absl::Now() >= deadline) {
      return Fail("retire", absl::DeadlineExceededError(absl::StrCat(n, " installer pod(s) still there")));
    }
    std::this_thread::sleep_for(std::chrono::seconds(2));  // polling the API, bounded by the deadline
  }
}

int Canary(const NodeFlags& f) {
  PodRun pod = f.canary;
  pod.timeout = absl::Seconds(static_cast<int64_t>(f.canary_pod_timeout_s));
  pod.command = {f.canary_command[0]};
  pod.args.assign(f.canary_command.begin() + 1, f.canary_command.end());
  pod.log_dir_local = HostPath(f.canary_host_root, pod.log_dir);
  std::error_code ec;
  std::filesystem::create_directories(pod.log_dir_local, ec);
  auto cri = NewCriClient(HostPath(f.canary_host_root, f.canary_cri_socket));
  auto r = cri->RunPod(pod);
  if (!r.ok()) return Fail("canary", r.status());
  std::fputs(r->output.c_str(), stdout);
  (void)RemoveFile(absl::StrCat(pod.log_dir_local, "/", pod.name, ".log"));
  std::fprintf(stderr, "gvshim node canary: %s/%s under handler %s exited %d (%s)\n", pod.ns.c_str(),
               pod.name.c_str(), pod.handler.c_str(), r->exit_code, r->reason.c_str());
  return r->exit_code;
}

}  // namespace

NodeFlags::NodeFlags() {
  canary.handler = "gvisor";
  canary.log_dir = "/var/log/gvshim-canary";
}

CLI::App* AddNodeCommand(CLI::App& parent, NodeFlags& f) {
  CLI::App* node =
      cli::AddCommand(parent, "node", "the Kubernetes node installer (the chart's DaemonSet runs it)");
  CLI::App* install =
      AddNodeSubcommand(*node, f, "install",
                        "install gvshim on this node, restart containerd, run a canary pod, label the node");
  CLI::App* uninstall = AddNodeSubcommand(
      *node, f, "uninstall", "unlabel the node, remove the drop-in and files, restart containerd last");
  CLI::App* status =
      AddNodeSubcommand(*node, f, "status", "what is installed (exit 0 ok, 3 not installed, 1 inconsistent)");
  CLI::App* run = AddNodeSubcommand(
      *node, f, "run",
      "install, then wait for SIGTERM; uninstall then only if the DaemonSet no longer selects the node");
  for (CLI::App* cmd : {install, uninstall, status, run}) AddInstallerFlags(*cmd, f);
  AddDaemonSetFlags(*run, f);
  run->add_option("--ready-file", f.ready_file,
                  "written once installed, removed on SIGTERM (readiness probe)");

  CLI::App* retire = AddNodeSubcommand(
      *node, f, "retire",
      "(pre-delete hook) make the DaemonSet select no node and wait until its pods are gone");
  AddDaemonSetFlags(*retire, f);
  cli::AddUnsigned(*retire, "--timeout", f.retire_timeout_s, "seconds to wait for the pods", 1)
      ->capture_default_str();

  CLI::App* canary =
      AddNodeSubcommand(*node, f, "canary", "run one pod through the CRI and print its output");
  canary->footer(
      "Form: gvshim node canary --image IMAGE [OPTIONS] -- CMD [ARGS...]\nExits with the pod's exit code.");
  canary->add_option("--image", f.canary.image, "the pod's image (on the node or pullable)")->required();
  canary->add_option("--handler", f.canary.handler, "the CRI runtime handler")->capture_default_str();
  canary->add_option("--name", f.canary.name, "the pod's and its container's name")->capture_default_str();
  canary->add_option("--namespace", f.canary.ns, "the pod's namespace")->capture_default_str();
  canary->add_flag("--host-network", f.canary.host_network, "the pod uses the node's network namespace");
  cli::AddUnsigned(*canary, "--timeout", f.canary_pod_timeout_s, "seconds the pod may take", 1)
      ->capture_default_str();
  canary->add_option("--host-root", f.canary_host_root, "where the host's / is mounted")
      ->capture_default_str();
  canary->add_option("--log-dir", f.canary.log_dir, "the pod's log directory (host path)")
      ->capture_default_str();
  canary->add_option("--cri-socket", f.canary_cri_socket, "containerd's socket (host path)")
      ->capture_default_str();
  canary->add_option("CMD", f.canary_command, "the container's command and arguments, after --")->required();
  canary->parse_complete_callback([&f] {
    f.command = "canary";
    if (f.canary.image.empty()) throw CLI::ValidationError("--image", "names no image");
  });
  cli::RequireOneSubcommand(*node);
  return node;
}

absl::StatusOr<InstallerOptions> InstallerFromFlags(const NodeFlags& f) {
  InstallerOptions o = f.installer;
  o.restart_command = Words(f.restart_command);
  if (f.node_label.has_value()) {
    const std::string& l = *f.node_label;
    auto eq = l.find('=');
    if (eq == std::string::npos || eq == 0)
      return absl::InvalidArgumentError("--node-label must be KEY=VALUE");
    o.label_key = l.substr(0, eq);
    o.label_value = l.substr(eq + 1);
  }
  if (f.canary_timeout.has_value()) {
    int secs = 0;
    if (!absl::SimpleAtoi(*f.canary_timeout, &secs) || secs <= 0) {
      return absl::InvalidArgumentError("--canary-timeout must be a number of seconds");
    }
    o.canary_timeout = absl::Seconds(secs);
  }
  const std::pair<const char*, const std::string*> host_paths[] = {
      {"install-dir", &o.install_dir},     {"profiles-dir", &o.profiles_dir},
      {"state-dir", &o.state_dir},         {"containerd-config", &o.containerd_config},
      {"gvshim-config", &o.gvshim_config}, {"cri-socket", &o.cri_socket}};
  for (const auto& [name, value] : host_paths) {
    if (value->empty() || (*value)[0] != '/') {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " must be an absolute host path"));
    }
  }
  return o;
}

int RunNode(const NodeFlags& f) {
  const std::string& cmd = f.command;
  log::Level lvl;
  if (log::ParseLevel(f.log_level, &lvl)) log::SetLevel(lvl);
  log::SetOutputFd(2);
  if (cmd == "canary") return Canary(f);

  std::unique_ptr<KubeApi> kube;
  if (cmd == "retire" ||
      (!f.no_kube && (cmd != "status" || std::getenv("KUBERNETES_SERVICE_HOST") != nullptr))) {
    auto ic = InClusterFromEnv();
    if (!ic.ok()) {
      return Fail(cmd, Annotate(ic.status(), cmd == "retire" ? "retire needs the Kubernetes API"
                                                             : "use --no-kube outside a cluster"));
    }
    kube = NewInClusterKube(*ic);
  }
  if (cmd == "retire") return Retire(*kube, f);

  auto opts = InstallerFromFlags(f);
  if (!opts.ok()) return Fail(cmd, opts.status());
  if (!kube) opts->node_name.clear();
  if (kube && opts->node_name.empty() && cmd != "status") {
    return Fail(cmd, absl::InvalidArgumentError("no node name (--node-name or $NODE_NAME)"));
  }
  RealHost host(Words(f.host_exec));
  auto cri = NewCriClient(HostPath(opts->host_root, opts->cri_socket));
  Installer inst(*opts, host, *cri, kube.get());
  if (cmd == "install") {
    auto rep = inst.Install();
    if (!rep.ok()) return Fail("install", rep.status());
    std::printf("installed (%s): %zu file(s) written, config %s, containerd %s, canary %s%s\n",
                rep->schema.c_str(), rep->written.size(), rep->config_changed ? "changed" : "unchanged",
                rep->restarted ? "restarted" : "not restarted", rep->canary_ran ? "passed" : "not needed",
                rep->labelled ? ", node labelled" : "");
    return 0;
  }
  if (cmd == "uninstall") {
    absl::Status st = inst.Uninstall();
    if (!st.ok()) return Fail("uninstall", st);
    std::printf("uninstalled\n");
    return 0;
  }
  if (cmd == "status") {
    auto s = inst.Status();
    if (absl::IsNotFound(s.status())) {
      std::printf("%s\n", std::string(s.status().message()).c_str());
      return 3;
    }
    if (!s.ok()) {
      std::printf("%s\n", std::string(s.status().message()).c_str());
      return 1;
    }
    std::printf("%s\n", s->c_str());
    return 0;
  }
  // run (AddNodeCommand declares no other command)
  return Run(inst, kube.get(), *opts, f);
}

}  // namespace gvshim::node
