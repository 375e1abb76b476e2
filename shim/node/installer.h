// `gvshim node install|uninstall|status`: puts gvshim on a node and registers the gvisor runtime handler with
// the node's containerd, verifies it with a canary pod, and only then labels the node. See
// docs/architecture.md, "Node installer", for the order of steps and what each failure leaves behind
// (nothing).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "shim/node/containerd_config.h"
#include "shim/node/cri.h"
#include "shim/node/host.h"
#include "shim/node/kube.h"

namespace gvshim::node {

struct InstallerOptions {
  std::string host_root = "/host";  // where the host's / is mounted; every path below is a host path
  std::string install_dir = "/opt/gvshim/bin";
  std::string profiles_dir = "/opt/gvshim/seccomp-profiles";
  std::string state_dir = "/opt/gvshim/state";  // install record, the root config's original bytes
  std::string containerd_config = "/etc/containerd/config.toml";
  std::string gvshim_config = "/etc/containerd/gvshim.toml";
  // A symlink to the shim in a directory on containerd's PATH (containerd 1.6 resolves a pod sandbox's shim
  // by name, ignoring runtime_path); empty: none.
  std::string shim_link_dir = "/usr/local/bin";
  std::string cri_socket = "/run/containerd/containerd.sock";
  std::string containerd_binary = "containerd";
  std::vector<std::string> restart_command;  // empty: systemctl restart containerd
  std::string handler = "gvisor";
  std::string label_key = "gvshim.dev/gvisor", label_value = "ready";
  std::string node_name;  // empty: no label (not in a cluster)
  // In the installer's own filesystem: containerd-shim-gvisor-v1, gvshim, runsc, seccomp-profiles/*.json.
  std::string payload_dir = "/opt/gvshim-node/payload";
  std::string node_config_json;  // the chart's sandbox.gvisor.config as JSON; empty: "{}"
  std::string canary_image;      // required for install
  std::vector<std::string> canary_command = {"/bin/sh", "-c", "dmesg | grep -q gVisor"};
  bool canary_host_network = false;
  absl::Duration canary_timeout = absl::Seconds(120);
  absl::Duration command_timeout = absl::Seconds(120);  // config dump, version, restart
};

struct InstallReport {
  std::vector<std::string> written;  // host paths of files that changed
  bool config_changed = false;       // drop-in or root config
  bool restarted = false;
  bool canary_ran = false;
  bool labelled = false;  // the label was set by this run (false when it was already there)
  std::string schema;
  std::string canary_output;
};

class Installer {
 public:
  // `kube` may be null (no node label: outside a cluster, or node_name empty).
  Installer(InstallerOptions opts, Host& host, Cri& cri, KubeApi* kube);

  // On failure every config file is back as it was, containerd is not restarted (again) and the node is not
  // labelled; the message says what failed and what state the node is in.
  absl::StatusOr<InstallReport> Install();
  // Unlabel, remove the drop-in (restoring the root config), remove the files, restart containerd last.
  absl::Status Uninstall();
  // A human-readable state; NOT_FOUND when nothing is installed, FAILED_PRECONDITION when inconsistent.
  absl::StatusOr<std::string> Status();

 private:
  struct Plan;
  std::string H(const std::string& host_path) const { return HostPath(o_.host_root, host_path); }
  absl::StatusOr<CommandResult> HostRun(const std::vector<std::string>& argv, const std::string& what);
  absl::StatusOr<std::string> ConfigDump(const std::string& what);
  absl::StatusOr<Plan> MakePlan();
  absl::Status Restart();
  absl::StatusOr<bool> HasLabel();
  absl::StatusOr<PodResult> RunCanary();
  std::string DropInPath(Schema s) const;

  InstallerOptions o_;
  Host& host_;
  Cri& cri_;
  KubeApi* kube_;
};

}  // namespace gvshim::node
