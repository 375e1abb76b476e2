#include "shim/gateway/run_result.h"

#include <array>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace gvshim::gateway {
namespace {

using ojson = nlohmann::ordered_json;
namespace ev1 = execute::v1;

// Every field of CodeExecutionResult, in RAGFlow's order, unset ones null (FastAPI serialises them so).
ojson Skeleton(absl::string_view status, std::string stdout_text, std::string stderr_text, int exit_code) {
  return {{"status", status},
          {"stdout", std::move(stdout_text)},
          {"stderr", std::move(stderr_text)},
          {"exit_code", exit_code},
          {"detail", nullptr},
          {"time_used_ms", nullptr},
          {"memory_used_kb", nullptr},
          {"resource_limit_type", nullptr},
          {"unauthorized_access_type", nullptr},
          {"runtime_error_type", nullptr},
          {"artifacts", ojson::array()},
          {"result", nullptr}};
}

// RAGFlow returns only these artifact types (services/execution.py), at most 10, none empty or over 10 MiB.
constexpr std::array<std::pair<const char*, const char*>, 8> kArtifactTypes = {{
    {".png", "image/png"},
    {".jpg", "image/jpeg"},
    {".jpeg", "image/jpeg"},
    {".svg", "image/svg+xml"},
    {".pdf", "application/pdf"},
    {".csv", "text/csv"},
    {".json", "application/json"},
    {".html", "text/html"},
}};
constexpr size_t kMaxArtifacts = 10;
constexpr uint64_t kMaxArtifactBytes = 10 << 20;

const char* ArtifactMime(const std::string& name) {
  size_t dot = name.rfind('.');
  if (dot == std::string::npos) return nullptr;
  std::string ext = absl::AsciiStrToLower(name.substr(dot));
  for (const auto& [e, mime] : kArtifactTypes) {
    if (ext == e) return mime;
  }
  return nullptr;
}

ojson Artifacts(const ev1::ExecuteResponse& r) {
  ojson out = ojson::array();
  for (const ev1::Artifact& a : r.artifacts()) {
    if (out.size() >= kMaxArtifacts) break;
    const std::string& n = a.name();
    if (n.empty() || n[0] == '.' || absl::StrContains(n, "/") || absl::StrContains(n, "\\") ||
        absl::StrContains(n, "..")) {
      continue;
    }
    const char* mime = ArtifactMime(n);
    if (mime == nullptr || a.content().empty() || a.content().size() > kMaxArtifactBytes) continue;
    out.push_back({{"name", n},
                   {"mime_type", mime},
                   {"size", a.content().size()},
                   {"content_b64", absl::Base64Escape(a.content())}});
  }
  return out;
}

// Text a snippet prints when it tries to reach a network it does not have (Python's OSError, glibc's
// resolver, Node's error codes).
bool LooksLikeRefusedNetwork(absl::string_view err) {
  for (absl::string_view s : {"Network is unreachable", "ENETUNREACH", "No route to host", "EHOSTUNREACH",
                              "Temporary failure in name resolution", "EAI_AGAIN",
                              "Name or service not known", "ENOTFOUND", "No address associated"}) {
    if (absl::StrContains(err, s)) return true;
  }
  return false;
}

}  // namespace

ojson ResultFromExecute(const ev1::ExecuteResponse& r, const ResultOptions& opts) {
  const std::string& out = r.stdout();
  const std::string& err = r.stderr();
  ojson j;
  switch (r.status()) {
    case ev1::STATUS_SUCCESS: {
      j = Skeleton(kStatusSuccess, out, err, 0);
      if (!r.result_json().empty()) {
        ojson value = ojson::parse(r.result_json(), nullptr, false);
        if (value.is_discarded()) value = r.result_json();
        j["result"] = {{"present", true}, {"value", std::move(value)}, {"type", "json"}};
      }
      break;
    }
    case ev1::STATUS_TIMEOUT:
      j = Skeleton(kStatusResourceLimit, out, "Execution timeout", kExitTimeout);
      j["resource_limit_type"] = "time";
      break;
    case ev1::STATUS_MEMORY_LIMIT:
      if (r.signal() != 0) {
        j = Skeleton(kStatusResourceLimit, out, err.empty() ? "Memory limit exceeded (killed by OOM)" : err,
                     kExitMemoryKilled);
      } else {
        j = Skeleton(kStatusResourceLimit, out, err, r.exit_code());
      }
      j["resource_limit_type"] = "memory";
      break;
    case ev1::STATUS_OUTPUT_LIMIT:
      j = Skeleton(kStatusResourceLimit, out, err, r.signal() != 0 ? 128 + r.signal() : r.exit_code());
      j["resource_limit_type"] = "output";
      break;
    case ev1::STATUS_PROGRAM_ERROR: {
      int code = r.signal() != 0 ? 128 + r.signal() : r.exit_code();
      // RAGFlow's analyze_error_result, in its order; then our network case.
      if (absl::StrContains(err, "Permission denied")) {
        j = Skeleton(kStatusUnauthorizedAccess, out, err, code);
        j["unauthorized_access_type"] = "file_access";
      } else if (absl::StrContains(err, "Operation not permitted")) {
        j = Skeleton(kStatusUnauthorizedAccess, out, err, code);
        j["unauthorized_access_type"] = "disallowed_syscall";
      } else if (absl::StrContains(err, "MemoryError")) {
        j = Skeleton(kStatusResourceLimit, out, err, code);
        j["resource_limit_type"] = "memory";
      } else if (opts.network_refused && LooksLikeRefusedNetwork(err)) {
        j = Skeleton(kStatusUnauthorizedAccess, out, err, code);
        j["unauthorized_access_type"] = "network_access";
      } else {
        j = Skeleton(kStatusProgramError, out, err, code);
        j["runtime_error_type"] = r.signal() != 0 ? "signalled" : "nonzero_exit";
      }
      break;
    }
    case ev1::STATUS_REJECTED:
      j = Skeleton(kStatusRunnerError, out, r.error().empty() ? err : r.error(), kExitInternal);
      j["detail"] = "rejected";
      break;
    default:  // INTERNAL_ERROR, UNSPECIFIED
      j = Skeleton(kStatusRunnerError, out, r.error().empty() ? err : r.error(), kExitInternal);
      j["detail"] = "internal_error";
      break;
  }
  if (r.status() != ev1::STATUS_SUCCESS && j["detail"].is_null() && !r.error().empty())
    j["detail"] = r.error();
  j["time_used_ms"] = r.duration_ms();
  if (r.peak_memory_bytes() != 0) j["memory_used_kb"] = static_cast<double>(r.peak_memory_bytes()) / 1024.0;
  j["artifacts"] = Artifacts(r);
  return j;
}

ojson NoAvailableContainerResult() {
  ojson j = Skeleton(kStatusRunnerError, "", "Container pool is busy", kExitNoContainer);
  j["detail"] = "no_available_container";
  return j;
}

ojson InternalErrorResult(absl::string_view stderr_text, absl::string_view detail) {
  ojson j = Skeleton(kStatusRunnerError, "", std::string(stderr_text), kExitInternal);
  j["detail"] = detail;
  return j;
}

ojson RateLimitedResult() {
  constexpr char kTooMany[] = "Too many requests, please try again later";
  ojson j = Skeleton(kStatusRunnerError, "", kTooMany, kExitRateLimited);
  j["detail"] = kTooMany;
  return j;
}

std::string ResultStatusOf(const ojson& result) {
  auto it = result.find("status");
  return it != result.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace gvshim::gateway
