// A pod sandbox on gVisor's own network stack (runsc --network=sandbox) and the node's network namespace.
//
// With --network=sandbox, runsc moves the interfaces of the pod's network namespace into gVisor, so it
// refuses to run in the node's (root) namespace. Its test for "root namespace" is whether
// /proc/sys/net/core/rmem_default exists, a file Linux showed only in the root namespace until recent kernels
// made those sysctls per namespace (this machine's 6.18 shows it everywhere): there runsc refuses every pod.
// The shim makes the test itself, properly: the namespace the sandbox will use against init's
// (/proc/1/ns/net), by device and inode; where pid 1 cannot be inspected, against the fixed inode kernels
// from 6.18 on give the node's namespace. When they differ, `runsc create` and `runsc start` run with
// /proc/sys/net hidden (sys::SpawnOptions::hide_proc_sys_net), so that runsc's own test passes; when they are
// the same, the shim refuses the pod itself.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace gvshim::task {

struct NetnsPaths {
  std::string init = "/proc/1/ns/net";     // the node's namespace
  std::string self = "/proc/self/ns/net";  // the shim's (a container without a network namespace uses it)
  std::string kernel_release;              // uname -r; empty: this kernel's
};

// Whether this kernel release gives the node's network namespace a fixed inode (NET_NS_INIT_INO, 6.18 and
// later): then it can be recognised when /proc/1/ns/net cannot be read.
bool KernelNumbersInitNetFixed(const std::string& release);

// For the spec of a container that creates a sandbox with --network=sandbox: true when the sandbox's network
// namespace is not the node's, so `runsc create` may hide /proc/sys/net. FAILED_PRECONDITION when it is the
// node's (a hostNetwork pod; the spec's namespace path is the node's). false, without error, when the node's
// namespace cannot be told (the shim then leaves the decision to runsc's own test).
absl::StatusOr<bool> SandboxNetnsIsNotTheNodes(const nlohmann::json& spec, const NetnsPaths& paths = {});

}  // namespace gvshim::task
