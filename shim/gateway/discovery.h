// The pool pods a gateway may use: the discovery records the Execute servers of the node write into the
// Execute socket_dir (<key>.json next to <key>.sock, see shim/execute/manager.h), filtered by selectors.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gvshim::gateway {

struct PodRecord {
  std::string file;  // the record's path
  std::string ns, sandbox_id;
  std::string pod_namespace, pod_name;  // CRI pods only
  std::string socket;
  int64_t server_pid = 0;
  bool python = false, node = false;  // some container of the pod has the interpreter
  // The pod's dev.gvshim.* annotations. Today's records do not carry them (see docs/gateway.md); nullopt
  // then.
  std::optional<std::map<std::string, std::string>> annotations;

  // "pod_namespace/pod_name" for CRI pods, else "namespace/sandbox_id".
  std::string Name() const;
};

// Parses one record. INVALID_ARGUMENT when it is not a JSON object with a socket.
absl::StatusOr<PodRecord> ParseRecord(absl::string_view json_text, const std::string& file);

// Every record of `dir` (files *.json that parse; others are skipped). NOT_FOUND when the directory cannot be
// read (it appears when the first pod of the node opts in).
absl::StatusOr<std::vector<PodRecord>> ScanRecords(const std::string& dir);

// Which records are pool pods. Empty selector: every record.
struct Selector {
  std::map<std::string, std::string> annotations;  // all must be present with these values
  std::string pod_namespace;                       // "" = any
  std::string pod_name_prefix;                     // "" = any

  bool empty() const { return annotations.empty() && pod_namespace.empty() && pod_name_prefix.empty(); }
  // Whether the record is selected; when not, `why` says what did not match.
  bool Matches(const PodRecord& r, std::string* why) const;
};

// Builds a selector from --select-annotation K=V (repeatable) and --select-pod NS/PREFIX values.
absl::StatusOr<Selector> ParseSelector(const std::vector<std::string>& annotation_specs,
                                       const std::string& pod_spec);

}  // namespace gvshim::gateway
