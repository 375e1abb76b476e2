#include "shim/config/config.h"

#include <toml++/toml.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "shim/sys/file.h"

namespace gvshim::config {
namespace {

std::string Where(const std::string& source, const toml::node& node, const std::string& key) {
  const auto& src = node.source();
  return absl::StrFormat("%s:%d: %s", source, src.begin.line, key);
}

absl::Status Unknown(const std::string& source, const toml::node& node, const std::string& key) {
  return absl::InvalidArgumentError(absl::StrCat(Where(source, node, key), ": unknown key"));
}

absl::Status GetString(const std::string& source, const toml::node& node, const std::string& key,
                       std::string* out) {
  if (auto v = node.value<std::string>(); v && node.is_string()) {
    *out = *v;
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(Where(source, node, key), ": expected a string"));
}

absl::Status GetBool(const std::string& source, const toml::node& node, const std::string& key, bool* out) {
  if (node.is_boolean()) {
    *out = *node.value<bool>();
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(Where(source, node, key), ": expected true or false"));
}

absl::Status ParseRunsc(const std::string& source, const toml::table& t, RunscConfig* rc) {
  for (const auto& [k, node] : t) {
    std::string key = absl::StrCat("runsc.", std::string(k.str()));
    absl::Status st;
    if (k == "binary") {
      st = GetString(source, node, key, &rc->binary);
    } else if (k == "root") {
      st = GetString(source, node, key, &rc->root);
      if (st.ok() && (rc->root.empty() || rc->root[0] != '/')) {
        st = absl::InvalidArgumentError(absl::StrCat(Where(source, node, key), ": must be an absolute path"));
      }
    } else if (k == "platform") {
      st = GetString(source, node, key, &rc->platform);
    } else if (k == "network") {
      st = GetString(source, node, key, &rc->network);
      if (st.ok() && rc->network != "none" && rc->network != "sandbox" && rc->network != "host") {
        st = absl::InvalidArgumentError(
            absl::StrCat(Where(source, node, key), ": must be \"none\", \"sandbox\" or \"host\""));
      }
    } else if (k == "debug") {
      st = GetBool(source, node, key, &rc->debug);
    } else if (k == "debug_log") {
      st = GetString(source, node, key, &rc->debug_log);
    } else if (k == "extra_flags") {
      const toml::array* arr = node.as_array();
      if (arr == nullptr) {
        st = absl::InvalidArgumentError(
            absl::StrCat(Where(source, node, key), ": expected an array of strings"));
      } else {
        rc->extra_flags.clear();
        for (const auto& el : *arr) {
          std::string s;
          st = GetString(source, el, key, &s);
          if (!st.ok()) break;
          rc->extra_flags.push_back(s);
        }
      }
    } else {
      st = Unknown(source, node, key);
    }
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::Status ParseShim(const std::string& source, const toml::table& t, ShimConfig* sc) {
  for (const auto& [k, node] : t) {
    std::string key = absl::StrCat("shim.", std::string(k.str()));
    if (k == "log_level") {
      if (absl::Status st = GetString(source, node, key, &sc->log_level); !st.ok()) return st;
      if (sc->log_level != "debug" && sc->log_level != "info" && sc->log_level != "warn" &&
          sc->log_level != "error") {
        return absl::InvalidArgumentError(
            absl::StrCat(Where(source, node, key), ": must be debug, info, warn or error"));
      }
    } else if (k == "wrap") {
      if (absl::Status st = GetString(source, node, key, &sc->wrap); !st.ok()) return st;
      if (!sc->wrap.empty() && sc->wrap != "off" && sc->wrap[0] != '/') {
        return absl::InvalidArgumentError(
            absl::StrCat(Where(source, node, key), ": must be \"\", \"off\" or an absolute path"));
      }
    } else if (k == "memory_check_ms") {
      auto v = node.value<int64_t>();
      if (!node.is_integer() || !v || *v < 0 || *v > 3600000) {
        return absl::InvalidArgumentError(
            absl::StrCat(Where(source, node, key), ": expected milliseconds from 0 (off) to 3600000"));
      }
      sc->memory_check_ms = static_cast<int>(*v);
    } else {
      return Unknown(source, node, key);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Config> Parse(const std::string& text, const std::string& source) {
  // Kept alive by the aliasing pointers below: copying a toml++ table loses its source positions.
  auto owner = std::make_shared<toml::table>();
  toml::table& root = *owner;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrFormat("%s:%d:%d: %s", source, e.source().begin.line,
                                                      e.source().begin.column, std::string(e.description())));
  }
  Config cfg;
  cfg.source = source;
  for (const auto& [k, node] : root) {
    const std::string key(k.str());
    const toml::table* t = node.as_table();
    if (key == "runsc" || key == "shim" || key == "hardening" || key == "execute") {
      if (t == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(Where(source, node, key), ": expected a table"));
      }
    }
    absl::Status st;
    if (key == "runsc") {
      st = ParseRunsc(source, *t, &cfg.runsc);
    } else if (key == "shim") {
      st = ParseShim(source, *t, &cfg.shim);
    } else if (key == "hardening") {
      cfg.hardening = std::shared_ptr<const toml::table>(owner, t);
    } else if (key == "execute") {
      cfg.execute = std::shared_ptr<const toml::table>(owner, t);
    } else {
      st = Unknown(source, node, key);
    }
    if (!st.ok()) return st;
  }
  return cfg;
}

absl::StatusOr<Config> Load(const std::string& path, bool explicit_path) {
  auto text = sys::ReadFileToString(path);
  if (!text.ok()) {
    if (!explicit_path && absl::IsNotFound(text.status())) return Config{};
    return absl::InvalidArgumentError(absl::StrCat("config ", text.status().message()));
  }
  return Parse(*text, path);
}

}  // namespace gvshim::config
