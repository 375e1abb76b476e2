#include "shim/node/node_main.h"

#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "shim/base/log.h"
#include "shim/base/status.h"
#include "shim/node/files.h"
#include "shim/node/installer.h"

namespace gvshim::node {
namespace {

constexpr char kUsage[] =
    "usage: gvshim node COMMAND [--flag=value ...]\n"
    "  install     install gvshim on this node, restart containerd, run a canary pod, label the node\n"
    "  uninstall   unlabel the node, remove the drop-in and files, restart containerd last\n"
    "  status      what is installed (exit 0 ok, 3 not installed, 1 inconsistent)\n"
    "  run         install, then wait for SIGTERM; uninstall then only if the DaemonSet no longer selects "
    "the node\n"
    "  retire      (pre-delete hook) make the DaemonSet select no node and wait until its pods are gone\n"
    "  canary      run one pod through the CRI: --handler --image [--host-network] [--timeout=S] -- CMD "
    "ARGS...\n"
    "flags: --host-root --install-dir --profiles-dir --state-dir --containerd-config --gvshim-config "
    "--cri-socket\n"
    "       --containerd-binary --host-exec='PREFIX' --restart-command='CMD' --handler "
    "--node-label=KEY=VALUE\n"
    "       --node-name (default $NODE_NAME) --node-config=JSON_FILE --payload=DIR --canary-image "
    "--canary-timeout\n"
    "       --canary-host-network --ready-file --daemonset --namespace (default $POD_NAMESPACE) --timeout\n"
    "       --log-level --no-kube (no label, no API: outside a cluster)\n";

struct Flags {
  std::map<std::string, std::string> v;
  std::vector<std::string> rest;  // after "--"
  std::string Get(const std::string& k, const std::string& def = "") const {
    auto it = v.find(k);
    return it == v.end() ? def : it->second;
  }
  bool Has(const std::string& k) const { return v.count(k) != 0; }
};

bool ParseFlags(const std::vector<std::string>& args, Flags& f, std::string& err) {
  static const char* kBool[] = {"canary-host-network", "host-network", "no-kube"};
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      f.rest.assign(args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
      return true;
    }
    if (a.rfind("--", 0) != 0) {
      err = absl::StrCat("unexpected argument ", a);
      return false;
    }
    std::string k = a.substr(2), val;
    if (auto eq = k.find('='); eq != std::string::npos) {
      val = k.substr(eq + 1);
      k = k.substr(0, eq);
    } else {
      bool is_bool = false;
      for (const char* b : kBool) is_bool |= (k == b);
      if (is_bool) {
        val = "true";
      } else if (i + 1 < args.size()) {
        val = args[++i];
      } else {
        err = absl::StrCat("--", k, " needs a value");
        return false;
      }
    }
    f.v[k] = val;
  }
  return true;
}

std::vector<std::string> Words(const std::string& s) {
  return absl::StrSplit(s, ' ', absl::SkipWhitespace());
}

absl::StatusOr<InstallerOptions> Options(const Flags& f) {
  InstallerOptions o;
  o.host_root = f.Get("host-root", o.host_root);
  o.install_dir = f.Get("install-dir", o.install_dir);
  o.profiles_dir = f.Get("profiles-dir", o.profiles_dir);
  o.state_dir = f.Get("state-dir", o.state_dir);
  o.containerd_config = f.Get("containerd-config", o.containerd_config);
  o.gvshim_config = f.Get("gvshim-config", o.gvshim_config);
  o.shim_link_dir = f.Get("shim-link-dir", o.shim_link_dir);
  o.cri_socket = f.Get("cri-socket", o.cri_socket);
  o.containerd_binary = f.Get("containerd-binary", o.containerd_binary);
  o.restart_command = Words(f.Get("restart-command"));
  o.handler = f.Get("handler", o.handler);
  if (f.Has("node-label")) {
    std::string l = f.Get("node-label");
    auto eq = l.find('=');
    if (eq == std::string::npos || eq == 0)
      return absl::InvalidArgumentError("--node-label must be KEY=VALUE");
    o.label_key = l.substr(0, eq);
    o.label_value = l.substr(eq + 1);
  }
  const char* env_node = std::getenv("NODE_NAME");
  o.node_name = f.Get("node-name", env_node != nullptr ? env_node : "");
  o.payload_dir = f.Get("payload", o.payload_dir);
  o.node_config_json = f.Get("node-config");
  o.canary_image = f.Get("canary-image");
  o.canary_host_network = f.Has("canary-host-network");
  int secs = 0;
  if (f.Has("canary-timeout")) {
    if (!absl::SimpleAtoi(f.Get("canary-timeout"), &secs) || secs <= 0) {
      return absl::InvalidArgumentError("--canary-timeout must be a number of seconds");
    }
    o.canary_timeout = absl::Seconds(secs);
  }
  for (const char* d :
       {"install-dir", "profiles-dir", "state-dir", "containerd-config", "gvshim-config", "cri-socket"}) {
    if (f.Has(d) && (f.Get(d).empty() || f.Get(d)[0] != '/')) {
      return absl::InvalidArgumentError(absl::StrCat("--", d, " must be an absolute host path"));
    }
  }
  return o;
}

std::string Namespace(const Flags& f) {
  const char* env = std::getenv("POD_NAMESPACE");
  return f.Get("namespace", env != nullptr ? env : "");
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

int Run(Installer& inst, KubeApi* kube, const InstallerOptions& o, const Flags& f) {
  // Signals are blocked before anything else runs, so a SIGTERM during install waits for its end.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  const std::string ready = f.Get("ready-file");
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
  if (kube == nullptr || f.Get("daemonset").empty()) return rep.ok() ? 0 : 1;
  const std::string ns = Namespace(f), ds_name = f.Get("daemonset");
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

int Retire(KubeApi& kube, const Flags& f) {
  const std::string ns = Namespace(f), name = f.Get("daemonset");
  if (ns.empty() || name.empty())
    return Fail("retire", absl::InvalidArgumentError("needs --daemonset and a namespace"));
  int secs = 420;
  (void)absl::SimpleAtoi(f.Get("timeout", "420"), &secs);
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

int Canary(const Flags& f) {
  PodRun pod;
  pod.handler = f.Get("handler", "gvisor");
  pod.image = f.Get("image");
  pod.name = f.Get("name", pod.name);
  pod.ns = f.Get("namespace", pod.ns);
  pod.host_network = f.Has("host-network");
  int secs = 120;
  (void)absl::SimpleAtoi(f.Get("timeout", "120"), &secs);
  pod.timeout = absl::Seconds(secs);
  if (f.rest.empty() || pod.image.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  pod.command = {f.rest[0]};
  pod.args.assign(f.rest.begin() + 1, f.rest.end());
  const std::string host_root = f.Get("host-root", "/");
  pod.log_dir = f.Get("log-dir", "/var/log/gvshim-canary");
  pod.log_dir_local = HostPath(host_root, pod.log_dir);
  std::error_code ec;
  std::filesystem::create_directories(pod.log_dir_local, ec);
  auto cri = NewCriClient(HostPath(host_root, f.Get("cri-socket", "/run/containerd/containerd.sock")));
  auto r = cri->RunPod(pod);
  if (!r.ok()) return Fail("canary", r.status());
  std::fputs(r->output.c_str(), stdout);
  (void)RemoveFile(absl::StrCat(pod.log_dir_local, "/", pod.name, ".log"));
  std::fprintf(stderr, "gvshim node canary: %s/%s under handler %s exited %d (%s)\n", pod.ns.c_str(),
               pod.name.c_str(), pod.handler.c_str(), r->exit_code, r->reason.c_str());
  return r->exit_code;
}

}  // namespace

int NodeMain(const std::vector<std::string>& args) {
  if (args.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string& cmd = args[0];
  Flags f;
  std::string err;
  if (!ParseFlags({args.begin() + 1, args.end()}, f, err)) {
    std::fprintf(stderr, "gvshim node %s: %s\n%s", cmd.c_str(), err.c_str(), kUsage);
    return 2;
  }
  log::Level lvl;
  if (log::ParseLevel(f.Get("log-level", "info"), &lvl)) log::SetLevel(lvl);
  log::SetOutputFd(2);
  if (cmd == "canary") return Canary(f);

  std::unique_ptr<KubeApi> kube;
  if (!f.Has("no-kube") && (cmd != "status" || std::getenv("KUBERNETES_SERVICE_HOST") != nullptr)) {
    auto ic = InClusterFromEnv();
    if (!ic.ok()) return Fail(cmd, Annotate(ic.status(), "use --no-kube outside a cluster"));
    kube = NewInClusterKube(*ic);
  }
  if (cmd == "retire") return Retire(*kube, f);

  auto opts = Options(f);
  if (!opts.ok()) return Fail(cmd, opts.status());
  if (!kube) opts->node_name.clear();
  if (kube && opts->node_name.empty() && cmd != "status") {
    return Fail(cmd, absl::InvalidArgumentError("no node name (--node-name or $NODE_NAME)"));
  }
  RealHost host(Words(f.Get("host-exec")));
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
  if (cmd == "run") return Run(inst, kube.get(), *opts, f);
  std::fputs(kUsage, stderr);
  return 2;
}

}  // namespace gvshim::node
