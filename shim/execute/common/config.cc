#include "shim/execute/common/config.h"

#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "shim/base/hash.h"

namespace gvshim::execute {
namespace {

// sockaddr_un.sun_path is 108 bytes; the socket is <socket_dir>/<16 hex>.sock plus a NUL.
constexpr size_t kMaxSocketDir = 108 - 1 - 22;
// A job travels in one frame (64 MiB max, base64 for binary parts); keep code well below that.
constexpr int64_t kMaxCodeBytesCeiling = 16 << 20;
// A result carries stdout and stderr (each up to output_bytes) base64-encoded in that same frame: two streams
// of 16 MiB take about 43 MiB. A larger limit could only ever end in an internal_error ("result too large").
constexpr int64_t kMaxOutputBytesCeiling = 16 << 20;

class Parser {
 public:
  explicit Parser(const std::string& file) : file_(file) {}

  std::string Where(const toml::node& node, const std::string& key) const {
    return absl::StrFormat("%s:%d: %s", file_, node.source().begin.line, key);
  }
  absl::Status Error(const toml::node& node, const std::string& key, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(Where(node, key), ": ", what));
  }

  absl::Status Bool(const toml::node& node, const std::string& key, bool* out) const {
    if (!node.is_boolean()) return Error(node, key, "expected true or false");
    *out = *node.value<bool>();
    return absl::OkStatus();
  }
  absl::Status String(const toml::node& node, const std::string& key, std::string* out) const {
    if (!node.is_string()) return Error(node, key, "expected a string");
    *out = *node.value<std::string>();
    return absl::OkStatus();
  }
  absl::Status Int(const toml::node& node, const std::string& key, int64_t min, int64_t max,
                   int64_t* out) const {
    if (!node.is_integer()) return Error(node, key, "expected an integer");
    int64_t v = *node.value<int64_t>();
    if (v < min || v > max) return Error(node, key, absl::StrFormat("must be between %d and %d", min, max));
    *out = v;
    return absl::OkStatus();
  }
  absl::Status Strings(const toml::node& node, const std::string& key, std::vector<std::string>* out) const {
    const toml::array* arr = node.as_array();
    if (arr == nullptr) return Error(node, key, "expected an array of strings");
    out->clear();
    for (const auto& el : *arr) {
      if (!el.is_string()) return Error(el, key, "expected an array of strings");
      out->push_back(*el.value<std::string>());
    }
    return absl::OkStatus();
  }

  absl::Status Limits(const toml::node& node, const std::string& prefix, execute::Limits* out) const {
    const toml::table* t = node.as_table();
    if (t == nullptr) return Error(node, prefix, "expected a table");
    for (const auto& [k, n] : *t) {
      const std::string name(k.str());
      const std::string key = absl::StrCat(prefix, ".", name);
      uint64_t* field = nullptr;
      for (const LimitField& f : kLimitFields) {
        if (name == f.name) field = &(out->*f.member);
      }
      if (field == nullptr) return Error(n, key, "unknown key");
      int64_t v = 0;
      const int64_t ceiling =
          name == "output_bytes" ? kMaxOutputBytesCeiling : std::numeric_limits<int64_t>::max();
      if (absl::Status st = Int(n, key, 1, ceiling, &v); !st.ok()) return st;
      *field = static_cast<uint64_t>(v);
    }
    return absl::OkStatus();
  }

 private:
  const std::string& file_;
};

}  // namespace

bool OptsIn(const std::map<std::string, std::string>& annotations) {
  auto it = annotations.find(kOptInAnnotation);
  if (it == annotations.end()) return false;
  std::string v = absl::AsciiStrToLower(it->second);
  return v == "true" || v == "1";
}

std::string SocketKey(const std::string& ns, const std::string& sandbox_id) {
  return absl::StrFormat("%016x", Fnv1a64(absl::StrCat(ns, "/", sandbox_id)));
}

absl::StatusOr<ExecuteConfig> ParseExecuteTable(const toml::table* t, const std::string& file) {
  ExecuteConfig cfg;
  if (t == nullptr) return cfg;
  Parser p(file);
  const toml::node* limits_node = nullptr;
  const toml::node* max_limits_node = nullptr;
  for (const auto& [k, node] : *t) {
    const std::string name(k.str());
    const std::string key = absl::StrCat("execute.", name);
    absl::Status st;
    int64_t v = 0;
    if (name == "enabled") {
      st = p.Bool(node, key, &cfg.enabled);
    } else if (name == "require_annotation") {
      st = p.Bool(node, key, &cfg.require_annotation);
    } else if (name == "socket_dir") {
      st = p.String(node, key, &cfg.socket_dir);
      if (st.ok() && (cfg.socket_dir.empty() || cfg.socket_dir[0] != '/')) {
        st = p.Error(node, key, "must be an absolute path");
      } else if (st.ok() && cfg.socket_dir.size() > kMaxSocketDir) {
        st = p.Error(node, key,
                     absl::StrFormat("is %d bytes; at most %d fit a Unix socket path", cfg.socket_dir.size(),
                                     kMaxSocketDir));
      }
    } else if (name == "start") {
      std::string s;
      st = p.String(node, key, &s);
      if (st.ok()) {
        if (s == "lazy") {
          cfg.start = StartMode::kLazy;
        } else if (s == "eager") {
          cfg.start = StartMode::kEager;
        } else {
          st = p.Error(node, key, "must be \"lazy\" or \"eager\"");
        }
      }
    } else if (name == "max_concurrent") {
      st = p.Int(node, key, 1, 1024, &v);
      cfg.max_concurrent = static_cast<uint32_t>(v);
    } else if (name == "max_queue") {
      st = p.Int(node, key, 0, 65536, &v);
      cfg.max_queue = static_cast<uint32_t>(v);
    } else if (name == "queue_timeout_ms") {
      st = p.Int(node, key, 0, std::numeric_limits<int64_t>::max() / 1000000, &v);
      cfg.queue_timeout_ms = static_cast<uint64_t>(v);
    } else if (name == "max_code_bytes") {
      st = p.Int(node, key, 1, kMaxCodeBytesCeiling, &v);
      cfg.max_code_bytes = static_cast<uint64_t>(v);
    } else if (name == "python" || name == "node") {
      std::string* out = name == "python" ? &cfg.python : &cfg.node;
      st = p.String(node, key, out);
      if (st.ok() && out->empty()) st = p.Error(node, key, "must not be empty");
    } else if (name == "server") {
      st = p.String(node, key, &cfg.server);
      if (st.ok() && (cfg.server.empty() || cfg.server[0] != '/'))
        st = p.Error(node, key, "must be an absolute path");
    } else if (name == "allow_weak_isolation") {
      st = p.Bool(node, key, &cfg.allow_weak_isolation);
    } else if (name == "helpers_dir") {
      st = p.String(node, key, &cfg.helpers_dir);
      if (st.ok() && !cfg.helpers_dir.empty() && cfg.helpers_dir[0] != '/')
        st = p.Error(node, key, "must be an absolute path");
    } else if (name == "tmpfs_bytes") {
      st = p.Int(node, key, 1 << 20, int64_t{1} << 40, &v);
      cfg.tmpfs_bytes = static_cast<uint64_t>(v);
    } else if (name == "runner_args") {
      st = p.Strings(node, key, &cfg.runner_args);
    } else if (name == "python_args") {
      st = p.Strings(node, key, &cfg.python_args);
    } else if (name == "node_args") {
      st = p.Strings(node, key, &cfg.node_args);
    } else if (name == "limits") {
      st = p.Limits(node, key, &cfg.default_limits);
      limits_node = &node;
    } else if (name == "max_limits") {
      st = p.Limits(node, key, &cfg.max_limits);
      max_limits_node = &node;
    } else {
      st = p.Error(node, key, "unknown key");
    }
    if (!st.ok()) return st;
  }
  // A default above its maximum would make every request that omits the field exceed the maximum.
  for (const LimitField& f : kLimitFields) {
    const uint64_t def = cfg.default_limits.*f.member, max = cfg.max_limits.*f.member;
    if (def > max) {
      const toml::node& where = limits_node != nullptr       ? *limits_node
                                : max_limits_node != nullptr ? *max_limits_node
                                                             : static_cast<const toml::node&>(*t);
      return p.Error(
          where, absl::StrCat("execute.limits.", f.name),
          absl::StrFormat("default %d is above the maximum %d (execute.max_limits.%s)", def, max, f.name));
    }
  }
  return cfg;
}

Limits EffectiveLimits(const Limits& req, const ExecuteConfig& cfg) {
  Limits out;
  for (const LimitField& f : kLimitFields) {
    const uint64_t r = req.*f.member;
    out.*f.member = r == 0 ? cfg.default_limits.*f.member : std::min(r, cfg.max_limits.*f.member);
  }
  return out;
}

}  // namespace gvshim::execute
