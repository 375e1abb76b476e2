// The seccomp profile checker behind profile.h (internal to shim/seccomp): parses a Docker/containerd JSON
// profile into rules, rejecting what libseccomp would refuse or silently change, and compiles them to BPF.
#pragma once

#include <seccomp.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace gvshim::seccomp::internal {

constexpr uint32_t kEperm = 1;

struct Arch {
  std::string name;  // SCMP_ARCH_X86_64
  uint32_t token = 0;
};

struct Cond {
  unsigned index = 0;
  std::string op_name;
  scmp_compare op = SCMP_CMP_EQ;
  uint64_t value = 0;
  uint64_t value_two = 0;
};

struct Rule {
  std::string path;  // syscalls[i]
  std::vector<std::string> names;
  std::vector<std::string> name_paths;
  std::string action_name;
  std::optional<uint32_t> errno_ret;
  uint32_t action = 0;
  std::vector<Cond> conds;
};

struct Parsed {
  std::string default_action_name;
  std::optional<uint32_t> default_errno;
  uint32_t default_action = 0;
  std::vector<Arch> arches;  // effective; empty: native only
  std::vector<std::string> flags;
  std::vector<Rule> rules;
};

// Parses and checks `profile`; errors are INVALID_ARGUMENT naming `source` and the JSON path.
// skip_unknown_names: a syscall name libseccomp does not know on any listed architecture is ignored instead
// of being an error, as runc and runsc do with the profiles containerd generates (its default profile lists,
// e.g., "recv", which x86 has only as a socketcall).
absl::StatusOr<Parsed> ParseProfileRules(const nlohmann::json& profile, const std::string& source,
                                         bool skip_unknown_names = false);

// Compiles checked rules with libseccomp: the number of BPF instructions, and the program itself into `bpf`
// when not null. A filter longer than the kernel accepts is an error.
absl::StatusOr<int> CompileProfileRules(const Parsed& parsed, const std::string& source,
                                        std::string* bpf = nullptr);

}  // namespace gvshim::seccomp::internal
