#include "shim/node/containerd_config.h"

#include <fnmatch.h>
#include <toml++/toml.h>

#include <filesystem>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "shim/base/status.h"

namespace gvshim::node {
namespace {

// toml++ reports parse errors by exception; they are turned into a Status here and go no further.
absl::StatusOr<toml::table> ParseToml(const std::string& text, const std::string& source) {
  try {
    return toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ":", e.source().begin.line, ": ", std::string(e.description())));
  }
}

std::string Emit(const toml::table& t) {
  std::ostringstream out;
  out << t << "\n";
  return out.str();
}

// The key under [plugins] that holds the CRI runtime configuration in a dump of this containerd.
const char* DumpCriKey(Schema s) { return s == Schema::kV3 ? kCriRuntimePluginV3 : kCriPluginV2; }

toml::table RuntimeTable(const RuntimeEntry& e) {
  toml::table options{{"ConfigPath", e.config_path}};
  toml::array annotations{"dev.gvshim.*"};
  return toml::table{{"runtime_type", e.runtime_type},
                     {"runtime_path", e.runtime_path},
                     {"pod_annotations", annotations},
                     {"container_annotations", annotations},
                     {"options", options}};
}

// plugins.<key>.containerd.runtimes in `doc`, or null.
toml::table* Runtimes(toml::table& doc, const char* key) {
  return doc["plugins"][key]["containerd"]["runtimes"].as_table();
}

std::string Header(Schema s) {
  return absl::StrCat("# Written by `gvshim node install` (", SchemaName(s),
                      "); removed by `gvshim node uninstall`. Do not edit: a re-install rewrites it from\n"
                      "# `containerd config dump`, so change the root config instead.\n");
}

// Compares a and b recursively; `skip` holds dotted paths to ignore. The first difference goes to `diff`.
bool SameNode(const toml::node& a, const toml::node& b, const std::string& path,
              const std::vector<std::string>& skip, std::string& diff) {
  for (const auto& s : skip) {
    if (path == s) return true;
  }
  if (a.type() != b.type()) {
    diff = absl::StrCat(path, ": type changed");
    return false;
  }
  if (const toml::table* ta = a.as_table()) {
    const toml::table& tb = *b.as_table();
    for (auto&& [k, v] : *ta) {
      std::string p = path.empty() ? std::string(k.str()) : absl::StrCat(path, ".", std::string(k.str()));
      const toml::node* other = tb.get(k.str());
      if (other == nullptr) {
        bool skipped = false;
        for (const auto& s : skip) skipped |= (p == s);
        if (skipped) continue;
        diff = absl::StrCat(p, ": removed");
        return false;
      }
      if (!SameNode(v, *other, p, skip, diff)) return false;
    }
    for (auto&& [k, v] : tb) {
      std::string p = path.empty() ? std::string(k.str()) : absl::StrCat(path, ".", std::string(k.str()));
      if (ta->get(k.str()) == nullptr) {
        bool skipped = false;
        for (const auto& s : skip) skipped |= (p == s);
        if (skipped) continue;
        diff = absl::StrCat(p, ": added");
        return false;
      }
    }
    return true;
  }
  std::ostringstream sa, sb;
  if (const toml::array* aa = a.as_array()) {
    sa << *aa;
    sb << *b.as_array();
  } else {
    a.visit([&](auto&& v) { sa << v; });
    b.visit([&](auto&& v) { sb << v; });
  }
  if (sa.str() != sb.str()) {
    diff = absl::StrCat(path, ": ", sa.str(), " -> ", sb.str());
    return false;
  }
  return true;
}

}  // namespace

const char* SchemaName(Schema s) {
  switch (s) {
    case Schema::kV1:
      return "containerd 1.x, config version 1";
    case Schema::kV2:
      return "containerd 1.x, config version 2";
    case Schema::kV3:
      return "containerd 2.x, config version 3";
  }
  return "?";
}

absl::StatusOr<RootConfig> ParseRootConfig(const std::string& text, bool exists, const std::string& source) {
  RootConfig rc;
  rc.exists = exists;
  if (!exists) return rc;
  ASSIGN_OR_RETURN(toml::table doc, ParseToml(text, source));
  if (const toml::node* v = doc.get("version")) {
    auto n = v->value<int64_t>();
    if (!n) return absl::InvalidArgumentError(absl::StrCat(source, ": version: not an integer"));
    rc.version = *n;
  }
  if (const toml::node* im = doc.get("imports")) {
    const toml::array* arr = im->as_array();
    if (arr == nullptr) return absl::InvalidArgumentError(absl::StrCat(source, ": imports: not an array"));
    for (const toml::node& e : *arr) {
      auto s = e.value<std::string>();
      if (!s) return absl::InvalidArgumentError(absl::StrCat(source, ": imports: not an array of strings"));
      rc.imports.push_back(*s);
    }
  }
  return rc;
}

absl::StatusOr<int> ParseContainerdMajor(const std::string& version_output) {
  // "containerd <module> <version> <revision>"; the version may start with "v".
  std::vector<std::string> words =
      absl::StrSplit(absl::StripAsciiWhitespace(version_output), ' ', absl::SkipWhitespace());
  for (size_t i = 1; i < words.size(); ++i) {
    std::string w(absl::StripPrefix(words[i], "v"));
    std::vector<std::string> parts = absl::StrSplit(w, '.');
    int major = 0, minor = 0;
    if (parts.size() >= 2 && absl::SimpleAtoi(parts[0], &major) && absl::SimpleAtoi(parts[1], &minor)) {
      return major;
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("containerd --version: no version in \"",
                                                 absl::StripAsciiWhitespace(version_output), "\""));
}

absl::StatusOr<Schema> ChooseSchema(int major, const RootConfig& root) {
  if (major == 1) {
    if (!root.exists) return Schema::kV2;
    if (root.version <= 1) return Schema::kV1;
    if (root.version == 2) return Schema::kV2;
    return absl::FailedPreconditionError(
        absl::StrCat("the root config has version ", root.version,
                     ", which containerd 1.x cannot read; fix the host's config"));
  }
  if (major == 2) {
    if (!root.exists || root.version == 3) return Schema::kV3;
    return absl::FailedPreconditionError(absl::StrCat(
        "containerd 2.x with a version ", root.version,
        " root config: migrate it first (`containerd config migrate`), then re-run the installer"));
  }
  return absl::UnimplementedError(
      absl::StrCat("containerd ", major, ".x is not supported (1.6, 1.7, 2.x are)"));
}

absl::StatusOr<std::string> RuntimeTypeInDump(Schema schema, const std::string& dump,
                                              const std::string& handler) {
  ASSIGN_OR_RETURN(toml::table doc, ParseToml(dump, "containerd config dump"));
  toml::table* rt = Runtimes(doc, DumpCriKey(schema));
  if (rt == nullptr) return std::string();
  toml::node* h = rt->get(handler);
  if (h == nullptr || !h->is_table()) return std::string();
  return std::string(h->as_table()->get("runtime_type") ? h->as_table()->get("runtime_type")->value_or("")
                                                        : "");
}

absl::StatusOr<std::string> BuildDropIn(Schema schema, const std::string& dump, const RuntimeEntry& entry) {
  ASSIGN_OR_RETURN(std::string existing, RuntimeTypeInDump(schema, dump, entry.handler));
  if (!existing.empty() && existing != entry.runtime_type) {
    return absl::AlreadyExistsError(
        absl::StrCat("containerd already has a runtime \"", entry.handler, "\" with runtime_type \"",
                     existing, "\" (not gvshim's); remove it from the host's config first"));
  }
  if (schema == Schema::kV3) {
    toml::table runtimes{{entry.handler, RuntimeTable(entry)}};
    toml::table plugin{{"containerd", toml::table{{"runtimes", runtimes}}}};
    toml::table doc{{"version", 3}, {"plugins", toml::table{{kCriRuntimePluginV3, plugin}}}};
    return Header(schema) + Emit(doc);
  }
  ASSIGN_OR_RETURN(toml::table dumped, ParseToml(dump, "containerd config dump"));
  toml::table* cri = dumped["plugins"][kCriPluginV2].as_table();
  if (cri == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "containerd config dump has no [plugins.\"", kCriPluginV2, "\"] table: is the CRI plugin disabled?"));
  }
  toml::table table = *cri;  // the whole table, every runtime and option as containerd resolved them
  toml::table* containerd = table["containerd"].as_table();
  if (containerd == nullptr) {
    table.insert("containerd", toml::table{});
    containerd = table["containerd"].as_table();
  }
  if (!containerd->contains("runtimes")) containerd->insert("runtimes", toml::table{});
  toml::table* runtimes = (*containerd)["runtimes"].as_table();
  if (runtimes == nullptr)
    return absl::FailedPreconditionError("containerd config dump: runtimes is not a table");
  runtimes->insert_or_assign(entry.handler, RuntimeTable(entry));
  const char* key = schema == Schema::kV1 ? kCriPluginV1 : kCriPluginV2;
  toml::table doc{{"version", schema == Schema::kV1 ? 1 : 2}, {"plugins", toml::table{{key, table}}}};
  return Header(schema) + Emit(doc);
}

bool ImportsCover(const RootConfig& root, const std::string& root_dir, const std::string& dropin_path) {
  for (const std::string& im : root.imports) {
    std::string p = im;
    if (!p.empty() && p[0] != '/') p = (std::filesystem::path(root_dir) / p).string();
    if (p == dropin_path) return true;
    if (p.find('*') != std::string::npos && ::fnmatch(p.c_str(), dropin_path.c_str(), FNM_PATHNAME) == 0) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<std::string> AddImport(const std::string& root_text, const RootConfig& root, Schema schema,
                                      const std::string& dropin_path) {
  toml::table doc;
  if (root.exists) {
    ASSIGN_OR_RETURN(doc, ParseToml(root_text, "root config"));
  } else {
    doc.insert("version", schema == Schema::kV3 ? 3 : 2);
  }
  if (!doc.contains("imports")) doc.insert("imports", toml::array{});
  toml::array* imports = doc["imports"].as_array();
  if (imports == nullptr) return absl::InvalidArgumentError("root config: imports is not an array");
  imports->push_back(dropin_path);
  return Emit(doc);
}

absl::StatusOr<std::string> RemoveImport(const std::string& root_text, const std::string& dropin_path) {
  ASSIGN_OR_RETURN(toml::table doc, ParseToml(root_text, "root config"));
  toml::array* imports = doc["imports"].as_array();
  if (imports == nullptr) return Emit(doc);
  for (size_t i = 0; i < imports->size();) {
    auto s = (*imports)[i].value<std::string>();
    if (s && *s == dropin_path) {
      imports->erase(imports->begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
  if (imports->empty()) doc.erase("imports");
  return Emit(doc);
}

absl::Status CheckOnlyRuntimeAdded(Schema schema, const std::string& before, const std::string& after,
                                   const RuntimeEntry& entry) {
  ASSIGN_OR_RETURN(toml::table b, ParseToml(before, "config dump (before)"));
  ASSIGN_OR_RETURN(toml::table a, ParseToml(after, "config dump (after)"));
  ASSIGN_OR_RETURN(std::string type, RuntimeTypeInDump(schema, after, entry.handler));
  if (type != entry.runtime_type) {
    return absl::FailedPreconditionError(absl::StrCat("the merged config does not register runtime \"",
                                                      entry.handler, "\" (runtime_type \"", type, "\")"));
  }
  std::string ours = absl::StrCat("plugins.", DumpCriKey(schema), ".containerd.runtimes.", entry.handler);
  std::string diff;
  if (!SameNode(b, a, "", {ours, "imports"}, diff)) {
    return absl::FailedPreconditionError(
        absl::StrCat("the merged config changes more than runtime \"", entry.handler, "\": ", diff));
  }
  return absl::OkStatus();
}

}  // namespace gvshim::node
