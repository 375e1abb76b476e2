// The node's policy inputs: dev.gvshim.* annotations, the [hardening] TOML table, and spec files on disk.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shim/oci/hardening.h"
#include "tests/unit/oci/oci_test_helpers.h"

namespace gvshim::oci {
namespace {

using nlohmann::json;
using testing::CriSpec;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::Msg;
using testing::NoProfile;
using testing::SourceDir;

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

// The policy every annotation case starts from (before its edit_base).
HardeningPolicy AnnotationBase() {
  HardeningPolicy base = NoProfile();
  base.tmpfs = {{"/tmp", "64m", "1777", true}};
  base.allowed_capabilities = {"CAP_NET_BIND_SERVICE", "CAP_CHOWN"};
  base.seccomp_profile = "default";
  return base;
}

TEST_P(Annotations, Apply) {
  const AnnotationCase& c = GetParam();
  HardeningPolicy base = AnnotationBase();
  if (c.edit_base) c.edit_base(base);
  auto policy = ApplyAnnotations(base, c.annotations);
  ASSERT_EQ(policy.status().code(), c.code) << policy.status();
  if (policy.ok()) {
    // An OK case that checks nothing would pass whatever ApplyAnnotations returned.
    ASSERT_TRUE(c.check) << "OK case " << c.name << " has no check";
    c.check(*policy);
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
                       [](const HardeningPolicy& p) { EXPECT_EQ(p, AnnotationBase()); }},
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
        AnnotationCase{"ReadonlyTrueOk",
                       {{"dev.gvshim.readonly-rootfs", "true"}},
                       [](HardeningPolicy& p) { p.readonly_rootfs = false; },
                       kOk,
                       [](const HardeningPolicy& p) {
                         EXPECT_TRUE(p.readonly_rootfs);  // tightened from the edited base
                         HardeningPolicy want = AnnotationBase();
                         want.readonly_rootfs = true;
                         EXPECT_EQ(p, want);
                       }},
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
                       [](const HardeningPolicy& p) {
                         EXPECT_EQ(p.force_uid, std::optional<uint32_t>(65534));
                         EXPECT_EQ(p.force_gid, std::nullopt);
                       }},
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
