// What Create needs to know from (and do to) the bundle's OCI spec before runsc sees it.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "github.com/containerd/cgroups/stats/v1/metrics.pb.h"
#include "shim/config/config.h"
#include "shim/oci/hardening.h"
#include "shim/runsc/runsc.h"
#include "shim/task/resources.h"

namespace gvshim::task {

inline constexpr char kContainerTypeAnnotation[] = "io.kubernetes.cri.container-type";
inline constexpr char kSandboxIdAnnotation[] = "io.kubernetes.cri.sandbox-id";
// File in the bundle recording how runsc was invoked, so `delete` can clean up after a dead shim.
inline constexpr char kDeleteInfoFile[] = "gvshim-runsc.json";

struct PreparedSpec {
  bool creates_sandbox = true;   // false when the CRI says this container joins an existing pod sandbox
  bool oci_seccomp = false;      // the spec carries a seccomp profile runsc must enforce (--oci-seccomp)
  std::string oom_counter_file;  // see process::ContainerOptions::oom_counter_file
  std::string rootfs;  // absolute path of the root filesystem (spec root.path resolved against the bundle)
  std::string sandbox_id;  // io.kubernetes.cri.sandbox-id, else empty
  std::map<std::string, std::string> annotations;
  Resources resources;            // linux.resources as gvshim honours them (shim/task/resources.h)
  oci::HardeningPolicy policy;    // the policy after the pod's annotations (execs are hardened with it)
  bool privileged = false;        // a privileged container the policy allowed
  std::string network;            // runsc --network for this container when not the config's ("host", "none")
  bool hide_net_sysctls = false;  // `runsc create` with /proc/sys/net hidden (shim/task/netns.h)
  bool wrap = false;              // gvshim-wrap is mounted (shim/task/wrap.h)
  std::string exec_seccomp_bpf;   // the profile as BPF: execs install it through `wrap --seccomp-env`
  bool exec_needs_wrap = false;   // a seccomp profile but no wrapper: execs must be refused
};

// The file holding the "oom_kill" counter of the cgroup at `cgroups_path` (OCI linux.cgroupsPath, absolute),
// for cgroup v1 (memory controller mounted at <root>/memory) or v2 (unified at <root>); "" if not found.
std::string OomCounterFile(const std::string& cgroup_root, const std::string& cgroups_path);

// Validated seccomp profiles in OCI form, by path: libseccomp validation costs milliseconds, so each profile
// is checked once per shim. Thread-safe.
class ProfileCache {
 public:
  absl::StatusOr<nlohmann::json> Get(const std::string& path);
  // The BPF program of an OCI linux.seccomp object (seccomp::CompileBpf), cached by content.
  absl::StatusOr<std::string> Bpf(const nlohmann::json& oci_seccomp);

 private:
  absl::Mutex mu_;
  std::map<std::string, nlohmann::json> profiles_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> bpf_ ABSL_GUARDED_BY(mu_);
};

// Reads <bundle>/config.json, decides how the container is created, and hardens the spec in place (policy
// from the config's [hardening] table, tightened by dev.gvshim.* annotations). Errors name the file, key or
// annotation; nothing is written when it fails. With `runsc_root`, a joining container's
// io.kubernetes.cri.sandbox-id in the saved spec becomes runsc's id of the sandbox (runsc::ContainerId),
// which is how runsc finds the sandbox to join; PreparedSpec keeps containerd's ids. With `pty_relay` (the
// relay's host path), every container but a pod's sandbox container gets the relay mounted, and a terminal
// init runs through it.
absl::StatusOr<PreparedSpec> PrepareSpec(const std::string& bundle, const config::Config& cfg,
                                         ProfileCache* profiles, const std::string& runsc_root = "",
                                         const std::string& pty_relay = "");

// The runsc flags the config asks for, with the state root of containerd namespace `ns`.
runsc::GlobalOptions RunscOptions(const config::Config& cfg, const std::string& ns);

absl::Status WriteDeleteInfo(const std::string& bundle, const runsc::GlobalOptions& g);
absl::StatusOr<runsc::GlobalOptions> ReadDeleteInfo(const std::string& bundle);

// runsc's cgroup-like statistics in containerd's cgroup v1 metrics message (what `ctr task metrics` prints).
void FillMetrics(const runsc::Stats& stats, io::containerd::cgroups::v1::Metrics* m);

}  // namespace gvshim::task
