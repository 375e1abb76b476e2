#include "shim/oci/hardening.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace gvshim::oci {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string SourceDir() {
  const char* dir = std::getenv("GVSHIM_SOURCE_DIR");
  return dir != nullptr ? dir : ".";
}

json CriSpec() {
  auto spec = LoadSpec(SourceDir() + "/tests/testdata/seccomp/cri-container-spec.json");
  EXPECT_TRUE(spec.ok()) << spec.status();
  return spec.ok() ? *spec : json();
}

HardeningPolicy NoProfile() {
  HardeningPolicy p;
  p.profiles_dir = SourceDir() + "/seccomp-profiles";
  return p;
}

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// ---- Harden: one case per transform
// -------------------------------------------------------------------------

struct TransformCase {
  const char* name;
  std::function<void(json&)> edit_spec;
  std::function<void(HardeningPolicy&)> edit_policy;
  std::function<void(const HardeningResult&, const json& input)> check;
};

class Transforms : public ::testing::TestWithParam<TransformCase> {};

TEST_P(Transforms, Apply) {
  const TransformCase& c = GetParam();
  json spec = CriSpec();
  if (c.edit_spec) c.edit_spec(spec);
  HardeningPolicy policy = NoProfile();
  if (c.edit_policy) c.edit_policy(policy);
  auto result = HardenWithProfile(spec, policy, std::nullopt);
  ASSERT_TRUE(result.ok()) << result.status();
  c.check(*result, spec);
}

const char* kSets[] = {"bounding", "effective", "inheritable", "permitted", "ambient"};

INSTANTIATE_TEST_SUITE_P(
    Table, Transforms,
    ::testing::Values(
        TransformCase{
            "ReadonlyRoot", nullptr, nullptr,
            [](const HardeningResult& r, const json&) { EXPECT_EQ(r.spec["root"]["readonly"], true); }},
        TransformCase{
            "ReadonlyRootOffKeepsSpecChoice", [](json& s) { s["root"]["readonly"] = true; },
            [](HardeningPolicy& p) { p.readonly_rootfs = false; },
            [](const HardeningResult& r, const json&) { EXPECT_EQ(r.spec["root"]["readonly"], true); }},
        TransformCase{
            "ReadonlyRootOffLeavesAbsent", nullptr, [](HardeningPolicy& p) { p.readonly_rootfs = false; },
            [](const HardeningResult& r, const json&) { EXPECT_FALSE(r.spec["root"].contains("readonly")); }},
        TransformCase{"TmpfsAdded", nullptr,
                      [](HardeningPolicy& p) {
                        p.tmpfs.push_back({"/scratch", "32m", "0700", true});
                      },
                      [](const HardeningResult& r, const json& in) {
                        const json& mounts = r.spec["mounts"];
                        ASSERT_EQ(mounts.size(), in["mounts"].size() + 2);
                        EXPECT_EQ(mounts[mounts.size() - 2],
                                  json({{"destination", "/tmp"},
                                        {"type", "tmpfs"},
                                        {"source", "tmpfs"},
                                        {"options", {"nosuid", "nodev", "mode=1777", "size=64m"}}}));
                        EXPECT_EQ(mounts.back()["options"],
                                  json({"nosuid", "nodev", "noexec", "mode=0700", "size=32m"}));
                      }},
        TransformCase{
            "TmpfsSkippedWhenSpecMountsIt",
            [](json& s) {
              s["mounts"].push_back({{"destination", "/tmp/"}, {"type", "bind"}, {"source", "/vol"}});
            },
            nullptr,
            [](const HardeningResult& r, const json& in) {
              EXPECT_EQ(r.spec["mounts"], in["mounts"]);
              EXPECT_THAT(r.notes, ::testing::Contains(HasSubstr("tmpfs /tmp not added")));
            }},
        TransformCase{"CriMountsUntouched", nullptr, nullptr,
                      [](const HardeningResult& r, const json& in) {
                        for (size_t i = 0; i < in["mounts"].size(); ++i)
                          EXPECT_EQ(r.spec["mounts"][i], in["mounts"][i]);
                      }},
        TransformCase{"CapabilitiesDroppedByDefault", nullptr, nullptr,
                      [](const HardeningResult& r, const json&) {
                        for (const char* set : kSets)
                          EXPECT_EQ(r.spec["process"]["capabilities"][set], json::array()) << set;
                      }},
        TransformCase{"CapabilitiesReducedToAllowList", nullptr,
                      [](HardeningPolicy& p) {
                        p.allowed_capabilities = {"NET_BIND_SERVICE", "CAP_SYS_ADMIN"};
                      },
                      [](const HardeningResult& r, const json&) {
                        const json& caps = r.spec["process"]["capabilities"];
                        // CAP_SYS_ADMIN is allowed but the spec never asked for it: not added.
                        for (const char* set : {"bounding", "effective", "permitted"}) {
                          EXPECT_EQ(caps[set], json({"CAP_NET_BIND_SERVICE"})) << set;
                        }
                        EXPECT_EQ(caps["inheritable"], json::array());
                        EXPECT_EQ(caps["ambient"], json::array());
                      }},
        TransformCase{"CapabilitiesObjectCreated", [](json& s) { s["process"].erase("capabilities"); },
                      nullptr,
                      [](const HardeningResult& r, const json&) {
                        for (const char* set : kSets)
                          EXPECT_EQ(r.spec["process"]["capabilities"][set], json::array());
                      }},
        TransformCase{"NoNewPrivileges", nullptr, nullptr,
                      [](const HardeningResult& r, const json&) {
                        EXPECT_EQ(r.spec["process"]["noNewPrivileges"], true);
                      }},
        TransformCase{"MaskedPathsKept", nullptr, nullptr,
                      [](const HardeningResult& r, const json& in) {
                        EXPECT_EQ(r.spec["linux"]["maskedPaths"], in["linux"]["maskedPaths"]);
                        EXPECT_EQ(r.spec["linux"]["readonlyPaths"], in["linux"]["readonlyPaths"]);
                      }},
        TransformCase{"MaskedPathsDefaulted",
                      [](json& s) {
                        s["linux"].erase("maskedPaths");
                        s["linux"].erase("readonlyPaths");
                      },
                      nullptr,
                      [](const HardeningResult& r, const json&) {
                        EXPECT_THAT(r.spec["linux"]["maskedPaths"], ::testing::Contains("/proc/kcore"));
                        EXPECT_THAT(r.spec["linux"]["readonlyPaths"], ::testing::Contains("/proc/sys"));
                      }},
        TransformCase{"ForceUidGid", nullptr,
                      [](HardeningPolicy& p) {
                        p.force_uid = 1000;
                        p.force_gid = 1001;
                      },
                      [](const HardeningResult& r, const json&) {
                        const json& user = r.spec["process"]["user"];
                        EXPECT_EQ(user["uid"], 1000);
                        EXPECT_EQ(user["gid"], 1001);
                        EXPECT_EQ(user["additionalGids"], json({10}));  // group 0 dropped
                      }},
        TransformCase{"ForceUidCreatesUser", [](json& s) { s["process"].erase("user"); },
                      [](HardeningPolicy& p) { p.force_uid = 65534; },
                      [](const HardeningResult& r, const json&) {
                        EXPECT_EQ(r.spec["process"]["user"], json({{"uid", 65534}, {"gid", 0}}));
                      }},
        TransformCase{"NoSeccompByDefault", nullptr, nullptr,
                      [](const HardeningResult& r, const json&) {
                        EXPECT_FALSE(r.spec["linux"].contains("seccomp"));
                        EXPECT_FALSE(r.needs_oci_seccomp);
                      }},
        TransformCase{"SpecSeccompKeptAndEnforced",
                      [](json& s) {
                        s["linux"]["seccomp"] = {{"defaultAction", "SCMP_ACT_ALLOW"}};
                      },
                      nullptr,
                      [](const HardeningResult& r, const json& in) {
                        EXPECT_EQ(r.spec["linux"]["seccomp"], in["linux"]["seccomp"]);
                        EXPECT_TRUE(r.needs_oci_seccomp);
                      }},
        TransformCase{"SandboxContainerSameTreatment",
                      [](json& s) { s["annotations"]["io.kubernetes.cri.container-type"] = "sandbox"; },
                      nullptr,
                      [](const HardeningResult& r, const json&) {
                        EXPECT_EQ(r.spec["root"]["readonly"], true);
                        EXPECT_EQ(r.spec["process"]["capabilities"]["bounding"], json::array());
                        EXPECT_THAT(r.notes, ::testing::Contains(HasSubstr("pod sandbox")));
                      }},
        TransformCase{"UnrelatedFieldsUntouched", nullptr, nullptr,
                      [](const HardeningResult& r, const json& in) {
                        for (const char* key : {"ociVersion", "annotations"}) EXPECT_EQ(r.spec[key], in[key]);
                        EXPECT_EQ(r.spec["linux"]["namespaces"], in["linux"]["namespaces"]);
                        EXPECT_EQ(r.spec["linux"]["resources"], in["linux"]["resources"]);
                        EXPECT_EQ(r.spec["process"]["args"], in["process"]["args"]);
                      }},
        TransformCase{"Disabled", nullptr, [](HardeningPolicy& p) { p.enabled = false; },
                      [](const HardeningResult& r, const json& in) {
                        EXPECT_EQ(r.spec, in);
                        EXPECT_FALSE(r.needs_oci_seccomp);
                      }}),
    [](const ::testing::TestParamInfo<TransformCase>& info) { return std::string(info.param.name); });

TEST(Harden, EmbedsTheNamedProfile) {
  HardeningPolicy policy = NoProfile();
  policy.seccomp_profile = "strict";
  auto result = Harden(CriSpec(), policy);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->needs_oci_seccomp);
  const json& sc = result->spec["linux"]["seccomp"];
  EXPECT_EQ(sc["defaultAction"], "SCMP_ACT_ERRNO");
  EXPECT_FALSE(sc.contains("archMap"));
  EXPECT_GT(sc["syscalls"].size(), 5u);
}

TEST(Harden, AbsoluteProfilePathAndMissingProfile) {
  HardeningPolicy policy = NoProfile();
  policy.seccomp_profile = SourceDir() + "/seccomp-profiles/default.json";
  EXPECT_TRUE(Harden(CriSpec(), policy).ok());
  policy.seccomp_profile = "nonexistent";
  auto result = Harden(CriSpec(), policy);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(result.status()), HasSubstr("seccomp-profiles/nonexistent.json"));
}

TEST(Harden, IsIdempotent) {
  HardeningPolicy policy = NoProfile();
  policy.seccomp_profile = "strict";
  auto once = Harden(CriSpec(), policy);
  ASSERT_TRUE(once.ok());
  auto twice = Harden(once->spec, policy);
  ASSERT_TRUE(twice.ok());
  EXPECT_EQ(once->spec, twice->spec);
}

struct InvalidSpecCase {
  const char* name;
  std::function<void(json&)> edit;
  const char* message;
};

class InvalidSpecs : public ::testing::TestWithParam<InvalidSpecCase> {};

TEST_P(InvalidSpecs, AreRejected) {
  json spec = CriSpec();
  GetParam().edit(spec);
  auto result = HardenWithProfile(spec, NoProfile(), std::nullopt);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(result.status()), ::testing::StartsWith(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Table, InvalidSpecs,
    ::testing::Values(
        InvalidSpecCase{"NotObject", [](json& s) { s = json::array(); },
                        "spec: (document): must be an object"},
        InvalidSpecCase{"NoProcess", [](json& s) { s.erase("process"); }, "spec: process: missing"},
        InvalidSpecCase{"NoRoot", [](json& s) { s.erase("root"); }, "spec: root: missing"},
        InvalidSpecCase{"RootString", [](json& s) { s["root"] = "rootfs"; },
                        "spec: root: must be object, not string"},
        InvalidSpecCase{"NoRootPath", [](json& s) { s["root"].erase("path"); }, "spec: root.path: missing"},
        InvalidSpecCase{"ReadonlyString", [](json& s) { s["root"]["readonly"] = "yes"; },
                        "spec: root.readonly: must be boolean, not string"},
        InvalidSpecCase{"MountsObject", [](json& s) { s["mounts"] = json::object(); },
                        "spec: mounts: must be array, not object"},
        InvalidSpecCase{"MountNoDestination", [](json& s) { s["mounts"][3].erase("destination"); },
                        "spec: mounts[3].destination: missing"},
        InvalidSpecCase{"BoundingString",
                        [](json& s) { s["process"]["capabilities"]["bounding"] = "CAP_KILL"; },
                        "spec: process.capabilities.bounding: must be array, not string"},
        InvalidSpecCase{"CapNotString", [](json& s) { s["process"]["capabilities"]["effective"][2] = 7; },
                        "spec: process.capabilities.effective[2]: must be a string"},
        InvalidSpecCase{"NegativeUid", [](json& s) { s["process"]["user"]["uid"] = -1; },
                        "spec: process.user.uid: must be a non-negative integer"},
        InvalidSpecCase{"LinuxArray", [](json& s) { s["linux"] = json::array(); },
                        "spec: linux: must be object, not array"},
        InvalidSpecCase{"MaskedPathsString", [](json& s) { s["linux"]["maskedPaths"] = "/proc"; },
                        "spec: linux.maskedPaths: must be array, not string"}),
    [](const ::testing::TestParamInfo<InvalidSpecCase>& info) { return std::string(info.param.name); });

// ---- Annotations
// --------------------------------------------------------------------------------------------

struct AnnotationCase {
  const char* name;
  std::map<std::string, std::string> annotations;
  std::function<void(HardeningPolicy&)> edit_base;
  absl::StatusCode code;
  std::function<void(const HardeningPolicy&)> check;  // OK cases
  const char* message = "";                           // error cases: substring
};

class Annotations : public ::testing::TestWithParam<AnnotationCase> {};

TEST_P(Annotations, Apply) {
  const AnnotationCase& c = GetParam();
  HardeningPolicy base = NoProfile();
  base.tmpfs = {{"/tmp", "64m", "1777", true}};
  base.allowed_capabilities = {"CAP_NET_BIND_SERVICE", "CAP_CHOWN"};
  base.seccomp_profile = "default";
  if (c.edit_base) c.edit_base(base);
  auto policy = ApplyAnnotations(base, c.annotations);
  ASSERT_EQ(policy.status().code(), c.code) << policy.status();
  if (policy.ok()) {
    if (c.check) c.check(*policy);
  } else {
    EXPECT_THAT(Msg(policy.status()), HasSubstr(c.message));
  }
}

auto Loosen = [](HardeningPolicy& p) { p.allow_annotation_loosening = true; };
constexpr auto kOk = absl::StatusCode::kOk;
constexpr auto kDenied = absl::StatusCode::kPermissionDenied;
constexpr auto kBad = absl::StatusCode::kInvalidArgument;

INSTANTIATE_TEST_SUITE_P(
    Table, Annotations,
    ::testing::Values(
        AnnotationCase{"NoneIsIdentity",
                       {},
                       nullptr,
                       kOk,
                       [](const HardeningPolicy& p) {
                         HardeningPolicy b = NoProfile();
                         EXPECT_EQ(p.seccomp_profile, "default");
                         EXPECT_EQ(p.readonly_rootfs, b.readonly_rootfs);
                       }},
        AnnotationCase{"UnrelatedIgnored",
                       {{"dev.gvshim.execute-languages", "python"}, {"foo", "bar"}},
                       nullptr,
                       kOk,
                       nullptr},
        // seccomp-profile
        AnnotationCase{"ProfileTightenToStrict",
                       {{"dev.gvshim.seccomp-profile", "strict"}},
                       nullptr,
                       kOk,
                       [](const HardeningPolicy& p) { EXPECT_EQ(p.seccomp_profile, "strict"); }},
        AnnotationCase{"ProfileLoosenToNone",
                       {{"dev.gvshim.seccomp-profile", ""}},
                       nullptr,
                       kDenied,
                       nullptr,
                       "dev.gvshim.seccomp-profile"},
        AnnotationCase{"ProfileLoosenToNoneAllowed",
                       {{"dev.gvshim.seccomp-profile", ""}},
                       Loosen,
                       kOk,
                       [](const HardeningPolicy& p) { EXPECT_EQ(p.seccomp_profile, ""); }},
        AnnotationCase{"ProfileStrictToDefaultDenied",
                       {{"dev.gvshim.seccomp-profile", "default"}},
                       [](HardeningPolicy& p) { p.seccomp_profile = "strict"; },
                       kDenied,
                       nullptr,
                       "not known to be stricter"},
        AnnotationCase{"ProfileCustomFromNone",
                       {{"dev.gvshim.seccomp-profile", "python-only"}},
                       [](HardeningPolicy& p) { p.seccomp_profile = ""; },
                       kOk,
                       [](const HardeningPolicy& p) { EXPECT_EQ(p.seccomp_profile, "python-only"); }},
        AnnotationCase{"ProfileHostPathDenied",
                       {{"dev.gvshim.seccomp-profile", "/etc/my.json"}},
                       nullptr,
                       kDenied,
                       nullptr,
                       "dev.gvshim.seccomp-profile"},
        AnnotationCase{"ProfileRelativePathMalformed",
                       {{"dev.gvshim.seccomp-profile", "../x"}},
                       nullptr,
                       kBad,
                       nullptr,
                       "must be a profile name or an absolute path"},
        // readonly-rootfs
        AnnotationCase{"ReadonlyTrueOk", {{"dev.gvshim.readonly-rootfs", "true"}}, nullptr, kOk, nullptr},
        AnnotationCase{"ReadonlyFalseDenied",
                       {{"dev.gvshim.readonly-rootfs", "false"}},
                       nullptr,
                       kDenied,
                       nullptr,
                       "annotation dev.gvshim.readonly-rootfs=\"false\" would loosen"},
        AnnotationCase{"ReadonlyFalseAllowed",
                       {{"dev.gvshim.readonly-rootfs", "false"}},
                       Loosen,
                       kOk,
                       [](const HardeningPolicy& p) { EXPECT_FALSE(p.readonly_rootfs); }},
        AnnotationCase{"ReadonlyTighten",
                       {{"dev.gvshim.readonly-rootfs", "true"}},
                       [](HardeningPolicy& p) { p.readonly_rootfs = false; },
                       kOk,
                       [](const HardeningPolicy& p) { EXPECT_TRUE(p.readonly_rootfs); }},
        AnnotationCase{"ReadonlyMalformed",
                       {{"dev.gvshim.readonly-rootfs", "yes"}},
                       nullptr,
                       kBad,
                       nullptr,
                       "must be \"true\" or \"false\""},
        // hardening on/off
        AnnotationCase{"HardeningOffDenied",
                       {{"dev.gvshim.hardening", "false"}},
                       nullptr,
                       kDenied,
                       nullptr,
                       "turns hardening off"},
        AnnotationCase{"HardeningOffAllowed",
                       {{"dev.gvshim.hardening", "false"}},
                       Loosen,
                       kOk,
                       [](const HardeningPolicy& p) { EXPECT_FALSE(p.enabled); }},
        AnnotationCase{"HardeningOnTightens",
                       {{"dev.gvshim.hardening", "true"}},
                       [](HardeningPolicy& p) { p.enabled = false; },
                       kOk,
                       [](const HardeningPolicy& p) { EXPECT_TRUE(p.enabled); }},
        // no-new-privileges
        AnnotationCase{"NnpOffDenied",
                       {{"dev.gvshim.no-new-privileges", "false"}},
                       nullptr,
                       kDenied,
                       nullptr,
                       "dev.gvshim.no-new-privileges"},
        AnnotationCase{"NnpOffAllowed",
                       {{"dev.gvshim.no-new-privileges", "false"}},
                       Loosen,
                       kOk,
                       [](const HardeningPolicy& p) { EXPECT_FALSE(p.no_new_privileges); }},
        // capabilities
        AnnotationCase{"CapsSubset",
                       {{"dev.gvshim.capabilities", "net_bind_service"}},
                       nullptr,
                       kOk,
                       [](const HardeningPolicy& p) {
                         EXPECT_THAT(p.allowed_capabilities, ElementsAre("CAP_NET_BIND_SERVICE"));
                       }},
        AnnotationCase{"CapsEmptyDropsAll",
                       {{"dev.gvshim.capabilities", ""}},
                       nullptr,
                       kOk,
                       [](const HardeningPolicy& p) { EXPECT_TRUE(p.allowed_capabilities.empty()); }},
        AnnotationCase{"CapsAddDenied",
                       {{"dev.gvshim.capabilities", "NET_BIND_SERVICE,SYS_ADMIN"}},
                       nullptr,
                       kDenied,
                       nullptr,
                       "adds CAP_SYS_ADMIN"},
        AnnotationCase{"CapsAddAllowed",
                       {{"dev.gvshim.capabilities", "SYS_PTRACE"}},
                       Loosen,
                       kOk,
                       [](const HardeningPolicy& p) {
                         EXPECT_THAT(p.allowed_capabilities, ElementsAre("CAP_SYS_PTRACE"));
                       }},
        AnnotationCase{"CapsUnknown",
                       {{"dev.gvshim.capabilities", "FLY"}},
                       nullptr,
                       kBad,
                       nullptr,
                       "unknown capability \"FLY\""},
        // tmpfs
        AnnotationCase{"TmpfsShrink",
                       {{"dev.gvshim.tmpfs", "/tmp:16m:1777:noexec"}},
                       nullptr,
                       kOk,
                       [](const HardeningPolicy& p) {
                         ASSERT_EQ(p.tmpfs.size(), 1u);
                         EXPECT_EQ(p.tmpfs[0], (TmpfsMount{"/tmp", "16m", "1777", true}));
                       }},
        AnnotationCase{"TmpfsRemoveAll",
                       {{"dev.gvshim.tmpfs", ""}},
                       nullptr,
                       kOk,
                       [](const HardeningPolicy& p) { EXPECT_TRUE(p.tmpfs.empty()); }},
        AnnotationCase{"TmpfsNewDestinationDenied",
                       {{"dev.gvshim.tmpfs", "/scratch:32m"}},
                       nullptr,
                       kDenied,
                       nullptr,
                       "adds a writable tmpfs at /scratch"},
        AnnotationCase{"TmpfsNewDestinationAllowed",
                       {{"dev.gvshim.tmpfs", "/tmp:64m:1777:noexec,/scratch:32m"}},
                       Loosen,
                       kOk,
                       [](const HardeningPolicy& p) { EXPECT_EQ(p.tmpfs.size(), 2u); }},
        AnnotationCase{"TmpfsGrowDenied",
                       {{"dev.gvshim.tmpfs", "/tmp:1g:1777:noexec"}},
                       nullptr,
                       kDenied,
                       nullptr,
                       "grows /tmp beyond 64m"},
        AnnotationCase{"TmpfsDropNoexecDenied",
                       {{"dev.gvshim.tmpfs", "/tmp:64m"}},
                       nullptr,
                       kDenied,
                       nullptr,
                       "drops noexec"},
        AnnotationCase{"TmpfsWiderModeDenied",
                       {{"dev.gvshim.tmpfs", "/tmp:64m:1777:noexec"}},
                       [](HardeningPolicy& p) { p.tmpfs[0].mode = "0700"; },
                       kDenied,
                       nullptr,
                       "widens the mode"},
        AnnotationCase{
            "TmpfsMalformed", {{"dev.gvshim.tmpfs", "/tmp"}}, nullptr, kBad, nullptr, "not of the form"},
        AnnotationCase{"TmpfsBadSize",
                       {{"dev.gvshim.tmpfs", "/tmp:lots"}},
                       nullptr,
                       kBad,
                       nullptr,
                       "tmpfs size \"lots\""},
        AnnotationCase{"TmpfsRelative",
                       {{"dev.gvshim.tmpfs", "tmp:1m"}},
                       nullptr,
                       kBad,
                       nullptr,
                       "not an absolute path"},
        // run-as
        AnnotationCase{"RunAsUidFromNone",
                       {{"dev.gvshim.run-as-uid", "1000"}, {"dev.gvshim.run-as-gid", "1000"}},
                       nullptr,
                       kOk,
                       [](const HardeningPolicy& p) {
                         EXPECT_EQ(p.force_uid, 1000u);
                         EXPECT_EQ(p.force_gid, 1000u);
                       }},
        AnnotationCase{
            "RunAsRootDenied", {{"dev.gvshim.run-as-uid", "0"}}, nullptr, kDenied, nullptr, "runs as root"},
        AnnotationCase{"RunAsOtherUidDenied",
                       {{"dev.gvshim.run-as-uid", "1001"}},
                       [](HardeningPolicy& p) { p.force_uid = 65534; },
                       kDenied,
                       nullptr,
                       "replaces the node's id 65534"},
        AnnotationCase{"RunAsSameUidOk",
                       {{"dev.gvshim.run-as-uid", "65534"}},
                       [](HardeningPolicy& p) { p.force_uid = 65534; },
                       kOk,
                       nullptr},
        AnnotationCase{"RunAsMalformed",
                       {{"dev.gvshim.run-as-gid", "-5"}},
                       nullptr,
                       kBad,
                       nullptr,
                       "must be a decimal id"}),
    [](const ::testing::TestParamInfo<AnnotationCase>& info) { return std::string(info.param.name); });

TEST(SpecAnnotations, ReadsStringsAndRejectsOthers) {
  auto a = SpecAnnotations(CriSpec());
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->at("io.kubernetes.cri.container-type"), "container");
  json bad = {{"annotations", {{"x", 1}}}};
  EXPECT_EQ(SpecAnnotations(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- TOML
// ---------------------------------------------------------------------------------------------------

absl::StatusOr<HardeningPolicy> ParseToml(const std::string& text) {
  toml::table doc = toml::parse(std::string_view(text), std::string_view("gvshim.toml"));
  const toml::table* table = doc["hardening"].as_table();
  if (table == nullptr) return absl::NotFoundError("no [hardening]");
  return ParseHardeningTable(*table, "gvshim.toml");
}

TEST(Toml, FullTable) {
  auto policy = ParseToml(R"(
[hardening]
enabled = true
readonly_rootfs = false
tmpfs = [ { destination = "/tmp", size = "128m", mode = "1777", noexec = true }, "/scratch:16m:0700" ]
allowed_capabilities = ["NET_BIND_SERVICE", "cap_chown"]
no_new_privileges = true
run_as_uid = 1000
run_as_gid = 1000
seccomp_profile = "strict"
profiles_dir = "/opt/profiles"
allow_annotation_loosening = true
)");
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_FALSE(policy->readonly_rootfs);
  EXPECT_THAT(policy->tmpfs, ElementsAre(TmpfsMount{"/tmp", "128m", "1777", true},
                                         TmpfsMount{"/scratch", "16m", "0700", false}));
  EXPECT_THAT(policy->allowed_capabilities, ElementsAre("CAP_NET_BIND_SERVICE", "CAP_CHOWN"));
  EXPECT_EQ(policy->force_uid, 1000u);
  EXPECT_EQ(policy->force_gid, 1000u);
  EXPECT_EQ(policy->seccomp_profile, "strict");
  EXPECT_EQ(policy->profiles_dir, "/opt/profiles");
  EXPECT_TRUE(policy->allow_annotation_loosening);
  EXPECT_EQ(*ResolveProfilePath(*policy), "/opt/profiles/strict.json");
}

TEST(Toml, EmptyTableGivesDefaults) {
  auto policy = ParseToml("[hardening]\n");
  ASSERT_TRUE(policy.ok());
  EXPECT_EQ(*policy, HardeningPolicy());
}

struct TomlErrorCase {
  const char* name;
  const char* text;
  const char* message;
};

class TomlErrors : public ::testing::TestWithParam<TomlErrorCase> {};

TEST_P(TomlErrors, NameFileLineAndKey) {
  auto policy = ParseToml(GetParam().text);
  ASSERT_FALSE(policy.ok());
  EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(policy.status()), ::testing::StartsWith(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Table, TomlErrors,
    ::testing::Values(
        TomlErrorCase{"WrongType", "[hardening]\nenabled = true\nreadonly_rootfs = \"yes\"\n",
                      "gvshim.toml:3:19: hardening.readonly_rootfs: must be a boolean, not string"},
        TomlErrorCase{"UnknownKey", "[hardening]\n  readonly_rootf = true\n",
                      "gvshim.toml:2:3: hardening.readonly_rootf: unknown key"},
        TomlErrorCase{"BadCapability", "[hardening]\nallowed_capabilities = [\"CHOWN\", \"FLY\"]\n",
                      "gvshim.toml:2:34: hardening.allowed_capabilities[1]: unknown capability \"FLY\""},
        TomlErrorCase{"BadTmpfsString", "[hardening]\ntmpfs = [\"/tmp:big\"]\n",
                      "gvshim.toml:2:10: hardening.tmpfs[0]: tmpfs size \"big\""},
        TomlErrorCase{"BadTmpfsKey",
                      "[hardening]\ntmpfs = [{destination = \"/tmp\", size = \"1m\", sise = 2}]\n",
                      "gvshim.toml:2:46: hardening.tmpfs[0].sise: unknown key"},
        TomlErrorCase{"TmpfsTwice", "[hardening]\ntmpfs = [\"/tmp:1m\", \"/tmp:2m\"]\n",
                      "gvshim.toml:2:21: hardening.tmpfs[1]: /tmp is listed twice"},
        TomlErrorCase{"RootUid", "[hardening]\nrun_as_uid = 0\n",
                      "gvshim.toml:2:14: hardening.run_as_uid: must be a non-root id"},
        TomlErrorCase{
            "RelativeProfile", "[hardening]\nseccomp_profile = \"profiles/strict.json\"\n",
            "gvshim.toml:2:19: hardening.seccomp_profile: seccomp profile \"profiles/strict.json\" must be"},
        TomlErrorCase{"RelativeDir", "[hardening]\nprofiles_dir = \"profiles\"\n",
                      "gvshim.toml:2:16: hardening.profiles_dir: must be an absolute path"}),
    [](const ::testing::TestParamInfo<TomlErrorCase>& info) { return std::string(info.param.name); });

// ---- Spec files
// ---------------------------------------------------------------------------------------------

class SpecFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gvoci-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(SpecFiles, SaveIsAtomicAndKeepsMode) {
  std::string path = dir_ + "/config.json";
  { std::ofstream(path) << "{}"; }
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  json spec = CriSpec();
  ASSERT_TRUE(SaveSpec(path, spec).ok());
  auto loaded = LoadSpec(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(*loaded, spec);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  int entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 1);  // no temporary file left behind
}

TEST_F(SpecFiles, NewFileIs0644) {
  std::string path = dir_ + "/new.json";
  ASSERT_TRUE(SaveSpec(path, json::object()).ok());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
}

TEST_F(SpecFiles, ErrorsNameThePath) {
  auto missing = LoadSpec(dir_ + "/nope.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(missing.status()), HasSubstr(dir_ + "/nope.json"));
  std::string bad = dir_ + "/bad.json";
  { std::ofstream(bad) << "{\n  \"a\": [1,\n}"; }
  auto parsed = LoadSpec(bad);
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(parsed.status()), HasSubstr(bad + ":3:1:"));
  auto unwritable = SaveSpec(dir_ + "/no/such/dir/config.json", json::object());
  EXPECT_FALSE(unwritable.ok());
  EXPECT_THAT(Msg(unwritable), HasSubstr(dir_ + "/no/such/dir/config.json"));
}

}  // namespace
}  // namespace gvshim::oci

// ---- policies for what the CRI's security context asks (privileged, host network, sysctls, propagation)
// ----

namespace gvshim::oci {
namespace {

json Privileged(json spec) {
  json all = json::array();
  for (const char* c : {"CAP_CHOWN",
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
                        "CAP_AUDIT_READ"}) {
    all.push_back(c);
  }
  for (const char* set : {"bounding", "effective", "permitted"}) spec["process"]["capabilities"][set] = all;
  spec["linux"].erase("maskedPaths");
  spec["linux"].erase("readonlyPaths");
  return spec;
}

TEST(CriPolicy, PrivilegedIsRecognised) {
  auto real = LoadSpec(SourceDir() + "/tests/testdata/seccomp/cri-privileged-spec.json");  // containerd 1.6's
  ASSERT_TRUE(real.ok()) << real.status();
  EXPECT_TRUE(IsPrivileged(*real));
  EXPECT_FALSE(IsPrivileged(CriSpec()));
  EXPECT_TRUE(IsPrivileged(Privileged(CriSpec())));
  json masked = Privileged(CriSpec());
  masked["linux"]["maskedPaths"] = {"/proc/kcore"};
  EXPECT_FALSE(IsPrivileged(masked)) << "all capabilities but masked paths: not privileged";
  json no_admin = Privileged(CriSpec());
  auto& b = no_admin["process"]["capabilities"]["bounding"];
  b.erase(std::find(b.begin(), b.end(), "CAP_SYS_ADMIN"));
  EXPECT_FALSE(IsPrivileged(no_admin)) << "no CAP_SYS_ADMIN: not privileged";
}

TEST(CriPolicy, PrivilegedRefusedUnlessAllowed) {
  auto refused = HardenWithProfile(Privileged(CriSpec()), NoProfile(), std::nullopt);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(Msg(refused.status()), HasSubstr("allow_privileged = false"));
  HardeningPolicy allow = NoProfile();
  allow.allow_privileged = true;
  auto ok = HardenWithProfile(Privileged(CriSpec()), allow, std::nullopt);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(ok->privileged);
  EXPECT_EQ(ok->spec["process"]["capabilities"]["bounding"].size(), 38u) << "an allowed privileged container "
                                                                            "keeps its capabilities";
  EXPECT_FALSE(ok->spec["linux"].contains("maskedPaths"));
  EXPECT_TRUE(ok->spec["root"]["readonly"]) << "the rest of the policy still applies";
  EXPECT_TRUE(ok->spec["process"]["noNewPrivileges"]);
}

TEST(CriPolicy, HostNetwork) {
  json spec = CriSpec();
  ASSERT_FALSE(UsesHostNetwork(spec));
  json& ns = spec["linux"]["namespaces"];
  json kept = json::array();
  for (const json& n : ns) {
    if (n["type"] != "network") kept.push_back(n);
  }
  ns = kept;
  EXPECT_TRUE(UsesHostNetwork(spec));
  EXPECT_FALSE(UsesHostNetwork(json::object())) << "a spec that lists no namespaces says nothing";
  auto refused = HardenWithProfile(spec, NoProfile(), std::nullopt);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(Msg(refused.status()), HasSubstr("host_network = \"refuse\""));
  for (const char* mode : {"isolated", "host"}) {
    HardeningPolicy p = NoProfile();
    p.host_network = mode;
    EXPECT_TRUE(HardenWithProfile(spec, p, std::nullopt).ok()) << mode;
  }
}

TEST(CriPolicy, Sysctls) {
  json spec = CriSpec();
  spec["linux"]["sysctl"] = {{"kernel.shm_rmid_forced", "1"}};
  auto refused = HardenWithProfile(spec, NoProfile(), std::nullopt);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Msg(refused.status()), HasSubstr("kernel.shm_rmid_forced"));
  HardeningPolicy ignore = NoProfile();
  ignore.sysctls = "ignore";
  auto ok = HardenWithProfile(spec, ignore, std::nullopt);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_FALSE(ok->spec["linux"].contains("sysctl"));
  spec["linux"]["sysctl"] = json::object();
  EXPECT_TRUE(HardenWithProfile(spec, NoProfile(), std::nullopt).ok()) << "no sysctls, nothing to refuse";
}

TEST(CriPolicy, ReadonlyPathsMakeMountsReadOnly) {
  json spec = CriSpec();
  spec["linux"]["readonlyPaths"] = {"/tmp", "/proc/sys"};
  auto r = HardenWithProfile(spec, NoProfile(), std::nullopt);
  ASSERT_TRUE(r.ok()) << r.status();
  bool found = false;
  for (const json& m : r->spec["mounts"]) {
    if (m["destination"] == "/tmp") {
      found = true;
      EXPECT_THAT(m["options"].get<std::vector<std::string>>(), ::testing::Contains("ro"));
    } else if (m["destination"] == "/proc") {
      EXPECT_THAT(m["options"].get<std::vector<std::string>>(), ::testing::Not(::testing::Contains("ro")))
          << "/proc/sys is below /proc, not above it";
    }
  }
  EXPECT_TRUE(found) << "the policy's /tmp tmpfs was not added";
}

TEST(CriPolicy, BidirectionalPropagationRefused) {
  json spec = CriSpec();
  spec["mounts"].push_back({{"destination", "/mnt"},
                            {"type", "bind"},
                            {"source", "/var/lib/kubelet/x"},
                            {"options", {"rbind", "rshared", "rw"}}});
  auto r = HardenWithProfile(spec, NoProfile(), std::nullopt);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Msg(r.status()), HasSubstr("/mnt: propagation rshared"));
  spec["mounts"].back()["options"] = {"rbind", "rslave", "rw"};
  EXPECT_TRUE(HardenWithProfile(spec, NoProfile(), std::nullopt).ok());
}

TEST(CriPolicy, HardenProcessForExecs) {
  json process = {
      {"args", {"sh"}},
      {"user", {{"uid", 0}, {"gid", 0}, {"additionalGids", {0, 10}}}},
      {"capabilities", {{"bounding", {"CAP_CHOWN", "CAP_NET_RAW"}}, {"effective", {"CAP_NET_RAW"}}}}};
  HardeningPolicy p = NoProfile();
  p.allowed_capabilities = {"CAP_NET_RAW"};
  p.force_uid = 1000;
  p.force_gid = 1000;
  auto h = HardenProcess(process, p);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ((*h)["capabilities"]["bounding"], json({"CAP_NET_RAW"}));
  EXPECT_EQ((*h)["capabilities"]["effective"], json({"CAP_NET_RAW"}));
  EXPECT_EQ((*h)["capabilities"]["ambient"], json::array());
  EXPECT_TRUE((*h)["noNewPrivileges"]);
  EXPECT_EQ((*h)["user"]["uid"], 1000);
  EXPECT_EQ((*h)["user"]["additionalGids"], json({10}));
  auto priv = HardenProcess(process, p, /*privileged_allowed=*/true);
  EXPECT_EQ((*priv)["capabilities"]["bounding"], json({"CAP_CHOWN", "CAP_NET_RAW"}));
  HardeningPolicy off;
  off.enabled = false;
  EXPECT_EQ(*HardenProcess(process, off), process);
  EXPECT_EQ(HardenProcess(json::array(), p).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CriPolicy, TomlKnobs) {
  toml::table doc =
      toml::parse("[hardening]\nallow_privileged = true\nhost_network = \"host\"\nsysctls = \"ignore\"\n");
  auto p = ParseHardeningTable(*doc["hardening"].as_table(), "gvshim.toml");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->allow_privileged);
  EXPECT_EQ(p->host_network, "host");
  EXPECT_EQ(p->sysctls, "ignore");
  for (const char* bad : {"[hardening]\nhost_network = \"bridge\"\n", "[hardening]\nsysctls = \"apply\"\n"}) {
    toml::table d = toml::parse(bad);
    auto r = ParseHardeningTable(*d["hardening"].as_table(), "gvshim.toml");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(Msg(r.status()), HasSubstr("gvshim.toml:2")) << bad;
  }
}

}  // namespace
}  // namespace gvshim::oci
