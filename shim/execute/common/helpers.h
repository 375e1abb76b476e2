// gvshim's in-sandbox helpers and the execute container they are mounted in.
//
// For every container of an opted-in pod whose image has an interpreter, the shim creates an *execute
// container* in the pod's sandbox (supervisor/exec_container.h): same root filesystem (read-only), its own
// pid and mount namespaces, so the pod's containers and the snippets see nothing of each other. The runners
// run there (`runsc exec`), and gvshim's helpers directory is bind-mounted read-only at /.gvshim in it:
//   gvshim-launch             static launcher: the container's init, and the isolated start of a Node child
//   _gvshim_isolate.abi3.so   unshare/mount/prctl for the Python runner (CPython stable ABI, no libc)
// so that nothing but the interpreter has to come from the image.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gvshim::execute {

inline constexpr char kHelpersMountPoint[] = "/.gvshim";
inline constexpr char kLauncherName[] = "gvshim-launch";
inline constexpr char kPyIsolateName[] = "_gvshim_isolate.abi3.so";
// Where a snippet works: a private tmpfs per snippet, mounted over this (empty) directory of the execute
// container.
inline constexpr char kWorkspace[] = "/workspace";
// The execute container's part of a container's bundle: its config.json.
inline constexpr char kExecBundleDir[] = "gvshim-execute";

// The helpers directory: `configured` if not empty, else <dir of this binary>/gvshim-helpers (the build tree,
// a flat install), else <dir of this binary>/../lib/gvshim (an FHS install). The directory must hold both
// helpers; the error lists where it looked.
absl::StatusOr<std::string> FindHelpersDir(const std::string& configured);
absl::Status CheckHelpersDir(const std::string& dir);

// The id (before runsc::ContainerId) of the execute container of container `target_id`. containerd ids
// cannot contain '/', so it never equals a real container's id.
std::string ExecContainerId(const std::string& target_id);

}  // namespace gvshim::execute
