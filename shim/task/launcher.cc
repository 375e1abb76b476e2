#include "shim/task/launcher.h"

#include <unistd.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "shim/base/log.h"
#include "shim/base/status.h"

namespace gvshim::task {
namespace {

using nlohmann::json;

absl::Status Prepend(json* process, const std::vector<std::string>& launcher_args, absl::string_view what) {
  auto args = process->find("args");
  if (args == process->end() || !args->is_array() || args->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": process.args is empty"));
  }
  if ((*args)[0].is_string() && (*args)[0].get<std::string>() == kLauncherPath) return absl::OkStatus();
  json out = json::array();
  for (const std::string& a : launcher_args) out.push_back(a);
  for (const json& a : *args) out.push_back(a);
  *args = std::move(out);
  return absl::OkStatus();
}

void AddReadOnlyBind(json* spec, const std::string& destination, const std::string& source) {
  json& mounts = (*spec)["mounts"];
  for (const json& m : mounts) {
    if (m.value("destination", "") == destination) return;
  }
  mounts.push_back({{"destination", destination},
                    {"type", "bind"},
                    {"source", source},
                    {"options", {"rbind", "ro", "nosuid", "nodev"}}});
}

}  // namespace

std::string SelfExe() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

std::string ResolveLauncher(const config::Config& cfg, const std::string& self_exe) {
  const std::string& setting = cfg.shim.launcher;
  if (setting == "off") return "";
  std::string path = setting;
  if (path.empty()) {
    auto slash = self_exe.rfind('/');
    if (slash == std::string::npos) return "";
    path = absl::StrCat(self_exe.substr(0, slash + 1), kLauncherFile);
  }
  if (::access(path.c_str(), X_OK) != 0) {
    log::Warnf("launcher %s is missing: terminals get runsc's host pty (no ttyname)", path);
    return "";
  }
  return path;
}

absl::Status AddLauncher(json* spec, const std::string& host_launcher, const std::string& host_bpf) {
  if (host_launcher.empty()) return absl::OkStatus();
  json& s = *spec;
  if (!s.contains("mounts")) s["mounts"] = json::array();
  AddReadOnlyBind(&s, kLauncherPath, host_launcher);
  if (!host_bpf.empty()) AddReadOnlyBind(&s, kExecSeccompPath, host_bpf);
  json& process = s["process"];
  if (process.value("terminal", false)) return Prepend(&process, {kLauncherPath, "--pty", "--"}, "spec");
  return absl::OkStatus();
}

absl::StatusOr<json> WrapExecProcess(const json& process, bool seccomp) {
  if (!process.is_object()) return absl::InvalidArgumentError("exec process is not a JSON object");
  const bool terminal = process.value("terminal", false);
  if (!terminal && !seccomp) return process;
  std::vector<std::string> launcher = {kLauncherPath};
  if (terminal) launcher.push_back("--pty");
  if (seccomp) {
    launcher.push_back("--seccomp");
    launcher.push_back(kExecSeccompPath);
  }
  launcher.push_back("--");
  json out = process;
  RETURN_IF_ERROR(Prepend(&out, launcher, "exec process"));
  return out;
}

}  // namespace gvshim::task
