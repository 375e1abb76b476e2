// Finding an interpreter in a container's root filesystem from the host, without ever leaving that rootfs:
// symlinks are resolved as the container would see them (an absolute target restarts at the rootfs, ".."
// stops at it), so a link to /usr/bin/python3 never lands on the host's python.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace gvshim::execute {

// Resolves `path` (absolute, as seen inside the container) under `rootfs` (a host directory), following
// symlinks inside the rootfs. Returns the resolved path as seen inside the container ("/usr/bin/python3.11").
// NOT_FOUND if a component is missing, FAILED_PRECONDITION for a symlink loop or a non-directory in the
// middle.
absl::StatusOr<std::string> ResolveInRoot(const std::string& rootfs, const std::string& path);

struct Interpreter {
  std::string path;      // as seen in the container, as it was looked up (e.g. /usr/bin/python3)
  std::string resolved;  // the executable it resolves to inside the container
};

// Directories searched for an interpreter given by name.
inline constexpr const char* kInterpreterDirs[] = {"/usr/bin", "/usr/local/bin", "/bin"};

// Looks `name` up in the rootfs: an absolute name is taken as is; otherwise the first of kInterpreterDirs
// where <dir>/<name> resolves (inside the rootfs) to an executable regular file.
std::optional<Interpreter> FindInterpreter(const std::string& rootfs, const std::string& name);

}  // namespace gvshim::execute
