#include "shim/main/flags.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "shim/base/hash.h"

namespace gvshim::shim_main {

absl::StatusOr<Flags> ParseFlags(const std::vector<std::string>& args) {
  Flags f;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    if (a.empty() || a[0] != '-') {
      if (!f.action.empty())
        return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", a, "\""));
      if (a != "start" && a != "delete")
        return absl::InvalidArgumentError(absl::StrCat("unknown action \"", a, "\""));
      f.action = a;
      continue;
    }
    std::string name = a.substr(a.rfind("--", 0) == 0 ? 2 : 1);
    std::string value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    auto take = [&](std::string* out) -> absl::Status {
      if (!has_value) {
        if (i + 1 >= args.size())
          return absl::InvalidArgumentError(absl::StrCat("flag -", name, " needs a value"));
        value = args[++i];
      }
      *out = value;
      return absl::OkStatus();
    };
    auto boolean = [&](bool* out) -> absl::Status {
      if (!has_value || value == "true" || value == "1") {
        *out = true;
      } else if (value == "false" || value == "0") {
        *out = false;
      } else {
        return absl::InvalidArgumentError(absl::StrCat("flag -", name, ": not a boolean: ", value));
      }
      return absl::OkStatus();
    };
    absl::Status st;
    if (name == "namespace")
      st = take(&f.ns);
    else if (name == "address")
      st = take(&f.address);
    else if (name == "publish-binary")
      st = take(&f.publish_binary);
    else if (name == "id")
      st = take(&f.id);
    else if (name == "bundle")
      st = take(&f.bundle);
    else if (name == "gvshim-config")
      st = take(&f.config_path);
    else if (name == "gvshim-socket")
      st = take(&f.socket);
    else if (name == "debug")
      st = boolean(&f.debug);
    else if (name == "v" || name == "version")
      st = boolean(&f.version);
    else if (name == "socket" || name == "systemd-cgroup") {
      // Flags of the runc shim some setups pass along; not used by gvshim.
      std::string ignored;
      if (name == "socket") st = take(&ignored);
    } else {
      st = absl::InvalidArgumentError(absl::StrCat("unknown flag -", name));
    }
    if (!st.ok()) return st;
  }
  return f;
}

std::string SocketPath(const std::string& containerd_address, const std::string& ns,
                       const std::string& group_id) {
  // Two FNV-1a passes with different offsets give 128 bits: enough to keep distinct (address, ns, id) apart.
  // (The offsets are not the standard basis; kept so the paths stay those of earlier versions.)
  std::string key = absl::StrCat(containerd_address, "\n", ns, "\n", group_id);
  return absl::StrFormat("/run/containerd/s/gv-%016x%016x", Fnv1a64(key, 1469598103934665603ULL),
                         Fnv1a64(key, 7809847782465536322ULL));
}

}  // namespace gvshim::shim_main
