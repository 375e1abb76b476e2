// The [hardening] table of gvshim.toml.
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "shim/base/status.h"
#include "shim/oci/hardening.h"

namespace gvshim::oci {
namespace {

class TableReader {
 public:
  explicit TableReader(const std::string& file) : file_(file) {}

  absl::Status Error(const toml::source_region& where, absl::string_view key,
                     absl::string_view reason) const {
    return absl::InvalidArgumentError(absl::StrCat(file_, ":", where.begin.line, ":", where.begin.column,
                                                   ": hardening.", key, ": ", reason));
  }

  absl::StatusOr<bool> Bool(const toml::node& node, absl::string_view key) const {
    if (auto v = node.value<bool>(); v.has_value() && node.is_boolean()) return *v;
    return Error(node.source(), key, absl::StrCat("must be a boolean, not ", TypeName(node)));
  }

  absl::StatusOr<std::string> String(const toml::node& node, absl::string_view key) const {
    if (node.is_string()) return *node.value<std::string>();
    return Error(node.source(), key, absl::StrCat("must be a string, not ", TypeName(node)));
  }

  absl::StatusOr<uint32_t> Id(const toml::node& node, absl::string_view key) const {
    if (!node.is_integer())
      return Error(node.source(), key, absl::StrCat("must be an integer, not ", TypeName(node)));
    int64_t v = *node.value<int64_t>();
    if (v <= 0 || v > UINT32_MAX - 1) {
      return Error(node.source(), key, absl::StrCat("must be a non-root id between 1 and ", UINT32_MAX - 1));
    }
    return static_cast<uint32_t>(v);
  }

  static std::string TypeName(const toml::node& node) {
    switch (node.type()) {
      case toml::node_type::table:
        return "table";
      case toml::node_type::array:
        return "array";
      case toml::node_type::string:
        return "string";
      case toml::node_type::integer:
        return "integer";
      case toml::node_type::floating_point:
        return "float";
      case toml::node_type::boolean:
        return "boolean";
      default:
        return "date/time";
    }
  }

  absl::StatusOr<TmpfsMount> Tmpfs(const toml::node& node, const std::string& key) const {
    if (node.is_string()) {
      auto t = ParseTmpfsSpec(*node.value<std::string>());
      if (!t.ok()) return Error(node.source(), key, t.status().message());
      return *t;
    }
    const toml::table* table = node.as_table();
    if (table == nullptr) {
      return Error(
          node.source(), key,
          absl::StrCat("must be a table {destination, size, mode, noexec} or \"/path:size[:mode]\", not ",
                       TypeName(node)));
    }
    TmpfsMount t{"", "", "1777", false};
    for (auto&& [k, v] : *table) {
      std::string sub = absl::StrCat(key, ".", std::string(k.str()));
      if (k == "destination") {
        ASSIGN_OR_RETURN(t.destination, String(v, sub));
      } else if (k == "size") {
        ASSIGN_OR_RETURN(t.size, String(v, sub));
      } else if (k == "mode") {
        ASSIGN_OR_RETURN(t.mode, String(v, sub));
      } else if (k == "noexec") {
        ASSIGN_OR_RETURN(t.noexec, Bool(v, sub));
      } else {
        return Error(k.source(), sub, "unknown key (known: destination, size, mode, noexec)");
      }
    }
    if (auto status = ValidateTmpfs(t); !status.ok()) return Error(node.source(), key, status.message());
    return t;
  }

 private:
  const std::string& file_;
};

}  // namespace

absl::StatusOr<HardeningPolicy> ParseHardeningTable(const toml::table& table, const std::string& file) {
  TableReader r(file);
  HardeningPolicy policy;
  for (auto&& [k, node] : table) {
    std::string key(k.str());
    if (key == "enabled") {
      ASSIGN_OR_RETURN(policy.enabled, r.Bool(node, key));
    } else if (key == "readonly_rootfs") {
      ASSIGN_OR_RETURN(policy.readonly_rootfs, r.Bool(node, key));
    } else if (key == "no_new_privileges") {
      ASSIGN_OR_RETURN(policy.no_new_privileges, r.Bool(node, key));
    } else if (key == "allow_annotation_loosening") {
      ASSIGN_OR_RETURN(policy.allow_annotation_loosening, r.Bool(node, key));
    } else if (key == "allow_privileged") {
      ASSIGN_OR_RETURN(policy.allow_privileged, r.Bool(node, key));
    } else if (key == "host_network") {
      ASSIGN_OR_RETURN(policy.host_network, r.String(node, key));
      if (policy.host_network != "refuse" && policy.host_network != "isolated" &&
          policy.host_network != "host") {
        return r.Error(node.source(), key, "must be \"refuse\", \"isolated\" or \"host\"");
      }
    } else if (key == "sysctls") {
      ASSIGN_OR_RETURN(policy.sysctls, r.String(node, key));
      if (policy.sysctls != "refuse" && policy.sysctls != "ignore") {
        return r.Error(node.source(), key, "must be \"refuse\" or \"ignore\"");
      }
    } else if (key == "run_as_uid") {
      ASSIGN_OR_RETURN(policy.force_uid, r.Id(node, key));
    } else if (key == "run_as_gid") {
      ASSIGN_OR_RETURN(policy.force_gid, r.Id(node, key));
    } else if (key == "seccomp_profile") {
      ASSIGN_OR_RETURN(policy.seccomp_profile, r.String(node, key));
    } else if (key == "profiles_dir") {
      ASSIGN_OR_RETURN(policy.profiles_dir, r.String(node, key));
      if (policy.profiles_dir.empty() || policy.profiles_dir[0] != '/') {
        return r.Error(node.source(), key, "must be an absolute path");
      }
    } else if (key == "allowed_capabilities") {
      const toml::array* caps = node.as_array();
      if (caps == nullptr) return r.Error(node.source(), key, "must be an array of capability names");
      policy.allowed_capabilities.clear();
      for (size_t i = 0; i < caps->size(); ++i) {
        std::string sub = absl::StrCat(key, "[", i, "]");
        ASSIGN_OR_RETURN(std::string name, r.String((*caps)[i], sub));
        std::optional<std::string> normal = NormalizeCapability(name);
        if (!normal.has_value()) {
          return r.Error((*caps)[i].source(), sub, absl::StrCat("unknown capability \"", name, "\""));
        }
        policy.allowed_capabilities.push_back(*normal);
      }
    } else if (key == "tmpfs") {
      const toml::array* list = node.as_array();
      if (list == nullptr) return r.Error(node.source(), key, "must be an array of tmpfs mounts");
      policy.tmpfs.clear();
      std::set<std::string> seen;
      for (size_t i = 0; i < list->size(); ++i) {
        std::string sub = absl::StrCat(key, "[", i, "]");
        ASSIGN_OR_RETURN(TmpfsMount t, r.Tmpfs((*list)[i], sub));
        if (!seen.insert(t.destination).second) {
          return r.Error((*list)[i].source(), sub, absl::StrCat(t.destination, " is listed twice"));
        }
        policy.tmpfs.push_back(std::move(t));
      }
    } else {
      return r.Error(
          k.source(), key,
          "unknown key (known: enabled, readonly_rootfs, tmpfs, allowed_capabilities, no_new_privileges, "
          "run_as_uid, run_as_gid, seccomp_profile, profiles_dir, allow_annotation_loosening, "
          "allow_privileged, "
          "host_network, sysctls)");
    }
  }
  if (auto path = ResolveProfilePath(policy); !path.ok()) {
    const toml::node* node = table.get("seccomp_profile");
    return r.Error(node->source(), "seccomp_profile", path.status().message());
  }
  return policy;
}

}  // namespace gvshim::oci
