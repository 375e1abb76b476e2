// The shim's TOML configuration (default /etc/containerd/gvshim.toml; containerd passes the path as runtime
// option ConfigPath). Unknown keys and wrong types are errors that name the file, line and key: never a
// silent fallback.
#pragma once

#include <toml++/toml.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gvshim::config {

inline constexpr char kDefaultPath[] = "/etc/containerd/gvshim.toml";

struct RunscConfig {
  std::string binary = "runsc";
  std::string root = "/run/gvshim/runsc";  // the shim appends /<containerd namespace>
  std::string platform;                    // "" = runsc's default (systrap in 20240729, ptrace in 20221219)
  std::string network = "none";
  bool debug = false;
  std::string debug_log;                 // runsc --debug-log (directory or file pattern) when debug is on
  std::vector<std::string> extra_flags;  // passed verbatim before the subcommand
};

struct ShimConfig {
  std::string log_level = "info";
  // gvshim-wrap on the host, bind-mounted read-only into containers: terminals get a pty of the sandbox's own
  // devpts, and execs of a container with a seccomp profile get that profile. "" = found next to the shim
  // (see task::ResolveWrap), "off" = none (terminals then get runsc's pass-through host pty, on which
  // ttyname() fails, and an exec into a container with a seccomp profile is refused), or an absolute path.
  std::string wrap;
  // How often each running container with a memory limit has its usage checked against the limit (gVisor does
  // not enforce a container's own limit inside a pod's sandbox); over the limit, it is OOM-killed. 0 = never.
  int memory_check_ms = 1000;
};

struct Config {
  std::string source;  // file the config came from ("" = built-in defaults)
  RunscConfig runsc;
  ShimConfig shim;
  // The [hardening] table (with its source positions), interpreted by the oci module; null when absent.
  std::shared_ptr<const toml::table> hardening;
  // The [execute] table, interpreted by the execute module; null when absent.
  std::shared_ptr<const toml::table> execute;
};

// Parses TOML text; `source` names the file in error messages.
absl::StatusOr<Config> Parse(const std::string& text, const std::string& source);
// Loads a file. A missing file at the DEFAULT path yields the defaults; a missing explicit path is an error.
absl::StatusOr<Config> Load(const std::string& path, bool explicit_path);

}  // namespace gvshim::config
