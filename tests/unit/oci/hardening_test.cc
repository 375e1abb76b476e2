#include "shim/oci/hardening.h"

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

// A spec's own linux.seccomp (Kubernetes RuntimeDefault, or a client's) is replaced by the policy's profile,
// not merged and not kept.
TEST(Harden, PolicyProfileReplacesTheSpecsOwn) {
  HardeningPolicy policy = NoProfile();
  policy.seccomp_profile = "strict";
  auto plain = Harden(CriSpec(), policy);
  ASSERT_TRUE(plain.ok()) << plain.status();
  json spec = CriSpec();
  spec["linux"]["seccomp"] = {
      {"defaultAction", "SCMP_ACT_ALLOW"},
      {"syscalls", {{{"names", {"mkdirat"}}, {"action", "SCMP_ACT_ERRNO"}}}},
  };
  auto replaced = Harden(spec, policy);
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_TRUE(replaced->needs_oci_seccomp);
  EXPECT_EQ(replaced->spec["linux"]["seccomp"], plain->spec["linux"]["seccomp"]);
  EXPECT_NE(replaced->spec["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
}

TEST(Harden, AbsoluteProfilePathAndMissingProfile) {
  HardeningPolicy policy = NoProfile();
  policy.seccomp_profile = SourceDir() + "/seccomp-profiles/default.json";
  auto by_path = Harden(CriSpec(), policy);
  ASSERT_TRUE(by_path.ok()) << by_path.status();
  policy.seccomp_profile = "default";
  auto by_name = Harden(CriSpec(), policy);
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  EXPECT_TRUE(by_path->spec["linux"].contains("seccomp"));
  EXPECT_EQ(by_path->spec["linux"]["seccomp"], by_name->spec["linux"]["seccomp"]);
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

// An exec's process comes from containerd's copy of the spec (any client of containerd can shape it): a field
// of the wrong type is INVALID_ARGUMENT naming it, never an exception that would end the shim. (The fuzzer
// found "user": [] with a forced uid.)
TEST(CriPolicy, HardenProcessRefusesWrongTypes) {
  HardeningPolicy p = NoProfile();
  p.force_uid = 1000;
  p.force_gid = 1000;
  const std::pair<json, const char*> cases[] = {
      {{{"args", {"sh"}}, {"user", json::array()}}, "process.user: must be object, not array"},
      {{{"args", {"sh"}}, {"user", "root"}}, "process.user: must be object, not string"},
      {{{"args", {"sh"}}, {"user", {{"uid", -1}}}}, "process.user.uid: must be a non-negative integer"},
      {{{"args", {"sh"}}, {"user", {{"uid", 0}, {"additionalGids", 0}}}},
       "process.user.additionalGids: must be array, not number"},
      {{{"args", {"sh"}}, {"capabilities", json::array()}},
       "process.capabilities: must be object, not array"},
      {{{"args", {"sh"}}, {"capabilities", {{"bounding", "CAP_CHOWN"}}}},
       "process.capabilities.bounding: must be array, not string"},
      {{{"args", {"sh"}}, {"noNewPrivileges", "yes"}},
       "process.noNewPrivileges: must be boolean, not string"},
  };
  for (const auto& [process, message] : cases) {
    absl::StatusOr<json> h;
    EXPECT_NO_THROW(h = HardenProcess(process, p)) << process.dump();
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument) << process.dump();
    EXPECT_THAT(Msg(h.status()), HasSubstr(message)) << process.dump();
  }
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
