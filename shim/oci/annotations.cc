// dev.gvshim.* annotations: per-pod adjustments of the hardening policy. The node's policy is the ceiling: an
// annotation may tighten it freely, and may loosen it only when the operator set allow_annotation_loosening.
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "shim/base/status.h"
#include "shim/oci/hardening.h"

namespace gvshim::oci {
namespace {

absl::Status Malformed(absl::string_view key, absl::string_view value, absl::string_view reason) {
  return absl::InvalidArgumentError(absl::StrCat("annotation ", key, "=\"", value, "\": ", reason));
}

absl::StatusOr<bool> ParseBool(absl::string_view key, const std::string& value) {
  if (value == "true") return true;
  if (value == "false") return false;
  return Malformed(key, value, "must be \"true\" or \"false\"");
}

// Strictness of the well-known profiles: none < default < strict.
int ProfileRank(const std::string& profile) {
  if (profile.empty()) return 0;
  if (profile == "default" || profile == "default.json") return 1;
  if (profile == "strict" || profile == "strict.json") return 2;
  return -1;  // a custom profile: no order known
}

bool ModeWithin(const std::string& mode, const std::string& base) {
  unsigned long m = std::stoul(mode, nullptr, 8);
  unsigned long b = std::stoul(base, nullptr, 8);
  return (m & ~b) == 0;
}

class Applier {
 public:
  Applier(const HardeningPolicy& base, HardeningPolicy* policy) : base_(base), policy_(policy) {}

  // Returns PERMISSION_DENIED for a loosening change the operator did not allow.
  absl::Status Loosen(absl::string_view key, absl::string_view value, absl::string_view why) const {
    if (base_.allow_annotation_loosening) return absl::OkStatus();
    return absl::PermissionDeniedError(
        absl::StrCat("annotation ", key, "=\"", value, "\" would loosen the node's hardening policy (", why,
                     "); set allow_annotation_loosening = true in [hardening] to permit it"));
  }

  absl::Status Apply(const std::string& key, const std::string& value) {
    if (key == kAnnotationHardening) {
      ASSIGN_OR_RETURN(bool on, ParseBool(key, value));
      if (!on && base_.enabled) RETURN_IF_ERROR(Loosen(key, value, "turns hardening off"));
      policy_->enabled = on;
    } else if (key == kAnnotationReadonlyRootfs) {
      ASSIGN_OR_RETURN(bool on, ParseBool(key, value));
      if (!on && base_.readonly_rootfs)
        RETURN_IF_ERROR(Loosen(key, value, "makes the root filesystem writable"));
      policy_->readonly_rootfs = on;
    } else if (key == kAnnotationNoNewPrivileges) {
      ASSIGN_OR_RETURN(bool on, ParseBool(key, value));
      if (!on && base_.no_new_privileges) RETURN_IF_ERROR(Loosen(key, value, "allows gaining privileges"));
      policy_->no_new_privileges = on;
    } else if (key == kAnnotationSeccompProfile) {
      RETURN_IF_ERROR(ApplyProfile(key, value));
    } else if (key == kAnnotationCapabilities) {
      RETURN_IF_ERROR(ApplyCapabilities(key, value));
    } else if (key == kAnnotationTmpfs) {
      RETURN_IF_ERROR(ApplyTmpfs(key, value));
    } else if (key == kAnnotationRunAsUid || key == kAnnotationRunAsGid) {
      bool uid = key == kAnnotationRunAsUid;
      uint32_t id = 0;
      if (value.empty() || !absl::SimpleAtoi(value, &id) || value[0] == '+' || value[0] == '-') {
        return Malformed(key, value, "must be a decimal id");
      }
      const std::optional<uint32_t>& current = uid ? base_.force_uid : base_.force_gid;
      if (id == 0) {
        RETURN_IF_ERROR(Loosen(key, value, "runs as root"));
      } else if (current.has_value() && *current != id) {
        RETURN_IF_ERROR(Loosen(key, value, absl::StrCat("replaces the node's id ", *current)));
      }
      (uid ? policy_->force_uid : policy_->force_gid) = id;
    }
    return absl::OkStatus();
  }

 private:
  absl::Status ApplyProfile(const std::string& key, const std::string& value) {
    const std::string& current = base_.seccomp_profile;
    HardeningPolicy probe = base_;
    probe.seccomp_profile = value;
    if (auto path = ResolveProfilePath(probe); !path.ok())
      return Malformed(key, value, path.status().message());
    bool tighter = value == current || ProfileRank(value) == 2 ||
                   (ProfileRank(value) >= 0 && ProfileRank(current) >= 0 &&
                    ProfileRank(value) >= ProfileRank(current)) ||
                   // From no profile, any profile the operator installed in profiles_dir is an improvement.
                   (current.empty() && !value.empty() && value[0] != '/');
    if (!tighter) {
      RETURN_IF_ERROR(Loosen(key, value,
                             absl::StrCat("replaces seccomp profile \"", current.empty() ? "(none)" : current,
                                          "\" with one not known to be stricter")));
    }
    policy_->seccomp_profile = value;
    return absl::OkStatus();
  }

  absl::Status ApplyCapabilities(const std::string& key, const std::string& value) {
    std::set<std::string> base_caps;
    for (const std::string& c : base_.allowed_capabilities) {
      if (auto n = NormalizeCapability(c)) base_caps.insert(*n);
    }
    std::vector<std::string> caps;
    for (absl::string_view part : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
      std::string name(absl::StripAsciiWhitespace(part));
      std::optional<std::string> normal = NormalizeCapability(name);
      if (!normal.has_value())
        return Malformed(key, value, absl::StrCat("unknown capability \"", name, "\""));
      if (!base_caps.contains(*normal)) {
        RETURN_IF_ERROR(Loosen(key, value, absl::StrCat("adds ", *normal, " to the allowed capabilities")));
      }
      if (std::find(caps.begin(), caps.end(), *normal) == caps.end()) caps.push_back(*normal);
    }
    policy_->allowed_capabilities = std::move(caps);
    return absl::OkStatus();
  }

  // The annotation replaces the tmpfs list. Tightening means: each mount is one the policy already has, with
  // no larger size, no wider mode, and noexec kept.
  absl::Status ApplyTmpfs(const std::string& key, const std::string& value) {
    std::vector<TmpfsMount> mounts;
    for (absl::string_view part : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
      auto tmpfs = ParseTmpfsSpec(std::string(absl::StripAsciiWhitespace(part)));
      if (!tmpfs.ok()) return Malformed(key, value, tmpfs.status().message());
      const TmpfsMount* same = nullptr;
      for (const TmpfsMount& b : base_.tmpfs) {
        if (b.destination == tmpfs->destination) same = &b;
      }
      if (same == nullptr) {
        RETURN_IF_ERROR(Loosen(key, value, absl::StrCat("adds a writable tmpfs at ", tmpfs->destination)));
      } else if (*TmpfsBytes(tmpfs->size) > *TmpfsBytes(same->size)) {
        RETURN_IF_ERROR(
            Loosen(key, value, absl::StrCat("grows ", same->destination, " beyond ", same->size)));
      } else if (!ModeWithin(tmpfs->mode, same->mode)) {
        RETURN_IF_ERROR(Loosen(key, value, absl::StrCat("widens the mode of ", same->destination)));
      } else if (same->noexec && !tmpfs->noexec) {
        RETURN_IF_ERROR(Loosen(key, value, absl::StrCat("drops noexec from ", same->destination)));
      }
      for (const TmpfsMount& m : mounts) {
        if (m.destination == tmpfs->destination) {
          return Malformed(key, value, absl::StrCat("mounts ", m.destination, " twice"));
        }
      }
      mounts.push_back(*tmpfs);
    }
    policy_->tmpfs = std::move(mounts);
    return absl::OkStatus();
  }

  const HardeningPolicy& base_;
  HardeningPolicy* policy_;
};

}  // namespace

absl::StatusOr<HardeningPolicy> ApplyAnnotations(const HardeningPolicy& base,
                                                 const std::map<std::string, std::string>& annotations) {
  HardeningPolicy policy = base;
  Applier applier(base, &policy);
  for (const auto& [key, value] : annotations) RETURN_IF_ERROR(applier.Apply(key, value));
  return policy;
}

}  // namespace gvshim::oci
