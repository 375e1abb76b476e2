// A container's resource limits as gvshim can honour them under gVisor, from the OCI spec (linux.resources)
// at Create and from containerd's Update (the CRI's UpdateContainerResources).
//
// gVisor runs a whole pod in one sandbox, in the pod sandbox's cgroup: the host enforces only the pod's
// limits. Inside the sandbox, runsc neither enforces a container's own memory limit nor has an `update`
// command. gvshim therefore (1) keeps each container's limits, (2) reports its memory limit in Stats (so the
// CRI computes available_bytes from it, never an underflow), and (3) checks the container's memory usage
// periodically and OOM-kills a container over its limit ([shim] memory_check_ms). CPU quota/period/shares are
// recorded and reported but cannot be enforced per container inside the sandbox.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace gvshim::task {

struct Resources {
  std::optional<int64_t> memory_limit;  // bytes; 0 = explicitly none; nullopt = not given
  std::optional<int64_t> cpu_quota;     // microseconds per period; nullopt or -1 = none
  std::optional<uint64_t> cpu_period;   // microseconds
  std::optional<uint64_t> cpu_shares;

  bool operator==(const Resources&) const = default;
};

// Parses an OCI LinuxResources object (what linux.resources holds, and what containerd sends in Update).
// Absent fields stay unset; a memory limit of 0 or -1 is stored as 0 (none). Invalid values are
// INVALID_ARGUMENT naming the field under `what` ("linux.resources.memory.limit: must be -1 or a positive
// number of bytes, not -5").
absl::StatusOr<Resources> ParseLinuxResources(const nlohmann::json& resources, const std::string& what);

// linux.resources of a spec (absent: no limits).
absl::StatusOr<Resources> ResourcesFromSpec(const nlohmann::json& spec);

// Update: fields present in `update` replace those of `current`.
Resources Merge(const Resources& current, const Resources& update);

// The memory limit to report for a container using `usage` bytes: its own limit, else what runsc reported
// (`runsc_limit`, 0 = none), raised to `usage` if the container went past it between two checks (so that
// limit - usage never underflows); UINT64_MAX when there is no limit (containerd reads that as "unlimited").
uint64_t ReportedMemoryLimit(const Resources& r, uint64_t usage, uint64_t runsc_limit = 0);

// True when a container using `usage` bytes is over its memory limit.
bool OverMemoryLimit(const Resources& r, uint64_t usage);

}  // namespace gvshim::task
