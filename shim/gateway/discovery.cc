#include "shim/gateway/discovery.h"

#include <dirent.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "shim/sys/file.h"

namespace gvshim::gateway {

std::string PodRecord::Name() const {
  if (!pod_name.empty()) return absl::StrCat(pod_namespace, "/", pod_name);
  return absl::StrCat(ns, "/", sandbox_id);
}

absl::StatusOr<PodRecord> ParseRecord(absl::string_view json_text, const std::string& file) {
  auto j = nlohmann::json::parse(json_text.begin(), json_text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": not a JSON object"));
  }
  PodRecord r;
  r.file = file;
  auto str = [&](const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  r.ns = str("namespace");
  r.sandbox_id = str("sandbox_id");
  r.pod_namespace = str("pod_namespace");
  r.pod_name = str("pod_name");
  r.socket = str("socket");
  if (auto it = j.find("server_pid"); it != j.end() && it->is_number_integer())
    r.server_pid = it->get<int64_t>();
  if (r.socket.empty()) return absl::InvalidArgumentError(absl::StrCat(file, ": no \"socket\""));
  if (auto c = j.find("containers"); c != j.end() && c->is_array()) {
    for (const auto& el : *c) {
      if (!el.is_object()) continue;
      if (auto p = el.find("python"); p != el.end() && p->is_boolean() && p->get<bool>()) r.python = true;
      if (auto n = el.find("node"); n != el.end() && n->is_boolean() && n->get<bool>()) r.node = true;
    }
  }
  if (auto a = j.find("annotations"); a != j.end() && a->is_object()) {
    std::map<std::string, std::string> annotations;
    for (const auto& [k, v] : a->items()) {
      if (v.is_string()) annotations[k] = v.get<std::string>();
    }
    r.annotations = std::move(annotations);
  }
  return r;
}

absl::StatusOr<std::vector<PodRecord>> ScanRecords(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("cannot read discovery directory ", dir, ": ", std::strerror(errno)));
  }
  std::vector<PodRecord> out;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.size() <= 5 || !absl::EndsWith(name, ".json")) continue;
    std::string path = absl::StrCat(dir, "/", name);
    auto text = sys::ReadFileToString(path);
    if (!text.ok()) continue;  // removed since readdir
    auto rec = ParseRecord(*text, path);
    if (rec.ok()) out.push_back(std::move(*rec));
  }
  ::closedir(d);
  return out;
}

bool Selector::Matches(const PodRecord& r, std::string* why) const {
  if (!pod_namespace.empty() && r.pod_namespace != pod_namespace) {
    *why = absl::StrCat("pod namespace \"", r.pod_namespace, "\" is not \"", pod_namespace, "\"");
    return false;
  }
  if (!pod_name_prefix.empty() && !absl::StartsWith(r.pod_name, pod_name_prefix)) {
    *why = absl::StrCat("pod name \"", r.pod_name, "\" does not start with \"", pod_name_prefix, "\"");
    return false;
  }
  if (annotations.empty()) return true;
  if (!r.annotations.has_value()) {
    *why =
        "the record carries no annotations (its Execute server does not write them), so the annotation "
        "selector cannot match";
    return false;
  }
  for (const auto& [k, v] : annotations) {
    auto it = r.annotations->find(k);
    if (it == r.annotations->end() || it->second != v) {
      *why = absl::StrCat("annotation ", k, "=", v, " missing");
      return false;
    }
  }
  return true;
}

absl::StatusOr<Selector> ParseSelector(const std::vector<std::string>& annotation_specs,
                                       const std::string& pod_spec) {
  Selector s;
  for (const std::string& spec : annotation_specs) {
    size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--select-annotation wants KEY=VALUE, got \"", spec, "\""));
    }
    s.annotations[spec.substr(0, eq)] = spec.substr(eq + 1);
  }
  if (!pod_spec.empty()) {
    size_t slash = pod_spec.find('/');
    if (slash == std::string::npos || slash == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--select-pod wants NAMESPACE/NAME_PREFIX, got \"", pod_spec, "\""));
    }
    s.pod_namespace = pod_spec.substr(0, slash);
    s.pod_name_prefix = pod_spec.substr(slash + 1);
  }
  return s;
}

}  // namespace gvshim::gateway
