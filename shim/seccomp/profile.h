// Seccomp profiles in the OCI / Docker JSON format: validation with libseccomp (every name, action, operator
// and architecture is checked, then the filter is compiled — never loaded) and conversion to the OCI spec's
// `linux.seccomp` object, which runsc enforces when it runs with --oci-seccomp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace gvshim::seccomp {

struct ProfileSummary {
  std::string default_action;              // e.g. "SCMP_ACT_ERRNO"
  uint32_t default_errno = 0;              // errno of an ERRNO/TRACE default action
  std::vector<std::string> architectures;  // effective list (SCMP_ARCH_*); empty means "native only"
  int allowed_syscalls = 0;                // names with SCMP_ACT_ALLOW (counted once per rule they appear in)
  int denied_syscalls = 0;                 // names with ERRNO / KILL* / TRAP
  int other_syscalls = 0;                  // names with TRACE / LOG
  int rule_count = 0;                      // entries of "syscalls"
  int bpf_instructions = 0;                // size of the compiled libseccomp filter, all architectures
};

struct ValidatedProfile {
  std::string source_name;  // file name used in messages
  nlohmann::json profile;   // the document as written
  ProfileSummary summary;
};

// Checks a parsed profile. Errors are INVALID_ARGUMENT and read
// "<source_name>: <json path>: <reason>", e.g. `strict.json: syscalls[3].names[1]: unknown syscall "x" ...`.
absl::StatusOr<ProfileSummary> ValidateProfile(const nlohmann::json& profile, const std::string& source_name);

// Parses JSON text (errors carry line:column) and validates it.
absl::StatusOr<ValidatedProfile> ParseProfile(absl::string_view text, const std::string& source_name);

// Reads and validates a profile file; messages name the file by its base name, read errors by full path.
absl::StatusOr<ValidatedProfile> LoadProfileFile(const std::string& path);

// Converts a (valid) profile to the OCI runtime spec's `linux.seccomp` object: Docker's `name` and `archMap`
// are turned into `names` and `architectures`, comments are dropped. Validates first.
absl::StatusOr<nlohmann::json> ToOciSeccomp(const nlohmann::json& profile, const std::string& source_name);
// Same for a profile that LoadProfileFile/ParseProfile already validated: skips the libseccomp compile, the
// expensive part of validation (milliseconds for a 300-name profile on three architectures).
absl::StatusOr<nlohmann::json> ToOciSeccomp(const ValidatedProfile& profile);

// Validates and compiles a profile (OCI `linux.seccomp` or Docker form) into the BPF program a process
// installs with seccomp(SECCOMP_SET_MODE_FILTER): raw struct sock_filter instructions, as libseccomp exports
// them.
absl::StatusOr<std::string> CompileBpf(const nlohmann::json& profile, const std::string& source_name);

// Converts a byte offset in text (nlohmann's parse_error::byte, 1-based) to 1-based line and column.
void OffsetToLineColumn(absl::string_view text, size_t byte, int* line, int* column);

}  // namespace gvshim::seccomp
