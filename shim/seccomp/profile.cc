#include "shim/seccomp/profile.h"

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
#include "shim/seccomp/checker.h"
#include "shim/sys/fd.h"

namespace gvshim::seccomp {
namespace {

using nlohmann::json;

using internal::Arch;
using internal::Cond;
using internal::kEperm;
using internal::Parsed;
using internal::Rule;

constexpr size_t kMaxProfileBytes = 4 << 20;

bool IsDenial(const std::string& action) {
  return action == "SCMP_ACT_ERRNO" || action == "SCMP_ACT_KILL" || action == "SCMP_ACT_KILL_PROCESS" ||
         action == "SCMP_ACT_KILL_THREAD" || action == "SCMP_ACT_TRAP";
}

absl::StatusOr<std::pair<Parsed, ProfileSummary>> Check(const json& profile, const std::string& source_name,
                                                        bool compile = true) {
  ASSIGN_OR_RETURN(Parsed parsed, internal::ParseProfileRules(profile, source_name));
  ProfileSummary summary;
  summary.default_action = parsed.default_action_name;
  if (parsed.default_action_name == "SCMP_ACT_ERRNO" || parsed.default_action_name == "SCMP_ACT_TRACE") {
    summary.default_errno = parsed.default_errno.value_or(kEperm);
  }
  for (const Arch& a : parsed.arches) summary.architectures.push_back(a.name);
  summary.rule_count = static_cast<int>(parsed.rules.size());
  for (const Rule& rule : parsed.rules) {
    int n = static_cast<int>(rule.names.size());
    if (rule.action_name == "SCMP_ACT_ALLOW") {
      summary.allowed_syscalls += n;
    } else if (IsDenial(rule.action_name)) {
      summary.denied_syscalls += n;
    } else {
      summary.other_syscalls += n;
    }
  }
  if (compile) {
    ASSIGN_OR_RETURN(summary.bpf_instructions, internal::CompileProfileRules(parsed, source_name));
  }
  return std::make_pair(std::move(parsed), std::move(summary));
}

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

void OffsetToLineColumn(absl::string_view text, size_t byte, int* line, int* column) {
  // nlohmann counts the offending character as read, so it sits at index byte-1.
  size_t end = std::min(byte > 0 ? byte - 1 : 0, text.size());
  *line = 1;
  size_t line_start = 0;
  for (size_t i = 0; i < end; ++i) {
    if (text[i] == '\n') {
      ++*line;
      line_start = i + 1;
    }
  }
  *column = static_cast<int>(end - line_start) + 1;
}

absl::StatusOr<std::string> CompileBpf(const nlohmann::json& profile, const std::string& source_name) {
  ASSIGN_OR_RETURN(Parsed parsed,
                   internal::ParseProfileRules(profile, source_name, /*skip_unknown_names=*/true));
  std::string bpf;
  ASSIGN_OR_RETURN(int instructions, internal::CompileProfileRules(parsed, source_name, &bpf));
  (void)instructions;
  return bpf;
}

absl::StatusOr<ProfileSummary> ValidateProfile(const nlohmann::json& profile,
                                               const std::string& source_name) {
  ASSIGN_OR_RETURN(auto checked, Check(profile, source_name));
  return std::move(checked.second);
}

absl::StatusOr<ValidatedProfile> ParseProfile(absl::string_view text, const std::string& source_name) {
  ValidatedProfile out;
  out.source_name = source_name;
  try {
    out.profile = json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    int line = 0;
    int column = 0;
    OffsetToLineColumn(text, e.byte, &line, &column);
    // nlohmann's message is "[json.exception.parse_error.101] parse error at line L, column C: <reason>".
    std::string reason = e.what();
    if (size_t at = reason.find("parse error"); at != std::string::npos) {
      if (size_t colon = reason.find(": ", at); colon != std::string::npos) reason = reason.substr(colon + 2);
    }
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ":", line, ":", column, ": malformed JSON: ", reason));
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": malformed JSON: ", e.what()));
  }
  ASSIGN_OR_RETURN(out.summary, ValidateProfile(out.profile, source_name));
  return out;
}

absl::StatusOr<ValidatedProfile> LoadProfileFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open seccomp profile ", path));
  sys::UniqueFd file(fd);
  auto text = sys::ReadAll(file.get(), kMaxProfileBytes + 1);
  if (!text.ok()) return Annotate(text.status(), absl::StrCat("read seccomp profile ", path));
  if (text->size() > kMaxProfileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("seccomp profile ", path, " is larger than ", kMaxProfileBytes, " bytes"));
  }
  return ParseProfile(*text, BaseName(path));
}

namespace {

json ToOci(const json& profile, const Parsed& parsed) {
  json oci = json::object();
  oci["defaultAction"] = parsed.default_action_name;
  if (parsed.default_errno.has_value()) oci["defaultErrnoRet"] = *parsed.default_errno;
  if (!parsed.arches.empty()) {
    json arches = json::array();
    for (const Arch& a : parsed.arches) arches.push_back(a.name);
    oci["architectures"] = std::move(arches);
  }
  if (!parsed.flags.empty()) oci["flags"] = parsed.flags;
  for (const char* key : {"listenerPath", "listenerMetadata"}) {
    if (profile.contains(key)) oci[key] = profile[key];
  }
  json syscalls = json::array();
  for (const Rule& rule : parsed.rules) {
    json entry = json::object();
    entry["names"] = rule.names;
    entry["action"] = rule.action_name;
    if (rule.errno_ret.has_value()) entry["errnoRet"] = *rule.errno_ret;
    if (!rule.conds.empty()) {
      json args = json::array();
      for (const Cond& c : rule.conds) {
        args.push_back(
            {{"index", c.index}, {"value", c.value}, {"valueTwo", c.value_two}, {"op", c.op_name}});
      }
      entry["args"] = std::move(args);
    }
    syscalls.push_back(std::move(entry));
  }
  oci["syscalls"] = std::move(syscalls);
  return oci;
}

}  // namespace

absl::StatusOr<nlohmann::json> ToOciSeccomp(const nlohmann::json& profile, const std::string& source_name) {
  ASSIGN_OR_RETURN(auto checked, Check(profile, source_name));
  return ToOci(profile, checked.first);
}

absl::StatusOr<nlohmann::json> ToOciSeccomp(const ValidatedProfile& profile) {
  ASSIGN_OR_RETURN(auto checked, Check(profile.profile, profile.source_name, /*compile=*/false));
  return ToOci(profile.profile, checked.first);
}

}  // namespace gvshim::seccomp
