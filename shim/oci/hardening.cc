#include "shim/oci/hardening.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "shim/base/status.h"
#include "shim/seccomp/profile.h"

namespace gvshim::oci {
namespace {

using nlohmann::json;

constexpr const char* kCapabilitySets[] = {"bounding", "effective", "inheritable", "permitted", "ambient"};

// Linux capabilities up to 5.9 (CAP_CHECKPOINT_RESTORE).
constexpr const char* kCapabilities[] = {"CAP_CHOWN",
                                         "CAP_DAC_OVERRIDE",
                                         "CAP_DAC_READ_SEARCH",
                                         "CAP_FOWNER",
                                         "CAP_FSETID",
                                         "CAP_KILL",
                                         "CAP_SETGID",
                                         "CAP_SETUID",
                                         "CAP_SETPCAP",
                                         "CAP_LINUX_IMMUTABLE",
                                         "CAP_NET_BIND_SERVICE",
                                         "CAP_NET_BROADCAST",
                                         "CAP_NET_ADMIN",
                                         "CAP_NET_RAW",
                                         "CAP_IPC_LOCK",
                                         "CAP_IPC_OWNER",
                                         "CAP_SYS_MODULE",
                                         "CAP_SYS_RAWIO",
                                         "CAP_SYS_CHROOT",
                                         "CAP_SYS_PTRACE",
                                         "CAP_SYS_PACCT",
                                         "CAP_SYS_ADMIN",
                                         "CAP_SYS_BOOT",
                                         "CAP_SYS_NICE",
                                         "CAP_SYS_RESOURCE",
                                         "CAP_SYS_TIME",
                                         "CAP_SYS_TTY_CONFIG",
                                         "CAP_MKNOD",
                                         "CAP_LEASE",
                                         "CAP_AUDIT_WRITE",
                                         "CAP_AUDIT_CONTROL",
                                         "CAP_SETFCAP",
                                         "CAP_MAC_OVERRIDE",
                                         "CAP_MAC_ADMIN",
                                         "CAP_SYSLOG",
                                         "CAP_WAKE_ALARM",
                                         "CAP_BLOCK_SUSPEND",
                                         "CAP_AUDIT_READ",
                                         "CAP_PERFMON",
                                         "CAP_BPF",
                                         "CAP_CHECKPOINT_RESTORE"};

// containerd's defaults for a container without a privileged flag.
constexpr const char* kDefaultMaskedPaths[] = {
    "/proc/acpi",       "/proc/asound",      "/proc/kcore",       "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"};
constexpr const char* kDefaultReadonlyPaths[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                                 "/proc/sysrq-trigger"};

absl::Status SpecError(absl::string_view path, absl::string_view reason) {
  return absl::InvalidArgumentError(absl::StrCat("spec: ", path, ": ", reason));
}

absl::Status ExpectType(const json& parent, const char* key, json::value_t type, absl::string_view path) {
  auto it = parent.find(key);
  if (it == parent.end() || it->type() == type) return absl::OkStatus();
  json probe(type);
  return SpecError(path, absl::StrCat("must be ", probe.type_name(), ", not ", it->type_name()));
}

// Structural checks on a process object (the spec's, or an exec's from containerd): the fields the transforms
// touch must have their OCI types, so that no transform meets a wrong type.
absl::Status CheckProcess(const json& process) {
  if (!process.is_object())
    return SpecError("process", absl::StrCat("must be an object, not ", process.type_name()));
  RETURN_IF_ERROR(ExpectType(process, "user", json::value_t::object, "process.user"));
  RETURN_IF_ERROR(ExpectType(process, "capabilities", json::value_t::object, "process.capabilities"));
  RETURN_IF_ERROR(ExpectType(process, "noNewPrivileges", json::value_t::boolean, "process.noNewPrivileges"));
  if (auto user = process.find("user"); user != process.end()) {
    for (const char* key : {"uid", "gid"}) {
      auto it = user->find(key);
      if (it != user->end() &&
          !(it->is_number_unsigned() || (it->is_number_integer() && it->get<int64_t>() >= 0))) {
        return SpecError(absl::StrCat("process.user.", key), "must be a non-negative integer");
      }
    }
    RETURN_IF_ERROR(ExpectType(*user, "additionalGids", json::value_t::array, "process.user.additionalGids"));
  }
  if (auto caps = process.find("capabilities"); caps != process.end()) {
    for (const char* set : kCapabilitySets) {
      std::string path = absl::StrCat("process.capabilities.", set);
      RETURN_IF_ERROR(ExpectType(*caps, set, json::value_t::array, path));
      if (auto it = caps->find(set); it != caps->end()) {
        for (size_t i = 0; i < it->size(); ++i) {
          if (!(*it)[i].is_string()) return SpecError(absl::StrCat(path, "[", i, "]"), "must be a string");
        }
      }
    }
  }
  return absl::OkStatus();
}

// Structural checks on the parts of the spec the transforms touch.
absl::Status CheckSpec(const json& spec) {
  if (!spec.is_object())
    return SpecError("(document)", absl::StrCat("must be an object, not ", spec.type_name()));
  if (!spec.contains("process")) return SpecError("process", "missing");
  if (!spec.contains("root")) return SpecError("root", "missing");
  RETURN_IF_ERROR(ExpectType(spec, "process", json::value_t::object, "process"));
  RETURN_IF_ERROR(ExpectType(spec, "root", json::value_t::object, "root"));
  RETURN_IF_ERROR(ExpectType(spec, "mounts", json::value_t::array, "mounts"));
  RETURN_IF_ERROR(ExpectType(spec, "linux", json::value_t::object, "linux"));
  RETURN_IF_ERROR(ExpectType(spec, "annotations", json::value_t::object, "annotations"));
  const json& root = spec["root"];
  if (!root.contains("path")) return SpecError("root.path", "missing");
  RETURN_IF_ERROR(ExpectType(root, "path", json::value_t::string, "root.path"));
  RETURN_IF_ERROR(ExpectType(root, "readonly", json::value_t::boolean, "root.readonly"));
  RETURN_IF_ERROR(CheckProcess(spec["process"]));
  if (auto mounts = spec.find("mounts"); mounts != spec.end()) {
    for (size_t i = 0; i < mounts->size(); ++i) {
      const json& m = (*mounts)[i];
      std::string path = absl::StrCat("mounts[", i, "]");
      if (!m.is_object()) return SpecError(path, "must be an object");
      if (!m.contains("destination")) return SpecError(absl::StrCat(path, ".destination"), "missing");
      RETURN_IF_ERROR(
          ExpectType(m, "destination", json::value_t::string, absl::StrCat(path, ".destination")));
    }
  }
  if (auto linux = spec.find("linux"); linux != spec.end()) {
    for (const char* key : {"maskedPaths", "readonlyPaths"}) {
      RETURN_IF_ERROR(ExpectType(*linux, key, json::value_t::array, absl::StrCat("linux.", key)));
    }
    RETURN_IF_ERROR(ExpectType(*linux, "seccomp", json::value_t::object, "linux.seccomp"));
  }
  return absl::OkStatus();
}

std::string CleanDestination(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

bool IsSandboxContainer(const json& spec) {
  auto annotations = spec.find("annotations");
  if (annotations == spec.end()) return false;
  auto type = annotations->find("io.kubernetes.cri.container-type");
  return type != annotations->end() && type->is_string() && *type == "sandbox";
}

}  // namespace

std::optional<std::string> NormalizeCapability(const std::string& name) {
  std::string upper = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(name));
  if (!absl::StartsWith(upper, "CAP_")) upper = absl::StrCat("CAP_", upper);
  for (const char* known : kCapabilities) {
    if (upper == known) return upper;
  }
  return std::nullopt;
}

std::optional<uint64_t> TmpfsBytes(const std::string& size) {
  if (size.empty()) return std::nullopt;
  uint64_t multiplier = 1;
  std::string digits = size;
  switch (absl::ascii_tolower(static_cast<unsigned char>(size.back()))) {
    case 'k':
      multiplier = 1ull << 10;
      break;
    case 'm':
      multiplier = 1ull << 20;
      break;
    case 'g':
      multiplier = 1ull << 30;
      break;
    default:
      break;
  }
  if (multiplier != 1) digits.pop_back();
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit)) return std::nullopt;
  uint64_t n = 0;
  if (!absl::SimpleAtoi(digits, &n) || n == 0 || n > (UINT64_MAX / multiplier)) return std::nullopt;
  return n * multiplier;
}

absl::Status ValidateTmpfs(const TmpfsMount& tmpfs) {
  const std::string& dest = tmpfs.destination;
  if (dest.empty() || dest[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("tmpfs destination \"", dest, "\" is not an absolute path"));
  }
  for (absl::string_view part : absl::StrSplit(dest, '/')) {
    if (part == "..") {
      return absl::InvalidArgumentError(absl::StrCat("tmpfs destination \"", dest, "\" contains \"..\""));
    }
  }
  if (CleanDestination(dest) == "/")
    return absl::InvalidArgumentError("tmpfs destination \"/\" would hide the root");
  if (dest.find_first_of(",:") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("tmpfs destination \"", dest, "\" contains ',' or ':'"));
  }
  if (!TmpfsBytes(tmpfs.size).has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("tmpfs size \"", tmpfs.size, "\" for ", dest,
                                                   " is not a positive number with k/m/g suffix"));
  }
  const std::string& mode = tmpfs.mode;
  if (mode.empty() || mode.size() > 4 ||
      !std::all_of(mode.begin(), mode.end(), [](char c) { return c >= '0' && c <= '7'; })) {
    return absl::InvalidArgumentError(absl::StrCat("tmpfs mode \"", mode, "\" for ", dest, " is not octal"));
  }
  return absl::OkStatus();
}

absl::StatusOr<TmpfsMount> ParseTmpfsSpec(const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  if (parts.size() < 2 || parts.size() > 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("tmpfs \"", text, "\" is not of the form /path:size[:mode][:noexec]"));
  }
  TmpfsMount tmpfs{parts[0], parts[1], "1777", false};
  for (size_t i = 2; i < parts.size(); ++i) {
    if (parts[i] == "noexec") {
      tmpfs.noexec = true;
    } else if (i == 2) {
      tmpfs.mode = parts[i];
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("tmpfs \"", text, "\": unknown option \"", parts[i], "\""));
    }
  }
  RETURN_IF_ERROR(ValidateTmpfs(tmpfs));
  return tmpfs;
}

absl::StatusOr<std::string> ResolveProfilePath(const HardeningPolicy& policy) {
  const std::string& name = policy.seccomp_profile;
  if (name.empty()) return std::string();
  if (name[0] == '/') return name;
  if (name.find('/') != std::string::npos || name == "." || name == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat("seccomp profile \"", name, "\" must be a profile name or an absolute path"));
  }
  std::string file = absl::EndsWith(name, ".json") ? name : absl::StrCat(name, ".json");
  return absl::StrCat(policy.profiles_dir, "/", file);
}

absl::StatusOr<std::map<std::string, std::string>> SpecAnnotations(const nlohmann::json& spec) {
  std::map<std::string, std::string> out;
  if (!spec.is_object()) return out;
  auto it = spec.find("annotations");
  if (it == spec.end() || it->is_null()) return out;
  if (!it->is_object()) return SpecError("annotations", "must be an object");
  for (const auto& [key, value] : it->items()) {
    if (!value.is_string()) return SpecError(absl::StrCat("annotations.", key), "must be a string");
    out[key] = value.get<std::string>();
  }
  return out;
}

bool IsPrivileged(const nlohmann::json& spec) {
  auto process = spec.find("process");
  if (process == spec.end() || !process->is_object()) return false;
  auto caps = process->find("capabilities");
  if (caps == process->end() || !caps->is_object()) return false;
  auto bounding = caps->find("bounding");
  if (bounding == caps->end() || !bounding->is_array()) return false;
  std::set<std::string> have;
  for (const json& c : *bounding) {
    if (c.is_string()) {
      if (auto n = NormalizeCapability(c.get<std::string>())) have.insert(*n);
    }
  }
  // containerd's "all capabilities" are those its own process holds (on some nodes not CAP_SYS_RESOURCE,
  // say), so ask for CAP_SYS_ADMIN and nearly all of the rest rather than for every one.
  if (!have.contains("CAP_SYS_ADMIN") || have.size() < 30) return false;
  auto linux = spec.find("linux");
  if (linux == spec.end() || !linux->is_object()) return true;
  for (const char* key : {"maskedPaths", "readonlyPaths"}) {
    auto it = linux->find(key);
    if (it != linux->end() && it->is_array() && !it->empty()) return false;
  }
  return true;
}

bool UsesHostNetwork(const nlohmann::json& spec) {
  // Only a spec that lists its namespaces says something about the network one.
  auto linux = spec.find("linux");
  if (linux == spec.end() || !linux->is_object()) return false;
  auto ns = linux->find("namespaces");
  if (ns == linux->end() || !ns->is_array()) return false;
  for (const json& n : *ns) {
    if (n.is_object() && n.value("type", "") == "network") return false;
  }
  return true;
}

namespace {

// HardenProcess on a process that passed CheckProcess (an exec's there, the spec's in CheckSpec), under an
// enabled policy.
absl::StatusOr<json> HardenCheckedProcess(json process, const HardeningPolicy& policy,
                                          bool privileged_allowed) {
  // Capabilities: every set keeps only what the allow-list names (never adds one the spec lacks).
  if (!privileged_allowed) {
    std::set<std::string> allowed;
    for (const std::string& cap : policy.allowed_capabilities) {
      std::optional<std::string> normal = NormalizeCapability(cap);
      if (!normal.has_value())
        return absl::InvalidArgumentError(absl::StrCat("unknown capability \"", cap, "\""));
      allowed.insert(*normal);
    }
    if (!process.contains("capabilities")) process["capabilities"] = json::object();
    for (const char* set : kCapabilitySets) {
      json kept = json::array();
      if (process["capabilities"].contains(set)) {  // an array of strings (CheckProcess)
        for (const json& cap : process["capabilities"][set]) {
          std::optional<std::string> normal = NormalizeCapability(cap.get<std::string>());
          if (normal.has_value() && allowed.contains(*normal)) kept.push_back(*normal);
        }
      }
      process["capabilities"][set] = std::move(kept);
    }
  }
  if (policy.no_new_privileges) process["noNewPrivileges"] = true;
  if (policy.force_uid.has_value() || policy.force_gid.has_value()) {
    if (!process.contains("user")) process["user"] = {{"uid", 0}, {"gid", 0}};
    json& user = process["user"];
    if (policy.force_uid.has_value()) {
      user["uid"] = *policy.force_uid;
      user.erase("username");  // a name would be resolved again inside the image
    }
    if (policy.force_gid.has_value()) {
      user["gid"] = *policy.force_gid;
      if (user.contains("additionalGids")) {
        json kept = json::array();
        for (const json& g : user["additionalGids"]) {
          if (!(g.is_number_integer() && g.get<int64_t>() == 0)) kept.push_back(g);
        }
        user["additionalGids"] = std::move(kept);
      }
    }
  }
  return process;
}

}  // namespace

absl::StatusOr<nlohmann::json> HardenProcess(const nlohmann::json& process, const HardeningPolicy& policy,
                                             bool privileged_allowed) {
  RETURN_IF_ERROR(CheckProcess(process));
  if (!policy.enabled) return process;
  return HardenCheckedProcess(process, policy, privileged_allowed);
}

absl::StatusOr<HardeningResult> Harden(const nlohmann::json& spec, const HardeningPolicy& policy) {
  std::optional<json> oci_seccomp;
  if (policy.enabled && !policy.seccomp_profile.empty()) {
    ASSIGN_OR_RETURN(std::string path, ResolveProfilePath(policy));
    ASSIGN_OR_RETURN(seccomp::ValidatedProfile profile, seccomp::LoadProfileFile(path));
    ASSIGN_OR_RETURN(json converted, seccomp::ToOciSeccomp(profile));
    oci_seccomp = std::move(converted);
  }
  return HardenWithProfile(spec, policy, oci_seccomp);
}

absl::StatusOr<HardeningResult> HardenWithProfile(const nlohmann::json& spec, const HardeningPolicy& policy,
                                                  const std::optional<nlohmann::json>& oci_seccomp) {
  RETURN_IF_ERROR(CheckSpec(spec));
  HardeningResult result;
  result.spec = spec;
  json& out = result.spec;
  if (!policy.enabled) {
    result.notes.push_back("hardening disabled: spec left as is");
    if (out.contains("linux") && out["linux"].contains("seccomp")) result.needs_oci_seccomp = true;
    return result;
  }
  if (IsSandboxContainer(spec))
    result.notes.push_back("pod sandbox (pause) container: hardened like the others");
  const bool privileged = IsPrivileged(spec);
  if (privileged && !policy.allow_privileged) {
    return absl::PermissionDeniedError(
        "privileged container (securityContext.privileged: every capability, nothing masked) refused by the "
        "node's policy: [hardening] allow_privileged = false");
  }
  if (UsesHostNetwork(spec) && policy.host_network == "refuse") {
    return absl::PermissionDeniedError(
        "the container shares the node's network namespace (hostNetwork: true) and the node's policy "
        "[hardening] host_network = \"refuse\" refuses it (\"isolated\" gives it gVisor's own loopback-only "
        "network, \"host\" the node's network through runsc --network=host)");
  }

  // Bidirectional mount propagation cannot be given: nothing mounted inside the sandbox reaches the host.
  if (auto mounts = spec.find("mounts"); mounts != spec.end()) {
    for (const json& m : *mounts) {
      auto options = m.find("options");
      if (options == m.end() || !options->is_array()) continue;
      for (const json& o : *options) {
        if (o == "rshared" || o == "shared") {
          return absl::FailedPreconditionError(absl::StrCat(
              "mount ", m["destination"].get<std::string>(), ": propagation ", o.get<std::string>(),
              " (mountPropagation: Bidirectional) cannot work under gVisor: mounts made inside the sandbox "
              "never "
              "reach the host"));
        }
      }
    }
  }

  // Read-only root; a spec that already asks for it keeps it.
  if (policy.readonly_rootfs) out["root"]["readonly"] = true;

  // Scratch space, unless the spec (a CRI volume, say) already mounts something there.
  if (!policy.tmpfs.empty()) {
    if (!out.contains("mounts")) out["mounts"] = json::array();
    std::set<std::string> taken;
    for (const json& m : out["mounts"]) taken.insert(CleanDestination(m["destination"].get<std::string>()));
    for (const TmpfsMount& t : policy.tmpfs) {
      RETURN_IF_ERROR(ValidateTmpfs(t));
      if (taken.contains(CleanDestination(t.destination))) {
        result.notes.push_back(
            absl::StrCat("tmpfs ", t.destination, " not added: the spec already mounts it"));
        continue;
      }
      json options = {"nosuid", "nodev"};
      if (t.noexec) options.push_back("noexec");
      options.push_back(absl::StrCat("mode=", t.mode));
      options.push_back(absl::StrCat("size=", t.size));
      out["mounts"].push_back(
          {{"destination", t.destination}, {"type", "tmpfs"}, {"source", "tmpfs"}, {"options", options}});
      taken.insert(CleanDestination(t.destination));
    }
  }

  json& process = out["process"];  // CheckSpec checked it
  ASSIGN_OR_RETURN(process, HardenCheckedProcess(std::move(process), policy, privileged));
  if (privileged) {
    result.privileged = true;
    result.notes.push_back(
        "privileged container allowed by the policy: capabilities and /proc left as asked");
  }

  // Masked and read-only /proc paths: keep the spec's, supply containerd's defaults where absent.
  if (!out.contains("linux")) out["linux"] = json::object();
  json& linux = out["linux"];
  if (!privileged) {
    if (!linux.contains("maskedPaths")) linux["maskedPaths"] = kDefaultMaskedPaths;
    if (!linux.contains("readonlyPaths")) linux["readonlyPaths"] = kDefaultReadonlyPaths;
  }
  // Read-only paths that are mounts of the spec (a tmpfs, a volume): runsc does not apply readonlyPaths, so
  // the mounts themselves become read-only. Everything else is on the read-only root, or in gVisor's /proc
  // and /sys.
  if (auto ro = linux.find("readonlyPaths"); ro != linux.end() && out.contains("mounts")) {
    for (const json& p : *ro) {
      if (!p.is_string()) continue;
      const std::string path = CleanDestination(p.get<std::string>());
      for (json& m : out["mounts"]) {
        const std::string dest = CleanDestination(m["destination"].get<std::string>());
        if (dest != path && !absl::StartsWith(dest, path + "/")) continue;
        if (!m.contains("options") || !m["options"].is_array()) m["options"] = json::array();
        json kept = json::array();
        for (const json& o : m["options"]) {
          if (o != "rw") kept.push_back(o);
        }
        kept.push_back("ro");
        m["options"] = std::move(kept);
        result.notes.push_back(absl::StrCat("mount ", dest, " read-only (readonlyPaths ", path, ")"));
      }
    }
  }
  // Sysctls: runsc ignores linux.sysctl.
  if (auto sc = linux.find("sysctl"); sc != linux.end() && sc->is_object() && !sc->empty()) {
    std::vector<std::string> names;
    for (const auto& [k, v] : sc->items()) names.push_back(k);
    if (policy.sysctls == "ignore") {
      result.notes.push_back(
          absl::StrCat("sysctls dropped ([hardening] sysctls = \"ignore\"): ", absl::StrJoin(names, ", ")));
      linux.erase("sysctl");
    } else {
      return absl::FailedPreconditionError(absl::StrCat(
          "sysctls ", absl::StrJoin(names, ", "),
          " cannot be applied inside a gVisor sandbox (runsc ignores linux.sysctl); the node's policy "
          "[hardening] sysctls = \"refuse\" refuses the container (\"ignore\" would run it without them)"));
    }
  }

  if (oci_seccomp.has_value()) {
    if (linux.contains("seccomp"))
      result.notes.push_back("linux.seccomp of the spec replaced by the policy's profile");
    linux["seccomp"] = *oci_seccomp;
    result.needs_oci_seccomp = true;
  } else if (linux.contains("seccomp")) {
    // The pod asked for a profile (e.g. RuntimeDefault); runsc ignores it unless told otherwise.
    result.needs_oci_seccomp = true;
    result.notes.push_back("linux.seccomp of the spec kept and enforced");
  }
  return result;
}

}  // namespace gvshim::oci
