#include "shim/node/node_config.h"

#include <toml++/toml.h>

#include <cmath>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "shim/base/status.h"
#include "shim/config/config.h"
#include "shim/execute/common/config.h"
#include "shim/oci/hardening.h"

namespace gvshim::node {
namespace {

absl::Status ToToml(const nlohmann::json& j, const std::string& path, toml::array* arr, toml::table* tab,
                    const std::string& key);

absl::StatusOr<toml::table> ObjectToTable(const nlohmann::json& j, const std::string& path) {
  toml::table t;
  for (auto it = j.begin(); it != j.end(); ++it) {
    RETURN_IF_ERROR(ToToml(it.value(), path.empty() ? it.key() : absl::StrCat(path, ".", it.key()), nullptr,
                           &t, it.key()));
  }
  return t;
}

// Converts one JSON value and inserts it into `arr` (append) or `tab` (under key).
absl::Status ToToml(const nlohmann::json& j, const std::string& path, toml::array* arr, toml::table* tab,
                    const std::string& key) {
  auto put = [&](auto&& v) {
    if (arr != nullptr) {
      arr->push_back(std::forward<decltype(v)>(v));
    } else {
      tab->insert_or_assign(key, std::forward<decltype(v)>(v));
    }
  };
  switch (j.type()) {
    case nlohmann::json::value_t::object: {
      ASSIGN_OR_RETURN(toml::table t, ObjectToTable(j, path));
      put(std::move(t));
      return absl::OkStatus();
    }
    case nlohmann::json::value_t::array: {
      toml::array a;
      for (const auto& e : j) RETURN_IF_ERROR(ToToml(e, path, &a, nullptr, ""));
      put(std::move(a));
      return absl::OkStatus();
    }
    case nlohmann::json::value_t::string:
      put(j.get<std::string>());
      return absl::OkStatus();
    case nlohmann::json::value_t::boolean:
      put(j.get<bool>());
      return absl::OkStatus();
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
      put(j.get<int64_t>());
      return absl::OkStatus();
    case nlohmann::json::value_t::number_float: {
      double d = j.get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) {
        put(static_cast<int64_t>(d));
      } else {
        put(d);
      }
      return absl::OkStatus();
    }
    case nlohmann::json::value_t::null:
      return absl::InvalidArgumentError(absl::StrCat(path, ": null has no TOML form; leave the key out"));
    default:
      return absl::InvalidArgumentError(absl::StrCat(path, ": unsupported value"));
  }
}

}  // namespace

absl::StatusOr<std::string> RenderGvshimToml(const std::string& json_text,
                                             const NodeConfigDefaults& defaults) {
  nlohmann::json j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("node config: not a JSON object of tables");
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it.value().is_object()) {
      return absl::InvalidArgumentError(absl::StrCat("node config: ", it.key(), ": must be a table"));
    }
  }
  if (!defaults.runsc_binary.empty() && !j["runsc"].contains("binary"))
    j["runsc"]["binary"] = defaults.runsc_binary;
  if (!defaults.profiles_dir.empty() && !j["hardening"].contains("profiles_dir")) {
    j["hardening"]["profiles_dir"] = defaults.profiles_dir;
  }
  ASSIGN_OR_RETURN(toml::table doc, ObjectToTable(j, ""));
  std::ostringstream out;
  out << "# Written by `gvshim node install` from the chart's sandbox.gvisor.config "
         "(docs/configuration.md).\n"
      << doc << "\n";
  std::string text = out.str();
  // The shim's own parsers decide what is valid.
  auto cfg = config::Parse(text, "gvshim.toml");
  if (!cfg.ok()) return Annotate(cfg.status(), "node config");
  if (cfg->hardening) {
    auto h = oci::ParseHardeningTable(*cfg->hardening, "gvshim.toml");
    if (!h.ok()) return Annotate(h.status(), "node config");
  }
  auto e = execute::ParseExecuteTable(cfg->execute.get(), "gvshim.toml");
  if (!e.ok()) return Annotate(e.status(), "node config");
  return text;
}

}  // namespace gvshim::node
