#include "shim/seccomp/checker.h"

#include <fcntl.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "shim/base/status.h"
#include "shim/sys/fd.h"

namespace gvshim::seccomp::internal {
namespace {

using nlohmann::json;

constexpr uint32_t kMaxErrno = 4095;
constexpr int kMaxBpfInstructions = 4096;  // BPF_MAXINSNS: the kernel refuses longer filters.

// Architectures libseccomp 2.5 knows, by the suffix of their SCMP_ARCH_* name.
constexpr const char* kArchSuffixes[] = {"x86",         "x86_64", "x32",       "arm",     "aarch64",
                                         "mips",        "mips64", "mips64n32", "mipsel",  "mipsel64",
                                         "mipsel64n32", "ppc",    "ppc64",     "ppc64le", "s390",
                                         "s390x",       "parisc", "parisc64",  "riscv64"};

class Checker {
 public:
  // skip_unknown_names: a syscall name libseccomp does not know on any listed architecture is ignored instead
  // of being an error, as runc and runsc do with the profiles containerd generates (its default profile
  // lists, e.g., "recv", which x86 has only as a socketcall).
  explicit Checker(const std::string& source, bool skip_unknown_names = false)
      : source_(source), skip_unknown_names_(skip_unknown_names) {}

  absl::Status Error(absl::string_view path, absl::string_view reason) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", path, ": ", reason));
  }

  absl::Status CheckKeys(const json& object, absl::string_view path,
                         const std::set<std::string>& known) const {
    for (const auto& [key, value] : object.items()) {
      if (!known.contains(key)) {
        std::string field_path = path.empty() ? key : absl::StrCat(path, ".", key);
        return Error(field_path, absl::StrCat("unknown field (known: ", absl::StrJoin(known, ", "), ")"));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> String(const json& value, absl::string_view path) const {
    if (!value.is_string()) return Error(path, absl::StrCat("must be a string, not ", value.type_name()));
    return value.get<std::string>();
  }

  absl::StatusOr<uint64_t> Unsigned(const json& value, absl::string_view path, uint64_t max) const {
    if (!value.is_number_integer()) {
      return Error(path, absl::StrCat("must be a non-negative integer, not ", value.type_name()));
    }
    if (value.is_number_unsigned()) {
      uint64_t v = value.get<uint64_t>();
      if (v > max) return Error(path, absl::StrCat("value ", v, " is larger than ", max));
      return v;
    }
    int64_t v = value.get<int64_t>();
    if (v < 0) return Error(path, absl::StrCat("must be a non-negative integer, not ", v));
    if (static_cast<uint64_t>(v) > max)
      return Error(path, absl::StrCat("value ", v, " is larger than ", max));
    return static_cast<uint64_t>(v);
  }

  absl::StatusOr<uint32_t> ArchToken(const json& value, absl::string_view path) const {
    ASSIGN_OR_RETURN(std::string name, String(value, path));
    if (absl::StartsWith(name, "SCMP_ARCH_")) {
      std::string suffix = absl::AsciiStrToLower(name.substr(strlen("SCMP_ARCH_")));
      for (const char* known : kArchSuffixes) {
        if (suffix == known) {
          uint32_t token = seccomp_arch_resolve_name(known);
          if (token != 0) return token;
        }
      }
    }
    return Error(path, absl::StrCat("unknown architecture \"", name, "\" (expected SCMP_ARCH_X86_64, ",
                                    "SCMP_ARCH_X86, SCMP_ARCH_X32, SCMP_ARCH_AARCH64, ...)"));
  }

  // `errno_value` is the rule's errnoRet (or defaultErrnoRet). ERRNO and TRACE take it, EPERM when absent.
  absl::StatusOr<uint32_t> Action(const std::string& name, std::optional<uint32_t> errno_value,
                                  absl::string_view path, absl::string_view errno_path) const {
    bool takes_errno = name == "SCMP_ACT_ERRNO" || name == "SCMP_ACT_TRACE";
    if (errno_value.has_value() && !takes_errno) {
      return Error(errno_path,
                   absl::StrCat("only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take an errno, not ", name));
    }
    uint32_t err = errno_value.value_or(kEperm);
    if (name == "SCMP_ACT_ALLOW") return SCMP_ACT_ALLOW;
    if (name == "SCMP_ACT_ERRNO") return SCMP_ACT_ERRNO(err);
    if (name == "SCMP_ACT_TRACE") return SCMP_ACT_TRACE(err);
    if (name == "SCMP_ACT_KILL" || name == "SCMP_ACT_KILL_THREAD") return SCMP_ACT_KILL_THREAD;
    if (name == "SCMP_ACT_KILL_PROCESS") return SCMP_ACT_KILL_PROCESS;
    if (name == "SCMP_ACT_TRAP") return SCMP_ACT_TRAP;
    if (name == "SCMP_ACT_LOG") return SCMP_ACT_LOG;
    if (name == "SCMP_ACT_NOTIFY") {
      return Error(path, "SCMP_ACT_NOTIFY needs a seccomp agent, which gvshim and runsc do not support");
    }
    return Error(path, absl::StrCat("unknown action \"", name,
                                    "\" (expected SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, ",
                                    "SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP, ",
                                    "SCMP_ACT_TRACE or SCMP_ACT_LOG)"));
  }

  absl::StatusOr<std::optional<uint32_t>> OptionalErrno(const json& object, const char* key,
                                                        absl::string_view path) const {
    auto it = object.find(key);
    if (it == object.end()) return std::optional<uint32_t>();
    ASSIGN_OR_RETURN(uint64_t v, Unsigned(*it, path, kMaxErrno));
    return std::optional<uint32_t>(static_cast<uint32_t>(v));
  }

  absl::StatusOr<Cond> Arg(const json& arg, const std::string& path) const {
    if (!arg.is_object()) return Error(path, absl::StrCat("must be an object, not ", arg.type_name()));
    RETURN_IF_ERROR(CheckKeys(arg, path, {"index", "value", "valueTwo", "op"}));
    Cond cond;
    for (const char* required : {"index", "value", "op"}) {
      if (!arg.contains(required)) return Error(path, absl::StrCat("missing field \"", required, "\""));
    }
    ASSIGN_OR_RETURN(uint64_t index, Unsigned(arg["index"], absl::StrCat(path, ".index"), UINT64_MAX));
    if (index > 5) {
      return Error(absl::StrCat(path, ".index"),
                   absl::StrCat("argument index ", index, " is out of range (a syscall has arguments 0..5)"));
    }
    cond.index = static_cast<unsigned>(index);
    ASSIGN_OR_RETURN(cond.value, Unsigned(arg["value"], absl::StrCat(path, ".value"), UINT64_MAX));
    if (arg.contains("valueTwo")) {
      ASSIGN_OR_RETURN(cond.value_two,
                       Unsigned(arg["valueTwo"], absl::StrCat(path, ".valueTwo"), UINT64_MAX));
    }
    ASSIGN_OR_RETURN(cond.op_name, String(arg["op"], absl::StrCat(path, ".op")));
    static const std::map<std::string, scmp_compare> kOps = {{"SCMP_CMP_NE", SCMP_CMP_NE},
                                                             {"SCMP_CMP_LT", SCMP_CMP_LT},
                                                             {"SCMP_CMP_LE", SCMP_CMP_LE},
                                                             {"SCMP_CMP_EQ", SCMP_CMP_EQ},
                                                             {"SCMP_CMP_GE", SCMP_CMP_GE},
                                                             {"SCMP_CMP_GT", SCMP_CMP_GT},
                                                             {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ}};
    auto op = kOps.find(cond.op_name);
    if (op == kOps.end()) {
      return Error(
          absl::StrCat(path, ".op"),
          absl::StrCat("unknown operator \"", cond.op_name,
                       "\" (expected SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ, SCMP_CMP_GE, ",
                       "SCMP_CMP_GT or SCMP_CMP_MASKED_EQ)"));
    }
    cond.op = op->second;
    return cond;
  }

  absl::Status EffectiveArches(const json& profile, Parsed* out) const {
    std::vector<Arch> arches;
    auto add = [&](const json& value, const std::string& path) -> absl::Status {
      ASSIGN_OR_RETURN(uint32_t token, ArchToken(value, path));
      for (const Arch& a : arches) {
        if (a.token == token) return absl::OkStatus();
      }
      arches.push_back(Arch{value.get<std::string>(), token});
      return absl::OkStatus();
    };
    if (auto it = profile.find("architectures"); it != profile.end() && !it->is_null()) {
      if (!it->is_array())
        return Error("architectures", absl::StrCat("must be an array, not ", it->type_name()));
      for (size_t i = 0; i < it->size(); ++i) {
        RETURN_IF_ERROR(add((*it)[i], absl::StrCat("architectures[", i, "]")));
      }
    }
    if (auto it = profile.find("archMap"); it != profile.end() && !it->is_null()) {
      if (!it->is_array()) return Error("archMap", absl::StrCat("must be an array, not ", it->type_name()));
      // Like Docker: the entry for the machine's own architecture (with its sub-architectures) if there is
      // one, every entry otherwise.
      std::vector<size_t> chosen;
      for (size_t i = 0; i < it->size(); ++i) {
        const json& entry = (*it)[i];
        std::string path = absl::StrCat("archMap[", i, "]");
        if (!entry.is_object())
          return Error(path, absl::StrCat("must be an object, not ", entry.type_name()));
        RETURN_IF_ERROR(CheckKeys(entry, path, {"architecture", "subArchitectures"}));
        if (!entry.contains("architecture")) return Error(path, "missing field \"architecture\"");
        ASSIGN_OR_RETURN(uint32_t token,
                         ArchToken(entry["architecture"], absl::StrCat(path, ".architecture")));
        if (entry.contains("subArchitectures")) {
          const json& subs = entry["subArchitectures"];
          std::string subs_path = absl::StrCat(path, ".subArchitectures");
          if (!subs.is_array())
            return Error(subs_path, absl::StrCat("must be an array, not ", subs.type_name()));
          for (size_t j = 0; j < subs.size(); ++j) {
            RETURN_IF_ERROR(ArchToken(subs[j], absl::StrCat(subs_path, "[", j, "]")).status());
          }
        }
        if (token == seccomp_arch_native()) chosen.push_back(i);
      }
      if (chosen.empty()) {
        for (size_t i = 0; i < it->size(); ++i) chosen.push_back(i);
      }
      for (size_t i : chosen) {
        const json& entry = (*it)[i];
        std::string path = absl::StrCat("archMap[", i, "]");
        RETURN_IF_ERROR(add(entry["architecture"], absl::StrCat(path, ".architecture")));
        if (entry.contains("subArchitectures")) {
          for (size_t j = 0; j < entry["subArchitectures"].size(); ++j) {
            RETURN_IF_ERROR(
                add(entry["subArchitectures"][j], absl::StrCat(path, ".subArchitectures[", j, "]")));
          }
        }
      }
    }
    out->arches = std::move(arches);
    return absl::OkStatus();
  }

  // A name is known on an architecture when libseccomp maps it to a real (non-negative) syscall number there.
  absl::Status CheckName(const std::string& name, const std::string& path, const Parsed& parsed) const {
    if (name.empty()) return Error(path, "empty syscall name");
    std::vector<std::string> arch_names;
    if (parsed.arches.empty()) {
      if (seccomp_syscall_resolve_name_arch(seccomp_arch_native(), name.c_str()) >= 0)
        return absl::OkStatus();
      arch_names.push_back("native");
    }
    for (const Arch& arch : parsed.arches) {
      if (seccomp_syscall_resolve_name_arch(arch.token, name.c_str()) >= 0) return absl::OkStatus();
      arch_names.push_back(arch.name);
    }
    return Error(path, absl::StrCat("unknown syscall \"", name, "\" on all architectures [",
                                    absl::StrJoin(arch_names, ", "), "]"));
  }

  absl::StatusOr<Rule> ParseRule(const json& entry, size_t i, const Parsed& parsed) const {
    Rule rule;
    rule.path = absl::StrCat("syscalls[", i, "]");
    const std::string& path = rule.path;
    if (!entry.is_object()) return Error(path, absl::StrCat("must be an object, not ", entry.type_name()));
    RETURN_IF_ERROR(CheckKeys(
        entry, path, {"names", "name", "action", "errnoRet", "args", "comment", "includes", "excludes"}));
    for (const char* cond_key : {"includes", "excludes"}) {
      if (auto it = entry.find(cond_key); it != entry.end() && !it->is_null()) {
        if (!it->is_object() || !it->empty()) {
          return Error(
              absl::StrCat(path, ".", cond_key),
              "conditional rules (Docker's includes/excludes) are not supported: write the rule for the "
              "capabilities and architectures it should apply to");
        }
      }
    }
    if (auto it = entry.find("comment"); it != entry.end()) {
      RETURN_IF_ERROR(String(*it, absl::StrCat(path, ".comment")).status());
    }
    if (entry.contains("name")) {
      std::string name_path = absl::StrCat(path, ".name");
      ASSIGN_OR_RETURN(std::string name, String(entry["name"], name_path));
      rule.names.push_back(name);
      rule.name_paths.push_back(name_path);
    }
    if (entry.contains("names")) {
      const json& names = entry["names"];
      std::string names_path = absl::StrCat(path, ".names");
      if (!names.is_array())
        return Error(names_path, absl::StrCat("must be an array, not ", names.type_name()));
      for (size_t j = 0; j < names.size(); ++j) {
        std::string name_path = absl::StrCat(names_path, "[", j, "]");
        ASSIGN_OR_RETURN(std::string name, String(names[j], name_path));
        rule.names.push_back(name);
        rule.name_paths.push_back(name_path);
      }
    }
    if (!entry.contains("name") && !entry.contains("names")) {
      return Error(path, "missing field \"names\" (or Docker's \"name\")");
    }
    for (size_t j = 0; j < rule.names.size(); ++j) {
      absl::Status known = CheckName(rule.names[j], rule.name_paths[j], parsed);
      if (!known.ok() && !skip_unknown_names_) return known;
    }
    if (!entry.contains("action")) return Error(path, "missing field \"action\"");
    std::string action_path = absl::StrCat(path, ".action");
    std::string errno_path = absl::StrCat(path, ".errnoRet");
    ASSIGN_OR_RETURN(rule.action_name, String(entry["action"], action_path));
    ASSIGN_OR_RETURN(rule.errno_ret, OptionalErrno(entry, "errnoRet", errno_path));
    ASSIGN_OR_RETURN(rule.action, Action(rule.action_name, rule.errno_ret, action_path, errno_path));
    if (auto it = entry.find("args"); it != entry.end() && !it->is_null()) {
      std::string args_path = absl::StrCat(path, ".args");
      if (!it->is_array()) return Error(args_path, absl::StrCat("must be an array, not ", it->type_name()));
      if (it->size() > 6) return Error(args_path, absl::StrCat("has ", it->size(), " conditions, at most 6"));
      for (size_t j = 0; j < it->size(); ++j) {
        ASSIGN_OR_RETURN(Cond cond, Arg((*it)[j], absl::StrCat(args_path, "[", j, "]")));
        rule.conds.push_back(cond);
      }
    }
    return rule;
  }

  absl::StatusOr<Parsed> Parse(const json& profile) const {
    if (!profile.is_object()) {
      return Error("(document)",
                   absl::StrCat("a seccomp profile must be a JSON object, not ", profile.type_name()));
    }
    RETURN_IF_ERROR(CheckKeys(profile, "",
                              {"defaultAction", "defaultErrnoRet", "architectures", "archMap", "syscalls",
                               "flags", "listenerPath", "listenerMetadata", "comment"}));
    Parsed parsed;
    if (!profile.contains("defaultAction"))
      return Error("defaultAction", "missing (the action for other syscalls)");
    ASSIGN_OR_RETURN(parsed.default_action_name, String(profile["defaultAction"], "defaultAction"));
    ASSIGN_OR_RETURN(parsed.default_errno, OptionalErrno(profile, "defaultErrnoRet", "defaultErrnoRet"));
    ASSIGN_OR_RETURN(parsed.default_action, Action(parsed.default_action_name, parsed.default_errno,
                                                   "defaultAction", "defaultErrnoRet"));
    for (const char* key : {"listenerPath", "listenerMetadata", "comment"}) {
      if (profile.contains(key)) RETURN_IF_ERROR(String(profile[key], key).status());
    }
    if (auto it = profile.find("flags"); it != profile.end() && !it->is_null()) {
      if (!it->is_array()) return Error("flags", absl::StrCat("must be an array, not ", it->type_name()));
      static const std::set<std::string> kFlags = {"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                                                   "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                                                   "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"};
      for (size_t i = 0; i < it->size(); ++i) {
        std::string path = absl::StrCat("flags[", i, "]");
        ASSIGN_OR_RETURN(std::string flag, String((*it)[i], path));
        if (!kFlags.contains(flag)) {
          return Error(
              path, absl::StrCat("unknown flag \"", flag, "\" (known: ", absl::StrJoin(kFlags, ", "), ")"));
        }
        parsed.flags.push_back(flag);
      }
    }
    RETURN_IF_ERROR(EffectiveArches(profile, &parsed));
    if (auto it = profile.find("syscalls"); it != profile.end() && !it->is_null()) {
      if (!it->is_array()) return Error("syscalls", absl::StrCat("must be an array, not ", it->type_name()));
      for (size_t i = 0; i < it->size(); ++i) {
        ASSIGN_OR_RETURN(Rule rule, ParseRule((*it)[i], i, parsed));
        parsed.rules.push_back(std::move(rule));
      }
    }
    RETURN_IF_ERROR(CheckConflicts(parsed));
    return parsed;
  }

  // Two unconditional rules giving one syscall different actions: libseccomp silently keeps one of them, so
  // the profile would not mean what it says.
  absl::Status CheckConflicts(const Parsed& parsed) const {
    std::map<std::string, std::pair<uint32_t, std::string>> seen;  // name -> (action, path)
    for (const Rule& rule : parsed.rules) {
      if (!rule.conds.empty()) continue;
      for (size_t j = 0; j < rule.names.size(); ++j) {
        auto [it, inserted] = seen.emplace(rule.names[j], std::make_pair(rule.action, rule.name_paths[j]));
        if (!inserted && it->second.first != rule.action) {
          return Error(rule.name_paths[j],
                       absl::StrCat("syscall \"", rule.names[j], "\" already has a different action at ",
                                    it->second.second));
        }
      }
    }
    return absl::OkStatus();
  }

  // Builds the filter with libseccomp and exports it (never loads it), proving the kernel would accept it.
  // With `bpf`, the exported program (raw struct sock_filter instructions) is returned there.
  absl::StatusOr<int> Compile(const Parsed& parsed, std::string* bpf = nullptr) const {
    std::unique_ptr<void, void (*)(scmp_filter_ctx)> ctx(seccomp_init(parsed.default_action),
                                                         seccomp_release);
    if (ctx == nullptr) return Error("defaultAction", "libseccomp refused the default action");
    if (!parsed.arches.empty()) {
      bool native_listed = false;
      for (const Arch& arch : parsed.arches) {
        if (arch.token == seccomp_arch_native()) {
          native_listed = true;
          continue;
        }
        int rc = seccomp_arch_add(ctx.get(), arch.token);
        if (rc != 0 && rc != -EEXIST) {
          return Error("architectures",
                       absl::StrCat("libseccomp cannot add ", arch.name, ": ", strerror(-rc)));
        }
      }
      if (!native_listed) seccomp_arch_remove(ctx.get(), seccomp_arch_native());
    }
    for (const Rule& rule : parsed.rules) {
      // A rule with the default action changes nothing (and libseccomp refuses it), as runc does.
      if (rule.action == parsed.default_action) continue;
      // Several conditions on one argument cannot share a libseccomp rule; like runc, add one rule per
      // condition.
      std::set<unsigned> indexes;
      for (const Cond& c : rule.conds) indexes.insert(c.index);
      bool split = indexes.size() != rule.conds.size();
      for (size_t j = 0; j < rule.names.size(); ++j) {
        int nr = seccomp_syscall_resolve_name(rule.names[j].c_str());
        if (nr == __NR_SCMP_ERROR) continue;  // known on a listed architecture only; libseccomp cannot map it
        auto add = [&](const std::vector<scmp_arg_cmp>& cmps) -> absl::Status {
          int rc = seccomp_rule_add_array(ctx.get(), rule.action, nr, cmps.size(), cmps.data());
          if (rc != 0) {
            return Error(rule.name_paths[j], absl::StrCat("libseccomp rejected the rule: ", strerror(-rc)));
          }
          return absl::OkStatus();
        };
        std::vector<scmp_arg_cmp> cmps;
        for (const Cond& c : rule.conds) cmps.push_back(scmp_arg_cmp{c.index, c.op, c.value, c.value_two});
        if (!split) {
          RETURN_IF_ERROR(add(cmps));
        } else {
          for (const scmp_arg_cmp& cmp : cmps) RETURN_IF_ERROR(add({cmp}));
        }
      }
    }
    int fd = memfd_create("gvshim-seccomp-bpf", MFD_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, "memfd_create for seccomp export");
    sys::UniqueFd out(fd);
    int rc = seccomp_export_bpf(ctx.get(), out.get());
    if (rc != 0)
      return Error("(filter)", absl::StrCat("libseccomp cannot compile the filter: ", strerror(-rc)));
    struct stat st;
    if (fstat(out.get(), &st) != 0) return ErrnoStatus(errno, "fstat seccomp export");
    int instructions = static_cast<int>(st.st_size / 8);  // sizeof(struct sock_filter)
    if (instructions > kMaxBpfInstructions) {
      return Error("(filter)",
                   absl::StrCat("compiled filter has ", instructions,
                                " BPF instructions, more than the kernel's limit of ", kMaxBpfInstructions));
    }
    if (bpf != nullptr) {
      bpf->resize(static_cast<size_t>(st.st_size));
      if (pread(out.get(), bpf->data(), bpf->size(), 0) != static_cast<ssize_t>(bpf->size())) {
        return ErrnoStatus(errno, "read back the seccomp export");
      }
    }
    return instructions;
  }

 private:
  const std::string& source_;
  const bool skip_unknown_names_;
};

}  // namespace

absl::StatusOr<Parsed> ParseProfileRules(const json& profile, const std::string& source,
                                         bool skip_unknown_names) {
  return Checker(source, skip_unknown_names).Parse(profile);
}

absl::StatusOr<int> CompileProfileRules(const Parsed& parsed, const std::string& source, std::string* bpf) {
  return Checker(source).Compile(parsed, bpf);
}

}  // namespace gvshim::seccomp::internal
