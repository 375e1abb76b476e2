// Hardening of a container's OCI spec (config.json) before runsc sees it: read-only root, tmpfs scratch
// space, capabilities reduced to an allow-list, no_new_privs, masked/read-only /proc paths, non-root user,
// and a seccomp profile embedded as linux.seccomp (runsc enforces it with --oci-seccomp). The transforms are
// pure functions of (spec, policy); the policy comes from the [hardening] table of gvshim.toml and may be
// tightened per pod with dev.gvshim.* annotations (see docs/hardening.md).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "toml++/toml.h"

namespace gvshim::oci {

struct TmpfsMount {
  std::string destination;  // absolute path in the container
  std::string size;         // tmpfs size= value: digits with an optional k/m/g suffix ("64m")
  std::string mode;         // octal ("1777")
  bool noexec = false;      // nosuid and nodev are always set

  bool operator==(const TmpfsMount&) const = default;
};

struct HardeningPolicy {
  bool enabled = true;
  bool readonly_rootfs = true;
  std::vector<TmpfsMount> tmpfs = {{"/tmp", "64m", "1777"}};
  std::vector<std::string> allowed_capabilities;  // "CAP_…" names; empty: drop all
  bool no_new_privileges = true;
  std::optional<uint32_t> force_uid, force_gid;  // run as this (non-root) user/group when set
  std::string seccomp_profile;  // "" (none), a name in profiles_dir ("strict"), or an absolute path
  std::string profiles_dir = "/usr/share/gvshim/seccomp-profiles";
  bool allow_annotation_loosening = false;
  // A privileged container (securityContext.privileged: every capability, nothing masked) is refused unless
  // this is true; when allowed it keeps its capabilities and unmasked /proc, still inside gVisor, with the
  // rest of the policy (read-only root, tmpfs, no_new_privs, seccomp) applied.
  bool allow_privileged = false;
  // A pod without a network namespace of its own (hostNetwork: true; `ctr run --net-host`):
  //   "refuse" (default) — Create fails, naming the policy;
  //   "isolated" — the pod gets gVisor's own loopback-only network stack, not the node's;
  //   "host" — runsc --network=host: the pod uses the node's network through gVisor's host network
  //   passthrough.
  std::string host_network = "refuse";
  // Sysctls (linux.sysctl): runsc does not apply them inside the sandbox. "refuse" (default) fails Create
  // naming them; "ignore" drops them (logged).
  std::string sysctls = "refuse";

  bool operator==(const HardeningPolicy&) const = default;
};

// Annotation keys (all begin with dev.gvshim.). Values are documented in docs/hardening.md.
inline constexpr char kAnnotationHardening[] = "dev.gvshim.hardening";
inline constexpr char kAnnotationSeccompProfile[] = "dev.gvshim.seccomp-profile";
inline constexpr char kAnnotationReadonlyRootfs[] = "dev.gvshim.readonly-rootfs";
inline constexpr char kAnnotationTmpfs[] = "dev.gvshim.tmpfs";
inline constexpr char kAnnotationCapabilities[] = "dev.gvshim.capabilities";
inline constexpr char kAnnotationNoNewPrivileges[] = "dev.gvshim.no-new-privileges";
inline constexpr char kAnnotationRunAsUid[] = "dev.gvshim.run-as-uid";
inline constexpr char kAnnotationRunAsGid[] = "dev.gvshim.run-as-gid";

// Parses the [hardening] table of the shim's TOML config. Errors are INVALID_ARGUMENT and name file, line,
// column and key: "gvshim.toml:4:1: hardening.readonly_rootfs: must be a boolean, not string".
absl::StatusOr<HardeningPolicy> ParseHardeningTable(const toml::table& table, const std::string& file);

// Applies the pod's dev.gvshim.* annotations to the policy. An annotation may only tighten the policy unless
// base.allow_annotation_loosening; a loosening attempt is PERMISSION_DENIED naming the annotation, a
// malformed value INVALID_ARGUMENT. Annotations outside the hardening set are ignored.
absl::StatusOr<HardeningPolicy> ApplyAnnotations(const HardeningPolicy& base,
                                                 const std::map<std::string, std::string>& annotations);

// Reads the annotations object of a spec (absent: empty).
absl::StatusOr<std::map<std::string, std::string>> SpecAnnotations(const nlohmann::json& spec);

// Normalises "net_bind_service" / "CAP_NET_BIND_SERVICE" to "CAP_NET_BIND_SERVICE"; nullopt if unknown.
std::optional<std::string> NormalizeCapability(const std::string& name);

// Parses "dest:size[:mode][:noexec]" (mode defaults to 1777).
absl::StatusOr<TmpfsMount> ParseTmpfsSpec(const std::string& text);
absl::Status ValidateTmpfs(const TmpfsMount& tmpfs);
// Size in bytes of a tmpfs size value ("64m" → 67108864).
std::optional<uint64_t> TmpfsBytes(const std::string& size);

// The path of the profile file the policy names, "" for none. A bare name is looked up as
// <profiles_dir>/<name>.json; other relative paths are refused.
absl::StatusOr<std::string> ResolveProfilePath(const HardeningPolicy& policy);

struct HardeningResult {
  nlohmann::json spec;
  bool needs_oci_seccomp = false;  // pass --oci-seccomp to runsc: spec.linux.seccomp must be enforced
  bool privileged = false;         // a privileged container the policy allowed (keeps its capabilities)
  std::vector<std::string> notes;  // what was changed or deliberately left alone, for the log
};

// Hardens an exec's OCI Process (what containerd sends for `ctr task exec`, the CRI's Exec and ExecSync) like
// the container's init: capability allow-list (unless `privileged_allowed`), noNewPrivileges, forced uid/gid.
// containerd builds an exec's process from ITS copy of the spec, which never saw the shim's hardening.
absl::StatusOr<nlohmann::json> HardenProcess(const nlohmann::json& process, const HardeningPolicy& policy,
                                             bool privileged_allowed = false);

// True for the spec of a privileged container as containerd writes it: CAP_SYS_ADMIN and at least 30 capabilities
// in the bounding set (containerd grants what its own process holds), and no masked or read-only paths.
bool IsPrivileged(const nlohmann::json& spec);

// True when the spec lists its namespaces and a network namespace is not among them (it shares the node's).
bool UsesHostNetwork(const nlohmann::json& spec);

// Loads the policy's profile (if any) and hardens the spec with it.
absl::StatusOr<HardeningResult> Harden(const nlohmann::json& spec, const HardeningPolicy& policy);

// The pure core: `oci_seccomp` is the linux.seccomp object to embed (from seccomp::ToOciSeccomp), nullopt for
// none. Invalid specs (missing process/root, wrong types) are INVALID_ARGUMENT naming the JSON path.
absl::StatusOr<HardeningResult> HardenWithProfile(const nlohmann::json& spec, const HardeningPolicy& policy,
                                                  const std::optional<nlohmann::json>& oci_seccomp);

// config.json helpers. LoadSpec reports malformed JSON with line:column; SaveSpec writes a temporary file in
// the same directory, fsyncs it (unless !durable: a bundle under containerd's state directory, which does not
// outlive a reboot) and renames it over `path`, keeping the old file's mode.
absl::StatusOr<nlohmann::json> LoadSpec(const std::string& path);
absl::Status SaveSpec(const std::string& path, const nlohmann::json& spec, bool durable = true);

}  // namespace gvshim::oci
