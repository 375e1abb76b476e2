#include "shim/task/terminal.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "shim/base/log.h"
#include "shim/base/status.h"

namespace gvshim::task {
namespace {

using nlohmann::json;

absl::Status PrependRelay(json* process, absl::string_view what) {
  auto args = process->find("args");
  if (args == process->end() || !args->is_array() || args->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": a terminal process needs process.args"));
  }
  if ((*args)[0].is_string() && (*args)[0].get<std::string>() == kPtyRelayPath) return absl::OkStatus();
  args->insert(args->begin(), kPtyRelayPath);
  return absl::OkStatus();
}

}  // namespace

std::string SelfExe() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

std::string ResolvePtyRelay(const config::Config& cfg, const std::string& self_exe) {
  const std::string& setting = cfg.shim.pty_relay;
  if (setting == "off") return "";
  std::string path = setting;
  if (path.empty()) {
    auto slash = self_exe.rfind('/');
    if (slash == std::string::npos) return "";
    path = absl::StrCat(self_exe.substr(0, slash + 1), kPtyRelayFile);
  }
  if (::access(path.c_str(), X_OK) != 0) {
    log::Warnf("pty relay %s is missing: terminal processes get runsc's host pty (no ttyname)", path);
    return "";
  }
  return path;
}

absl::Status AddPtyRelay(json* spec, const std::string& host_relay) {
  if (host_relay.empty()) return absl::OkStatus();
  json& s = *spec;
  if (!s.contains("mounts")) s["mounts"] = json::array();
  for (const json& m : s["mounts"]) {
    if (m.value("destination", "") == kPtyRelayPath) return absl::OkStatus();
  }
  s["mounts"].push_back({{"destination", kPtyRelayPath},
                         {"type", "bind"},
                         {"source", host_relay},
                         {"options", {"rbind", "ro", "nosuid", "nodev"}}});
  json& process = s["process"];
  if (process.value("terminal", false)) return PrependRelay(&process, "spec");
  return absl::OkStatus();
}

absl::StatusOr<std::string> WrapTerminalProcess(const std::string& process_json) {
  json p = json::parse(process_json, nullptr, /*allow_exceptions=*/false);
  if (p.is_discarded() || !p.is_object())
    return absl::InvalidArgumentError("exec process is not a JSON object");
  if (!p.value("terminal", false)) return process_json;
  RETURN_IF_ERROR(PrependRelay(&p, "exec process"));
  return p.dump();
}

}  // namespace gvshim::task
