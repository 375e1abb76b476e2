// Parsing of the stdio strings containerd hands a shim for a process (stdin/stdout/stderr of CreateTask and
// ExecProcess): "" (no stream), a plain path (a fifo containerd made), "file:///abs/path" (append to a file)
// or "binary:///path/to/logger?key=value&..." (a logging binary; "binary-v2" additionally requires the logger
// to write a byte before it closes its ready pipe).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gvshim::stdio {

struct Target {
  enum class Kind { kNone, kPath, kFile, kBinary };
  Kind kind = Kind::kNone;
  // kPath / kFile: the file; kBinary: the logger executable (absolute).
  std::string path;
  // kBinary: argv after the executable, one "key" then "value" per query parameter, in URI order; a key given
  // twice counts once (its first value), a key without '=' gets an empty value.
  std::vector<std::string> args;
  // kBinary via "binary-v2://": the logger must write at least one byte to its ready pipe.
  bool strict_ready = false;
};

// Parses one stdio string. Unknown schemes and relative paths are INVALID_ARGUMENT.
absl::StatusOr<Target> ParseTarget(absl::string_view spec);

// URL percent-decoding; with plus_is_space, '+' decodes to ' ' (query component rules). Malformed escapes are
// INVALID_ARGUMENT.
absl::StatusOr<std::string> PercentDecode(absl::string_view in, bool plus_is_space);

}  // namespace gvshim::stdio
