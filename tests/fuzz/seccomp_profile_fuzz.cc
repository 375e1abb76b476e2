// Feeds arbitrary bytes to the seccomp profile parser/validator. Properties checked beyond "no crash": a
// valid profile converts to the OCI form, and that form validates again with the same counts.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "shim/seccomp/profile.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto profile = gvshim::seccomp::ParseProfile(text, "fuzz.json");
  if (!profile.ok()) {
    if (profile.status().message().empty()) std::abort();  // every error must say something
    return 0;
  }
  auto oci = gvshim::seccomp::ToOciSeccomp(profile->profile, "fuzz.json");
  if (!oci.ok()) std::abort();
  auto again = gvshim::seccomp::ValidateProfile(*oci, "fuzz-oci.json");
  if (!again.ok() || again->allowed_syscalls != profile->summary.allowed_syscalls ||
      again->denied_syscalls != profile->summary.denied_syscalls ||
      again->rule_count != profile->summary.rule_count) {
    std::abort();
  }
  return 0;
}
