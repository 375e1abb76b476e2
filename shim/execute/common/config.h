// The [execute] table of the shim's TOML config: whether sandboxes get the Execute service, where its sockets
// live, queueing, and the default and maximum per-snippet limits.
#pragma once

#include <toml++/toml.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gvshim::execute {

// Per-snippet limits (same fields as the proto's Limits). In requests, 0 means "use the default".
struct Limits {
  uint64_t wall_timeout_ms = 0;
  uint64_t cpu_time_ms = 0;
  uint64_t memory_bytes = 0;
  uint64_t output_bytes = 0;
  uint64_t max_processes = 0;
  uint64_t file_size_bytes = 0;
  bool operator==(const Limits&) const = default;
};

// Every field of Limits with its name (the key in TOML, in JSON and, with '-' for '_', in runner options):
// code that handles all limits alike loops over this instead of naming each field.
struct LimitField {
  const char* name;
  uint64_t Limits::*member;
};
inline constexpr LimitField kLimitFields[] = {
    {"wall_timeout_ms", &Limits::wall_timeout_ms}, {"cpu_time_ms", &Limits::cpu_time_ms},
    {"memory_bytes", &Limits::memory_bytes},       {"output_bytes", &Limits::output_bytes},
    {"max_processes", &Limits::max_processes},     {"file_size_bytes", &Limits::file_size_bytes},
};

enum class StartMode { kLazy, kEager };

struct ExecuteConfig {
  bool enabled = false;            // master switch
  bool require_annotation = true;  // a pod opts in with dev.gvshim.execute=true
  std::string socket_dir = "/run/gvshim/execute";
  StartMode start =
      StartMode::kLazy;         // eager: start runners as soon as a container with the interpreter starts
  uint32_t max_concurrent = 4;  // running snippets per sandbox
  uint32_t max_queue = 32;      // snippets waiting for a slot per sandbox
  uint64_t queue_timeout_ms = 10000;
  uint64_t max_code_bytes = 1 << 20;
  std::string python = "python3";  // name (looked up in /usr/bin, /usr/local/bin, /bin) or absolute path
  std::string node = "node";
  std::vector<std::string> runner_args;  // extra options for both runners (see runners/PROTOCOL.md)
  std::vector<std::string> python_args;  // extra options for the Python runner only (e.g. --preload numpy)
  std::vector<std::string> node_args;    // extra options for the Node runner only (e.g. --pool-size 4)
  // The program the shim starts as a pod's Execute server (`<server> execute-server`); empty: the `gvshim`
  // next to the shim binary, else `gvshim` on PATH.
  std::string server;
  // Run snippets even where the sandbox cannot isolate them fully (runsc 0.0~20221219: mounts are not private
  // to a mount namespace, so a snippet gets no private /proc or /tmp and can see the execute container's
  // processes). Off: such a pod's Execute answers FAILED_PRECONDITION naming what is missing.
  bool allow_weak_isolation = false;
  // Directory of gvshim's in-sandbox helpers (helpers.h); empty: found next to the shim binary.
  std::string helpers_dir;
  // Size of each private tmpfs a snippet gets (/tmp, /var/tmp, /dev/shm, its working directory).
  uint64_t tmpfs_bytes = 64ull << 20;
  Limits default_limits{10000, 10000, 512ull << 20, 1 << 20, 64, 16 << 20};
  // output_bytes: at most 16 MiB (config.cc: two streams of it, base64, must fit in one 64 MiB frame).
  Limits max_limits{300000, 300000, 8ull << 30, 16 << 20, 4096, 1ull << 30};
};

inline constexpr char kOptInAnnotation[] = "dev.gvshim.execute";
// Set by the CRI plugin on a pod's containers; they name the pod in the discovery record.
inline constexpr char kPodNamespaceAnnotation[] = "io.kubernetes.cri.sandbox-namespace";
inline constexpr char kPodNameAnnotation[] = "io.kubernetes.cri.sandbox-name";
// Annotations under this prefix travel to the Execute server and into the pod's discovery record.
inline constexpr char kAnnotationPrefix[] = "dev.gvshim.";
inline constexpr size_t kMaxForwardedAnnotations = 32;

// Whether a container's annotations opt its pod in (dev.gvshim.execute = true or 1).
bool OptsIn(const std::map<std::string, std::string>& annotations);

// 16 lower-case hex digits naming a sandbox's files in socket_dir: FNV-1a (64 bit) of "<ns>/<sandbox_id>".
// Stable across processes and versions, so clients can compute it.
std::string SocketKey(const std::string& ns, const std::string& sandbox_id);

// Parses the [execute] table; `t` null means the table is absent (defaults: disabled). Errors name
// "<file>:<line>: execute.<key>: ...". Defaults above their maximum are errors.
absl::StatusOr<ExecuteConfig> ParseExecuteTable(const toml::table* t, const std::string& file);

// Effective limits of a request: 0 takes the default, anything above the maximum is lowered to it.
Limits EffectiveLimits(const Limits& requested, const ExecuteConfig& cfg);

}  // namespace gvshim::execute
