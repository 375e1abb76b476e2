// A container's execute container (common/helpers.h): made by the shim when a container of an opted-in pod
// starts, removed when that container is deleted (or, after the shim died, by `delete`).
//
// It is a runsc container of its own in the pod's sandbox (annotations io.kubernetes.cri.container-type =
// container, io.kubernetes.cri.sandbox-id = runsc's id of the sandbox), on the same root filesystem as the
// container it serves (read-only), with its own pid, mount, IPC and UTS namespaces: the pod's containers do
// not see the runners or the snippets, and the snippets do not see the pod. Its init is gvshim-launch;
// /.gvshim is gvshim's helpers directory (read-only); /tmp, /var/tmp, /dev/shm and /workspace are small tmpfs
// mounts (each snippet gets fresh ones of its own over them). The network is the sandbox's (gVisor has one
// per sandbox); a snippet that did not ask for the network gets an empty network namespace of its own.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "shim/runsc/runsc.h"
#include "shim/sys/process_watcher.h"

namespace gvshim::execute {

struct ExecContainerParams {
  std::string rootfs;            // host path of the served container's root filesystem
  std::string sandbox_runsc_id;  // runsc's id of the pod's sandbox (its root container)
  std::string helpers_dir;       // host directory mounted at /.gvshim
  uint64_t tmpfs_bytes = 64ull << 20;
};

// The OCI spec of the execute container, from the served container's spec (its hostname, environment PATH and
// network namespace are reused). Pure.
absl::StatusOr<nlohmann::json> ExecContainerSpec(const nlohmann::json& target_spec,
                                                 const ExecContainerParams& p);

// The mount points of the spec that runsc must find in the root filesystem. runsc 0.0~20240729 makes missing
// ones itself (in memory); 0.0~20221219 does not, on a read-only root: for it they are made in the host
// directory first (MakeMountPoints).
std::vector<std::string> ExecMountPoints();
absl::Status MakeMountPoints(const std::string& rootfs);

// Whether `runsc --version` of `binary` is older than 0.0~20240729 (cached per binary). `reaper` is the
// process's reaper (null in a process without one).
bool RunscNeedsMountPoints(const std::string& binary, sys::ProcessWatcher* reaper);

// Creates and starts the execute container of `target_id` (whose bundle is `bundle`): writes
// <bundle>/gvshim-execute/config.json, then runsc create + start. On failure nothing is left.
absl::Status CreateExecContainer(runsc::Runsc& runsc, const std::string& target_id, const std::string& bundle,
                                 const ExecContainerParams& p);

// Force-deletes the execute container of `target_id` if <bundle>/gvshim-execute exists, and removes that
// directory. NOT_FOUND from runsc is not an error.
absl::Status DeleteExecContainer(runsc::Runsc& runsc, const std::string& target_id,
                                 const std::string& bundle);

}  // namespace gvshim::execute
