// `gvshim exec`: a client of the Execute service a shim serves for each pod that opted in.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace CLI {
class App;
}  // namespace CLI

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

// Builds the arguments JSON object from `k=v` pairs: a value that parses as JSON is taken as JSON, else as a
// string.
absl::StatusOr<std::string> ArgsJson(const std::vector<std::string>& pairs, const std::string& base_json);

// `gvshim exec`'s command line.
struct ExecOptions {
  std::string id, pod, ns, dir, lang, file, args_json, stdin_text, container;
  std::optional<std::string> code;           // -c CODE (may be empty); nullopt: the code comes from `file`
  std::vector<std::string> arg_pairs, envs;  // --arg K=V, --env K=V, in command-line order
  bool json_out = false, stream = false, allow_network = false, runtimes = false, health = false;
  uint64_t timeout_ms = 0, memory = 0, output_bytes = 0;
};

// Declares the `exec` subcommand of `parent` (flags, help, checks), parsing into `o`, which must outlive the
// parse. The checks that need the whole command line (one of --pod/--id; -c or a FILE unless --runtimes or
// --health) fail the parse with a usage error.
CLI::App* AddExecCommand(CLI::App& parent, ExecOptions& o);

// Runs a parsed `gvshim exec`; returns the process exit code (the snippet's, 124 on timeout, 125 when it
// could not run, 2 for a bad request).
int RunExec(ExecOptions o);

}  // namespace gvshim::cli
