// Whole-file helpers used wherever the shim reads or writes small files (specs, pid files, records, config).
#pragma once

#include <sys/types.h>

#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"

namespace gvshim::sys {

// The file's contents. A missing file is NOT_FOUND; errors read "open <path>: <strerror>".
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Whether a replaced file must survive a power loss. kVolatile is for files under containerd's state
// directory (bundles, /run/containerd/...): that directory does not outlive a reboot and its containers die
// with the host, so fsync buys nothing there and costs milliseconds per file on a disk-backed state dir.
enum class Durability { kDurable, kVolatile };

// The one way the shim replaces a file: `fill` writes the new contents into a fresh temporary file next to
// path (a unique name, O_EXCL, so no stale or concurrent temporary file is reused), which gets exactly `mode`
// (whatever the umask), is fsync'd (kDurable) and renamed over path; then the directory is fsync'd
// (kDurable). Readers see the old file or the whole new one, also after the shim crashes; with kDurable the
// new one also survives a host crash once this returns. On any error the temporary file is removed and path
// is untouched. fill gets the temporary file's fd and name.
absl::Status WriteFileAtomicWith(const std::string& path, mode_t mode,
                                 absl::FunctionRef<absl::Status(int fd, const std::string& tmp)> fill,
                                 Durability durability = Durability::kDurable);

// WriteFileAtomicWith for data already in memory.
absl::Status WriteFileAtomic(const std::string& path, const std::string& data, mode_t mode = 0644,
                             Durability durability = Durability::kDurable);

}  // namespace gvshim::sys
