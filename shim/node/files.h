// Installing files on the host: content-addressed (SHA-256), through a temp file in the target directory and
// a rename, so that containerd never sees a half-written binary or config and a re-run with the same content
// changes nothing (not even the mtime).
#pragma once

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"

namespace gvshim::node {

// Lower-case hex SHA-256 of a file's content / of a string.
absl::StatusOr<std::string> Sha256File(const std::string& path);
std::string Sha256(const std::string& data);

enum class Change { kUnchanged, kWritten };

// Makes `dst` hold `data` with `mode`: unchanged when it already does; else written to a temp file next to
// it, fsync'ed, renamed over it. Parent directories are created (0755).
absl::StatusOr<Change> InstallContent(const std::string& dst, const std::string& data, mode_t mode);
// The same for a file's content (a binary from the node image).
absl::StatusOr<Change> InstallFile(const std::string& src, const std::string& dst, mode_t mode);

// Removes a file; a missing one is fine. Returns whether something was removed.
absl::StatusOr<bool> RemoveFile(const std::string& path);

// Reads a file; NOT_FOUND when it does not exist.
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace gvshim::node
