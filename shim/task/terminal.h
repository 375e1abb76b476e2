// Terminals inside the sandbox. runsc gives a terminal process the caller's host pty as its stdio, which the
// sandbox's devpts does not know (ttyname() fails, `tty` prints "not a tty"). When gvshim-ptyrelay is
// available, every container gets it bind-mounted read-only at kPtyRelayPath, and each terminal process (the
// init of a container with process.terminal, and terminal execs) is started through it: the relay opens a pty
// of the sandbox's own devpts and runs the command on it. See shim/ptyrelay/ptyrelay.cc.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "shim/config/config.h"

namespace gvshim::task {

inline constexpr char kPtyRelayPath[] = "/.gvshim/pty-relay";
inline constexpr char kPtyRelayFile[] = "gvshim-ptyrelay";

// The running binary's path (readlink /proc/self/exe); "" if unreadable.
std::string SelfExe();

// The relay on the host per [shim] pty_relay: "" = kPtyRelayFile next to `self_exe` (the shim binary), "off"
// = none. Returns "" when disabled or when the file is missing (logged: terminals then keep the host pty).
std::string ResolvePtyRelay(const config::Config& cfg, const std::string& self_exe);

// Adds the read-only bind mount of `host_relay` at kPtyRelayPath and, if the spec's process has a terminal,
// puts the relay in front of process.args. Pure; the spec must have passed hardening's structural checks.
absl::Status AddPtyRelay(nlohmann::json* spec, const std::string& host_relay);

// For an exec's OCI Process (JSON): when it asks for a terminal, returns it with the relay in front of args;
// otherwise returns it unchanged. INVALID_ARGUMENT for a process without args.
absl::StatusOr<std::string> WrapTerminalProcess(const std::string& process_json);

}  // namespace gvshim::task
