// gvshim-launch inside containers (shim/launch/launch.cc). runsc cannot give a process two things a kubelet's
// user expects: a terminal of the sandbox's own devpts (runsc passes the caller's host pty through, so
// ttyname() fails), and the container's seccomp profile on exec'd processes (runsc applies it to the init
// only). When the launcher is available, every container but a pod's sandbox container gets it bind-mounted
// read-only at kLauncherPath and, if its spec has a seccomp profile, the profile compiled to BPF at
// kExecSeccompPath. A terminal init runs as `launch --pty -- ARGS`; an exec as `launch [--pty] [--seccomp
// FILE] -- ARGS`.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "shim/config/config.h"

namespace gvshim::task {

inline constexpr char kLauncherPath[] = "/.gvshim/launch";
inline constexpr char kExecSeccompPath[] = "/.gvshim/seccomp.bpf";
inline constexpr char kLauncherFile[] = "gvshim-launch";
// The BPF program of the container's profile, in the bundle (bind-mounted at kExecSeccompPath).
inline constexpr char kExecSeccompFile[] = "gvshim-seccomp.bpf";

// The running binary's path (readlink /proc/self/exe); "" if unreadable.
std::string SelfExe();

// The launcher on the host per [shim] launcher: "" = kLauncherFile next to `self_exe` (the shim binary),
// "off" = none. Returns "" when disabled or when the file is missing (logged).
std::string ResolveLauncher(const config::Config& cfg, const std::string& self_exe);

// Adds the read-only bind mount of `host_launcher` at kLauncherPath (and of `host_bpf`, if not empty, at
// kExecSeccompPath) and, if the spec's process has a terminal, runs it through `launch --pty`. Pure; the spec
// must have passed hardening's structural checks.
absl::Status AddLauncher(nlohmann::json* spec, const std::string& host_launcher, const std::string& host_bpf);

// An exec's OCI Process run through the launcher: with --pty if it asks for a terminal, with --seccomp when
// `seccomp`. Unchanged when neither applies. INVALID_ARGUMENT for a process without args.
absl::StatusOr<nlohmann::json> WrapExecProcess(const nlohmann::json& process, bool seccomp);

}  // namespace gvshim::task
