// containerd configuration for the gvisor runtime handler, as pure functions over TOML text (toml++ parses
// and emits; nothing here writes TOML by hand).
//
// containerd 1.6/1.7 merge an imported file into the root config by whole plugin tables: a drop-in that adds
// one runtime must carry the complete CRI plugin table, so it is built from `containerd config dump` (every
// existing runtime and option, as containerd resolved them) plus our runtime. The drop-in's `version` and
// plugin key follow the root config's version (1: plugins.cri, 2: plugins."io.containerd.grpc.v1.cri"):
// containerd overrides the root's version with an import's, so a mismatched drop-in would change how the root
// is read. containerd 2.x (root version 3) merges imports deeply and reads conf.d: its drop-in holds our
// runtime only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gvshim::node {

inline constexpr char kCriPluginV2[] = "io.containerd.grpc.v1.cri";
inline constexpr char kCriPluginV1[] = "cri";
inline constexpr char kCriRuntimePluginV3[] = "io.containerd.cri.v1.runtime";
inline constexpr char kGvisorRuntimeType[] = "io.containerd.gvisor.v1";

// What the drop-in registers.
struct RuntimeEntry {
  std::string handler = "gvisor";
  std::string runtime_type = kGvisorRuntimeType;
  std::string runtime_path;  // host path of containerd-shim-gvisor-v1 (containerd then needs no PATH lookup)
  std::string config_path;   // host path of gvshim.toml (runtime option ConfigPath)
};

struct RootConfig {
  bool exists = false;
  int64_t version = 0;  // as written; 0 when the key (or the file) is absent
  std::vector<std::string> imports;
};

// Parses the host's root config (`text` empty and exists=false when there is none).
absl::StatusOr<RootConfig> ParseRootConfig(const std::string& text, bool exists, const std::string& source);

// The major version from `containerd --version` ("containerd github.com/containerd/containerd 1.6.20~ds1
// ...").
absl::StatusOr<int> ParseContainerdMajor(const std::string& version_output);

enum class Schema {
  kV1,  // containerd 1.x, root version 1 (or none): [plugins.cri], full table
  kV2,  // containerd 1.x, root version 2: [plugins."io.containerd.grpc.v1.cri"], full table
  kV3,  // containerd 2.x, root version 3: [plugins."io.containerd.cri.v1.runtime"...runtimes.<handler>] only
};
const char* SchemaName(Schema s);

// Which drop-in this host needs. A missing root config is created (version 2 on 1.x, 3 on 2.x), so it counts
// as that version. Combinations containerd itself would misread are refused with the reason.
absl::StatusOr<Schema> ChooseSchema(int containerd_major, const RootConfig& root);

// The drop-in's text: for kV1/kV2 the CRI plugin table of `dump` (containerd config dump of the CURRENT
// config) with our runtime set; for kV3 our runtime alone. A runtime of the same handler name that is not
// gvshim's (another runtime_type) is refused: we never replace someone else's handler.
absl::StatusOr<std::string> BuildDropIn(Schema schema, const std::string& dump, const RuntimeEntry& entry);

// Whether the root's imports already cover `dropin_path` (exact path or glob, relative imports resolved
// against the root config's directory `root_dir`).
bool ImportsCover(const RootConfig& root, const std::string& root_dir, const std::string& dropin_path);

// The root config's new text with `dropin_path` appended to its imports (the file is created when absent,
// with the version ChooseSchema assumed). Comments and formatting of the original are not kept: the installer
// saves the original bytes and puts them back on uninstall.
absl::StatusOr<std::string> AddImport(const std::string& root_text, const RootConfig& root, Schema schema,
                                      const std::string& dropin_path);
// The root config's text without `dropin_path` in its imports (uninstall after someone else edited the file).
absl::StatusOr<std::string> RemoveImport(const std::string& root_text, const std::string& dropin_path);

// Checks two `containerd config dump` outputs: `after` must equal `before` except for our runtime, which must
// be present in `after` with our runtime_type, and the list of imported files. The error names the first
// difference ("plugins.io.containerd.grpc.v1.cri.containerd.runtimes.runc.options.SystemdCgroup: ...").
absl::Status CheckOnlyRuntimeAdded(Schema schema, const std::string& before, const std::string& after,
                                   const RuntimeEntry& entry);
// The handler's runtime_type in a dump ("" when the handler is not registered).
absl::StatusOr<std::string> RuntimeTypeInDump(Schema schema, const std::string& dump,
                                              const std::string& handler);

}  // namespace gvshim::node
