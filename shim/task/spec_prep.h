// What Create needs to know from (and do to) the bundle's OCI spec before runsc sees it.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "github.com/containerd/cgroups/stats/v1/metrics.pb.h"
#include "shim/config/config.h"
#include "shim/runsc/runsc.h"

namespace gvshim::task {

inline constexpr char kContainerTypeAnnotation[] = "io.kubernetes.cri.container-type";
inline constexpr char kSandboxIdAnnotation[] = "io.kubernetes.cri.sandbox-id";
// File in the bundle recording how runsc was invoked, so `delete` can clean up after a dead shim.
inline constexpr char kDeleteInfoFile[] = "gvshim-runsc.json";

struct PreparedSpec {
  bool creates_sandbox = true;  // false when the CRI says this container joins an existing pod sandbox
  bool oci_seccomp = false;     // the spec carries a seccomp profile runsc must enforce (--oci-seccomp)
  std::string oom_counter_file; // see process::ContainerOptions::oom_counter_file
};

// The file holding the "oom_kill" counter of the cgroup at `cgroups_path` (OCI linux.cgroupsPath, absolute),
// for cgroup v1 (memory controller mounted at <root>/memory) or v2 (unified at <root>); "" if not found.
std::string OomCounterFile(const std::string& cgroup_root, const std::string& cgroups_path);

// Reads <bundle>/config.json and decides how the container is created. Errors name the file.
absl::StatusOr<PreparedSpec> PrepareSpec(const std::string& bundle, const config::Config& cfg);

absl::Status WriteDeleteInfo(const std::string& bundle, const runsc::GlobalOptions& g);
absl::StatusOr<runsc::GlobalOptions> ReadDeleteInfo(const std::string& bundle);

// runsc's cgroup-like statistics in containerd's cgroup v1 metrics message (what `ctr task metrics` prints).
void FillMetrics(const runsc::Stats& stats, io::containerd::cgroups::v1::Metrics* m);

}  // namespace gvshim::task
