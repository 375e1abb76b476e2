// `gvshim node ...`: the node installer's command line (run by the chart's DaemonSet and its pre-delete
// hook).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shim/node/cri.h"
#include "shim/node/installer.h"

namespace CLI {
class App;
}  // namespace CLI

namespace gvshim::node {

// `gvshim node COMMAND`'s command line. Each command accepts only its own flags (see AddNodeCommand).
struct NodeFlags {
  std::string command;  // the command given: install, uninstall, status, run, retire or canary
  std::string log_level = "info";

  // install, uninstall, status, run: the installer. Its defaults are InstallerOptions'; --node-name defaults
  // to $NODE_NAME. The checks on values (absolute paths, KEY=VALUE, a positive timeout) are
  // InstallerFromFlags'.
  InstallerOptions installer;
  std::string host_exec, restart_command;     // split into words at spaces
  std::optional<std::string> node_label;      // KEY=VALUE
  std::optional<std::string> canary_timeout;  // seconds
  bool no_kube = false;

  // run and retire: the installer's DaemonSet; --namespace defaults to $POD_NAMESPACE. run: --ready-file.
  std::string daemonset, ns, ready_file;
  uint64_t retire_timeout_s = 420;

  // canary: one pod through the CRI, its command after `--`.
  PodRun canary;
  uint64_t canary_pod_timeout_s = 120;
  std::string canary_host_root = "/", canary_cri_socket = "/run/containerd/containerd.sock";
  std::vector<std::string> canary_command;  // CMD ARGS...

  NodeFlags();
};

// Declares the `node` subcommand of `parent` and its commands, parsing into `f` (which must outlive the
// parse).
CLI::App* AddNodeCommand(CLI::App& parent, NodeFlags& f);

// The installer's options from a parsed install/uninstall/status/run command line; INVALID_ARGUMENT names the
// flag whose value is wrong.
absl::StatusOr<InstallerOptions> InstallerFromFlags(const NodeFlags& f);

// Runs a parsed `gvshim node COMMAND`; returns the process exit code (status: 0 installed, 3 not installed, 1
// inconsistent; canary: the pod's exit code).
int RunNode(const NodeFlags& f);

}  // namespace gvshim::node
