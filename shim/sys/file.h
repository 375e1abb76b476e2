// Whole-file helpers used wherever the shim reads or writes small files (specs, pid files, records, config).
#pragma once

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"

namespace gvshim::sys {

// The file's contents. A missing file is NOT_FOUND; errors read "open <path>: <strerror>".
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Writes data to <path>.tmp (created with `mode`) and renames it over path, so readers never see a partial
// file. The temporary file is removed if the rename fails.
absl::Status WriteFileAtomic(const std::string& path, const std::string& data, mode_t mode = 0644);

}  // namespace gvshim::sys
