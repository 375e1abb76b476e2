// `gvshim exec`: a client of the Execute service a shim serves for each pod that opted in.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gvshim::cli {

// One sandbox's discovery record: <socket_dir>/<key>.json written by the shim.
struct SandboxRecord {
  std::string file;
  std::string ns;
  std::string sandbox_id;
  std::vector<std::string> containers;
  std::string pod_namespace, pod_name;
  std::string socket;
};

absl::StatusOr<std::vector<SandboxRecord>> ReadRecords(const std::string& dir);

// Picks the record for `--id ID` (a sandbox or container id) or `--pod NS/NAME`; ns narrows by containerd
// namespace when non-empty. Exactly one match is required: none → NOT_FOUND, several → FAILED_PRECONDITION.
absl::StatusOr<SandboxRecord> FindRecord(const std::vector<SandboxRecord>& records, const std::string& id,
                                         const std::string& pod, const std::string& ns);

// Builds the arguments JSON object from `k=v` pairs: a value that parses as JSON is taken as JSON, else as a string.
absl::StatusOr<std::string> ArgsJson(const std::vector<std::string>& pairs, const std::string& base_json);

// Runs `gvshim exec ARGS...`; returns the process exit code.
int ExecMain(const std::vector<std::string>& args);

}  // namespace gvshim::cli
