#include "shim/task/wrap.h"

#include <unistd.h>

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "shim/base/log.h"
#include "shim/base/status.h"

namespace gvshim::task {
namespace {

using nlohmann::json;

absl::Status Prepend(json* process, const std::vector<std::string>& wrap_args, absl::string_view what) {
  auto args = process->find("args");
  if (args == process->end() || !args->is_array() || args->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": process.args is empty"));
  }
  if ((*args)[0].is_string() && (*args)[0].get<std::string>() == kWrapPath) return absl::OkStatus();
  json out = json::array();
  for (const std::string& a : wrap_args) out.push_back(a);
  for (const json& a : *args) out.push_back(a);
  *args = std::move(out);
  return absl::OkStatus();
}

}  // namespace

std::string SelfExe() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

std::string ResolveWrap(const config::Config& cfg, const std::string& self_exe) {
  const std::string& setting = cfg.shim.wrap;
  if (setting == "off") return "";
  std::vector<std::string> candidates;
  if (!setting.empty()) {
    candidates.push_back(setting);
  } else if (auto slash = self_exe.rfind('/'); slash != std::string::npos) {
    const std::string dir = self_exe.substr(0, slash);
    candidates = {absl::StrCat(dir, "/gvshim-helpers/", kWrapFile),
                  absl::StrCat(dir, "/../lib/gvshim/", kWrapFile), absl::StrCat(dir, "/", kWrapFile)};
  }
  for (const std::string& path : candidates) {
    if (::access(path.c_str(), X_OK) == 0) return path;
  }
  log::Warnf(
      "%s not found (%s): terminals get runsc's host pty (no ttyname), and execs into a container with a "
      "seccomp profile are refused",
      kWrapFile, setting.empty() ? "next to the shim" : setting);
  return "";
}

absl::Status AddWrap(json* spec, const std::string& host_wrap) {
  if (host_wrap.empty()) return absl::OkStatus();
  json& s = *spec;
  if (!s.contains("mounts")) s["mounts"] = json::array();
  bool mounted = false;
  for (const json& m : s["mounts"]) mounted = mounted || m.value("destination", "") == kWrapPath;
  if (!mounted) {
    s["mounts"].push_back({{"destination", kWrapPath},
                           {"type", "bind"},
                           {"source", host_wrap},
                           {"options", {"rbind", "ro", "nosuid", "nodev"}}});
  }
  json& process = s["process"];
  if (process.value("terminal", false)) return Prepend(&process, {kWrapPath, "--pty", "--"}, "spec");
  return absl::OkStatus();
}

absl::StatusOr<json> WrapExecProcess(const json& process, const std::string& seccomp_bpf) {
  if (!process.is_object()) return absl::InvalidArgumentError("exec process is not a JSON object");
  const bool terminal = process.value("terminal", false);
  if (!terminal && seccomp_bpf.empty()) return process;
  std::vector<std::string> wrap = {kWrapPath};
  if (terminal) wrap.push_back("--pty");
  json out = process;
  if (!seccomp_bpf.empty()) {
    wrap.push_back("--seccomp-env");
    if (!out.contains("env") || !out["env"].is_array()) out["env"] = json::array();
    json env = json::array();
    for (const json& e : out["env"]) {
      if (!(e.is_string() && absl::StartsWith(e.get<std::string>(), absl::StrCat(kSeccompEnv, "=")))) {
        env.push_back(e);
      }
    }
    env.push_back(absl::StrCat(kSeccompEnv, "=", absl::BytesToHexString(seccomp_bpf)));
    out["env"] = std::move(env);
  }
  wrap.push_back("--");
  RETURN_IF_ERROR(Prepend(&out, wrap, "exec process"));
  return out;
}

}  // namespace gvshim::task
