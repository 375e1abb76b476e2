// A one-container pod run through containerd's CRI (gRPC, runtime.v1), as a kubelet runs it: the installer's
// canary under the new runtime handler, and `gvshim node canary` for replaying a rendered pod on a node.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace gvshim::node {

struct PodRun {
  std::string handler;                 // CRI runtime handler (the RuntimeClass's handler)
  std::string name = "gvshim-canary";  // pod metadata name; the container is called the same
  std::string ns = "gvshim-system";    // pod metadata namespace
  std::string image;                   // must be on the node or pullable by containerd
  std::vector<std::string> command, args;
  bool host_network = false;  // NODE network namespace (no CNI involved)
  std::string log_dir;        // the pod's log directory as containerd sees it (made by the caller)
  std::string log_dir_local;  // the same directory as this process sees it (read before the pod is removed)
  absl::Duration timeout = absl::Seconds(120);
};

struct PodResult {
  int exit_code = -1;
  std::string reason;  // CRI's reason ("Completed", "Error", "OOMKilled", ...)
  std::string output;  // the container's stdout+stderr, from the CRI log file in log_dir_local
  std::string sandbox_id, container_id;
};

class Cri {
 public:
  virtual ~Cri() = default;
  // Waits until the runtime answers Version (after a restart), at most `timeout`.
  virtual absl::Status WaitReady(absl::Duration timeout) = 0;
  // Runs the pod until its container exits (or the timeout), then stops and removes the pod whatever
  // happened. A pod that cannot be created or started is an error naming the CRI call and containerd's
  // message.
  virtual absl::StatusOr<PodResult> RunPod(const PodRun& pod) = 0;
};

// A client of the CRI socket at `socket_path` (a path as the installer sees it).
std::unique_ptr<Cri> NewCriClient(const std::string& socket_path);

// The text of a CRI log file ("<time> <stream> <P|F> <text>" lines) joined back into the output.
std::string CriLogText(const std::string& log_file_content);

}  // namespace gvshim::node
