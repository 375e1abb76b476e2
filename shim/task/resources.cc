#include "shim/task/resources.h"

#include <limits>

#include "absl/strings/str_cat.h"

namespace gvshim::task {
namespace {

using nlohmann::json;

absl::Status Bad(const std::string& what, const std::string& field, const std::string& reason) {
  return absl::InvalidArgumentError(absl::StrCat(what, ".", field, ": ", reason));
}

// Reads an integer member; nullopt when absent or null.
absl::StatusOr<std::optional<int64_t>> Int(const json& obj, const char* key, const std::string& what,
                                           const std::string& field) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::optional<int64_t>();
  if (it->is_number_unsigned()) {
    uint64_t v = it->get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return Bad(what, field, "too large");
    return std::optional<int64_t>(static_cast<int64_t>(v));
  }
  if (!it->is_number_integer())
    return Bad(what, field, absl::StrCat("must be an integer, not ", it->type_name()));
  return std::optional<int64_t>(it->get<int64_t>());
}

}  // namespace

absl::StatusOr<Resources> ParseLinuxResources(const json& resources, const std::string& what) {
  Resources r;
  if (resources.is_null()) return r;
  if (!resources.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, ": must be an object"));
  if (auto mem = resources.find("memory"); mem != resources.end() && !mem->is_null()) {
    if (!mem->is_object()) return Bad(what, "memory", "must be an object");
    auto limit = Int(*mem, "limit", what, "memory.limit");
    if (!limit.ok()) return limit.status();
    if (limit->has_value()) {
      int64_t v = **limit;
      if (v < -1)
        return Bad(what, "memory.limit", absl::StrCat("must be -1 or a positive number of bytes, not ", v));
      r.memory_limit = v > 0 ? v : 0;  // 0: explicitly none
    }
  }
  if (auto cpu = resources.find("cpu"); cpu != resources.end() && !cpu->is_null()) {
    if (!cpu->is_object()) return Bad(what, "cpu", "must be an object");
    auto quota = Int(*cpu, "quota", what, "cpu.quota");
    if (!quota.ok()) return quota.status();
    if (quota->has_value()) {
      if (**quota < -1 || **quota == 0) {
        return Bad(what, "cpu.quota", absl::StrCat("must be -1 or positive, not ", **quota));
      }
      r.cpu_quota = **quota;
    }
    for (auto [key, out] : {std::pair{"period", &r.cpu_period}, std::pair{"shares", &r.cpu_shares}}) {
      auto v = Int(*cpu, key, what, absl::StrCat("cpu.", key));
      if (!v.ok()) return v.status();
      if (v->has_value()) {
        if (**v < 0)
          return Bad(what, absl::StrCat("cpu.", key), absl::StrCat("must not be negative, not ", **v));
        *out = static_cast<uint64_t>(**v);
      }
    }
  }
  return r;
}

absl::StatusOr<Resources> ResourcesFromSpec(const json& spec) {
  auto linux = spec.find("linux");
  if (linux == spec.end() || !linux->is_object()) return Resources{};
  auto res = linux->find("resources");
  if (res == linux->end()) return Resources{};
  return ParseLinuxResources(*res, "spec: linux.resources");
}

Resources Merge(const Resources& current, const Resources& update) {
  Resources r = current;
  if (update.memory_limit) r.memory_limit = update.memory_limit;
  if (update.cpu_quota) r.cpu_quota = update.cpu_quota;
  if (update.cpu_period) r.cpu_period = update.cpu_period;
  if (update.cpu_shares) r.cpu_shares = update.cpu_shares;
  return r;
}

uint64_t ReportedMemoryLimit(const Resources& r, uint64_t usage, uint64_t runsc_limit) {
  uint64_t limit = runsc_limit;
  if (r.memory_limit && *r.memory_limit > 0) limit = static_cast<uint64_t>(*r.memory_limit);
  if (limit == 0) return std::numeric_limits<uint64_t>::max();
  return limit < usage ? usage : limit;
}

bool OverMemoryLimit(const Resources& r, uint64_t usage) {
  return r.memory_limit.has_value() && *r.memory_limit > 0 && usage > static_cast<uint64_t>(*r.memory_limit);
}

}  // namespace gvshim::task
