// gvshim-wrap inside containers (shim/wrap/wrap.cc). runsc cannot give a process two things a kubelet's user
// expects: a terminal of the sandbox's own devpts (runsc passes the caller's host pty through, so ttyname()
// fails), and the container's seccomp profile on exec'd processes (runsc applies it to the init only). When
// the wrapper is available, every container but a pod's sandbox container gets it bind-mounted read-only at
// kWrapPath. A terminal init runs as `wrap --pty -- ARGS`; an exec as `wrap [--pty] [--seccomp-env] -- ARGS`,
// with the profile compiled to BPF by the shim in the exec's environment (kSeccompEnv).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "shim/config/config.h"

namespace gvshim::task {

inline constexpr char kWrapPath[] = "/.gvshim-wrap";
inline constexpr char kWrapFile[] = "gvshim-wrap";
inline constexpr char kSeccompEnv[] = "GVSHIM_SECCOMP_BPF";

// The running binary's path (readlink /proc/self/exe); "" if unreadable.
std::string SelfExe();

// The wrapper on the host per [shim] wrap: "off" = none; an absolute path; "" = the first that exists of
// <dir of self_exe>/gvshim-helpers/gvshim-wrap (build tree), <dir>/../lib/gvshim/gvshim-wrap (install.sh),
// <dir>/gvshim-wrap. Returns "" when disabled or not found (logged).
std::string ResolveWrap(const config::Config& cfg, const std::string& self_exe);

// Adds the read-only bind mount of `host_wrap` at kWrapPath and, if the spec's process has a terminal, runs
// it through `wrap --pty`. Pure; the spec must have passed hardening's structural checks.
absl::Status AddWrap(nlohmann::json* spec, const std::string& host_wrap);

// An exec's OCI Process run through the wrapper: with --pty if it asks for a terminal, with the BPF program
// `seccomp_bpf` (raw instructions) when not empty. Unchanged when neither applies. INVALID_ARGUMENT for a
// process without args.
absl::StatusOr<nlohmann::json> WrapExecProcess(const nlohmann::json& process, const std::string& seccomp_bpf);

}  // namespace gvshim::task
