// Command line of containerd-shim-gvisor-v1, in the Go `flag` style containerd uses:
//   -namespace NS -address ADDR -publish-binary BIN -id ID [-bundle B] [-debug] [-v] (start|delete)
// Both "-name value" and "-name=value" are accepted, with one or two dashes.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gvshim::shim_main {

struct Flags {
  std::string ns;
  std::string address;         // containerd's GRPC address
  std::string publish_binary;  // containerd binary (unused: events go over TTRPC_ADDRESS)
  std::string id;
  std::string bundle;
  std::string config_path;  // gvshim's own flag, passed from `start` to the daemon
  std::string socket;       // gvshim's own flag, passed from `start` to the daemon (for cleanup)
  bool debug = false;
  bool version = false;
  std::string action;  // "start", "delete", or "" for the daemon
};

absl::StatusOr<Flags> ParseFlags(const std::vector<std::string>& args);

// The socket path for a shim: a hash of containerd's address, the namespace and the grouping id (the pod's
// sandbox id for CRI containers, so every container of a pod reaches one shim), under /run/containerd/s.
std::string SocketPath(const std::string& containerd_address, const std::string& ns,
                       const std::string& group_id);

}  // namespace gvshim::shim_main
