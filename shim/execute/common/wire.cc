#include "shim/execute/common/wire.h"

#include "absl/strings/str_cat.h"

namespace gvshim::execute {
namespace {

// Reads fields by name; the first failure is kept and named.
class Reader {
 public:
  // optional: a missing field keeps its default (the config, so that a shim and a gvshim of neighbouring
  // versions still understand each other); otherwise it is an error.
  Reader(const nlohmann::json& j, std::string where, bool optional = false)
      : j_(j), where_(std::move(where)), optional_(optional) {
    if (!j_.is_object()) Fail("", "expected an object");
  }

  template <typename T>
  void Get(const char* key, T* out) {
    if (!status_.ok()) return;
    auto it = j_.find(key);
    if (it == j_.end()) {
      if (!optional_) Fail(key, "missing");
      return;
    }
    try {
      *out = it->template get<T>();
    } catch (const nlohmann::json::exception& e) {
      Fail(key, e.what());
    }
  }
  void GetLimits(const char* key, Limits* l) {
    if (!status_.ok()) return;
    auto it = j_.find(key);
    if (it == j_.end()) {
      if (!optional_) Fail(key, "missing");
      return;
    }
    Reader r(*it, absl::StrCat(where_, ".", key), optional_);
    for (const LimitField& f : kLimitFields) r.Get(f.name, &(l->*f.member));
    if (!r.status().ok()) status_ = r.status();
  }
  void Fail(const std::string& key, absl::string_view what) {
    if (status_.ok()) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat("execute wire: ", where_, key.empty() ? "" : ".", key, ": ", what));
    }
  }
  const absl::Status& status() const { return status_; }

 private:
  const nlohmann::json& j_;
  const std::string where_;
  const bool optional_;
  absl::Status status_;
};

}  // namespace

nlohmann::json ToJson(const Limits& l) {
  nlohmann::json j = nlohmann::json::object();
  for (const LimitField& f : kLimitFields) j[f.name] = l.*f.member;
  return j;
}

nlohmann::json ToJson(const ExecuteConfig& c) {
  return {{"enabled", c.enabled},
          {"require_annotation", c.require_annotation},
          {"socket_dir", c.socket_dir},
          {"start", c.start == StartMode::kEager ? "eager" : "lazy"},
          {"max_concurrent", c.max_concurrent},
          {"max_queue", c.max_queue},
          {"queue_timeout_ms", c.queue_timeout_ms},
          {"max_code_bytes", c.max_code_bytes},
          {"python", c.python},
          {"node", c.node},
          {"runner_args", c.runner_args},
          {"python_args", c.python_args},
          {"node_args", c.node_args},
          {"server", c.server},
          {"allow_weak_isolation", c.allow_weak_isolation},
          {"helpers_dir", c.helpers_dir},
          {"tmpfs_bytes", c.tmpfs_bytes},
          {"limits", ToJson(c.default_limits)},
          {"max_limits", ToJson(c.max_limits)}};
}

absl::StatusOr<ExecuteConfig> ConfigFromJson(const nlohmann::json& j) {
  ExecuteConfig c;
  Reader r(j, "config", /*optional=*/true);
  std::string start = c.start == StartMode::kEager ? "eager" : "lazy";
  r.Get("enabled", &c.enabled);
  r.Get("require_annotation", &c.require_annotation);
  r.Get("socket_dir", &c.socket_dir);
  r.Get("start", &start);
  r.Get("max_concurrent", &c.max_concurrent);
  r.Get("max_queue", &c.max_queue);
  r.Get("queue_timeout_ms", &c.queue_timeout_ms);
  r.Get("max_code_bytes", &c.max_code_bytes);
  r.Get("python", &c.python);
  r.Get("node", &c.node);
  r.Get("runner_args", &c.runner_args);
  r.Get("python_args", &c.python_args);
  r.Get("node_args", &c.node_args);
  r.Get("server", &c.server);
  r.Get("allow_weak_isolation", &c.allow_weak_isolation);
  r.Get("helpers_dir", &c.helpers_dir);
  r.Get("tmpfs_bytes", &c.tmpfs_bytes);
  r.GetLimits("limits", &c.default_limits);
  r.GetLimits("max_limits", &c.max_limits);
  if (r.status().ok() && start != "lazy" && start != "eager")
    r.Fail("start", "must be \"lazy\" or \"eager\"");
  if (!r.status().ok()) return r.status();
  c.start = start == "eager" ? StartMode::kEager : StartMode::kLazy;
  return c;
}

nlohmann::json ToJson(const ContainerInfo& c) {
  const runsc::GlobalOptions& g = c.runsc;
  return {{"id", c.id},
          {"ns", c.ns},
          {"sandbox_id", c.sandbox_id},
          {"bundle", c.bundle},
          {"rootfs", c.rootfs},
          {"annotations", c.annotations},
          {"exec_container", c.exec_container},
          {"exec_error", c.exec_error},
          {"runsc",
           {{"binary", g.binary},
            {"root", g.root},
            {"log_path", g.log_path},
            {"log_format", g.log_format},
            {"debug", g.debug},
            {"debug_log", g.debug_log},
            {"platform", g.platform},
            {"network", g.network},
            {"oci_seccomp", g.oci_seccomp},
            {"extra_flags", g.extra_flags},
            {"timeout_ms", absl::ToInt64Milliseconds(g.timeout)}}}};
}

absl::StatusOr<ContainerInfo> ContainerFromJson(const nlohmann::json& j) {
  ContainerInfo c;
  Reader r(j, "container");
  r.Get("id", &c.id);
  r.Get("ns", &c.ns);
  r.Get("sandbox_id", &c.sandbox_id);
  r.Get("bundle", &c.bundle);
  r.Get("rootfs", &c.rootfs);
  r.Get("annotations", &c.annotations);
  if (j.contains("exec_container")) r.Get("exec_container", &c.exec_container);
  if (j.contains("exec_error")) r.Get("exec_error", &c.exec_error);
  if (!r.status().ok()) return r.status();
  if (c.id.empty()) r.Fail("id", "must not be empty");
  auto it = j.find("runsc");
  if (it == j.end()) r.Fail("runsc", "missing");
  if (!r.status().ok()) return r.status();
  Reader g(*it, "container.runsc");
  runsc::GlobalOptions& o = c.runsc;
  int64_t timeout_ms = 0;
  g.Get("binary", &o.binary);
  g.Get("root", &o.root);
  g.Get("log_path", &o.log_path);
  g.Get("log_format", &o.log_format);
  g.Get("debug", &o.debug);
  g.Get("debug_log", &o.debug_log);
  g.Get("platform", &o.platform);
  g.Get("network", &o.network);
  g.Get("oci_seccomp", &o.oci_seccomp);
  g.Get("extra_flags", &o.extra_flags);
  g.Get("timeout_ms", &timeout_ms);
  if (!g.status().ok()) return g.status();
  o.timeout = absl::Milliseconds(timeout_ms);
  return c;
}

nlohmann::json ToJson(const SandboxHello& h) {
  return {{"op", "sandbox"},
          {"ns", h.ns},
          {"sandbox_id", h.sandbox_id},
          {"shim_pid", h.shim_pid},
          {"log_level", h.log_level},
          {"config", ToJson(h.config)}};
}

absl::StatusOr<SandboxHello> HelloFromJson(const nlohmann::json& j) {
  SandboxHello h;
  Reader r(j, "sandbox");
  r.Get("ns", &h.ns);
  r.Get("sandbox_id", &h.sandbox_id);
  r.Get("shim_pid", &h.shim_pid);
  r.Get("log_level", &h.log_level);
  if (!r.status().ok()) return r.status();
  auto it = j.find("config");
  if (it == j.end()) return absl::InvalidArgumentError("execute wire: sandbox.config: missing");
  auto c = ConfigFromJson(*it);
  if (!c.ok()) return c.status();
  h.config = std::move(*c);
  if (h.sandbox_id.empty())
    return absl::InvalidArgumentError("execute wire: sandbox.sandbox_id: must not be empty");
  return h;
}

}  // namespace gvshim::execute
