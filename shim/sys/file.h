// Whole-file helpers used wherever the shim reads or writes small files (specs, pid files, records, config).
#pragma once

#include <sys/types.h>

#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"

namespace gvshim::sys {

// The file's contents. A missing file is NOT_FOUND; errors read "open <path>: <strerror>".
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// The one way the shim replaces a file: `fill` writes the new contents into a fresh temporary file next to
// path (a unique name, O_EXCL, so no stale or concurrent temporary file is reused), which gets exactly `mode`
// (whatever the umask), is fsync'd and renamed over path; then the directory is fsync'd. Readers see the old
// file or the whole new one, and the new one survives a crash once this returns. On any error the temporary
// file is removed and path is untouched. fill gets the temporary file's fd and name.
absl::Status WriteFileAtomicWith(const std::string& path, mode_t mode,
                                 absl::FunctionRef<absl::Status(int fd, const std::string& tmp)> fill);

// WriteFileAtomicWith for data already in memory.
absl::Status WriteFileAtomic(const std::string& path, const std::string& data, mode_t mode = 0644);

}  // namespace gvshim::sys
