// Feeds arbitrary bytes as a container's config.json through what the shim does with one at Create: parse
// (oci::ParseSpec, LoadSpec's pure part), read the dev.gvshim.* annotations and tighten the node's policy
// with them, harden the spec and its process, and serialise the result (SaveSpec's dump). The first byte
// picks one of several node policies, so the privileged, host-network, forced-user and disabled paths are
// reached. Checked beyond "no crash and no uncaught exception": every error says something, and a hardened
// spec keeps the protections its policy asked for.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "nlohmann/json.hpp"
#include "shim/oci/hardening.h"

namespace {

using gvshim::oci::HardeningPolicy;
using nlohmann::json;

void Check(bool ok) {
  if (!ok) std::abort();
}

HardeningPolicy PolicyFor(uint8_t bits) {
  HardeningPolicy p;
  if (bits & 1) p.allowed_capabilities = {"CAP_NET_BIND_SERVICE", "CAP_CHOWN"};
  if (bits & 2) {
    p.force_uid = 65534;
    p.force_gid = 65534;
  }
  if (bits & 4) p.allow_privileged = true;
  if (bits & 8) p.host_network = (bits & 16) ? "host" : "isolated";
  if (bits & 32) p.allow_annotation_loosening = true;
  if (bits & 64) p.sysctls = "ignore";
  if (bits & 128) p.enabled = false;
  return p;
}

// A small linux.seccomp object as seccomp::ToOciSeccomp makes one (no file is read here).
const json& OciSeccomp() {
  static const json* const kProfile =
      new json{{"defaultAction", "SCMP_ACT_ERRNO"},
               {"architectures", {"SCMP_ARCH_X86_64"}},
               {"syscalls", {{{"names", {"read", "write", "exit_group"}}, {"action", "SCMP_ACT_ALLOW"}}}}};
  return *kProfile;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const HardeningPolicy base = PolicyFor(data[0]);
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);

  auto spec = gvshim::oci::ParseSpec(text, "config.json");
  if (!spec.ok()) {
    Check(!spec.status().message().empty());
    return 0;
  }
  (void)gvshim::oci::IsPrivileged(*spec);
  (void)gvshim::oci::UsesHostNetwork(*spec);

  HardeningPolicy policy = base;
  auto annotations = gvshim::oci::SpecAnnotations(*spec);
  if (!annotations.ok()) {
    Check(!annotations.status().message().empty());
  } else {
    auto applied = gvshim::oci::ApplyAnnotations(base, *annotations);
    if (!applied.ok()) {
      Check(!applied.status().message().empty());
    } else {
      policy = *applied;
    }
  }

  const bool with_seccomp = (data[0] & 3) == 3;
  auto hardened = gvshim::oci::HardenWithProfile(
      *spec, policy, with_seccomp ? std::optional<json>(OciSeccomp()) : std::nullopt);
  if (!hardened.ok()) {
    Check(!hardened.status().message().empty());
  } else if (policy.enabled) {
    const json& out = hardened->spec;
    if (policy.readonly_rootfs) Check(out.at("root").at("readonly") == true);
    if (policy.no_new_privileges) Check(out.at("process").at("noNewPrivileges") == true);
    if (with_seccomp) Check(hardened->needs_oci_seccomp && out.at("linux").at("seccomp") == OciSeccomp());
    // What SaveSpec writes: a spec holding a string that is not UTF-8 is refused there, not here.
    try {
      (void)out.dump(2);
    } catch (const json::type_error&) {
    }
    // The hardened spec is a valid spec: hardening it again succeeds.
    Check(gvshim::oci::HardenWithProfile(out, policy, std::nullopt).ok());
  }

  if (auto process = spec->find("process"); process != spec->end() && process->is_object()) {
    auto p = gvshim::oci::HardenProcess(*process, policy);
    if (!p.ok()) Check(!p.status().message().empty());
  }
  return 0;
}
