#include <cstdlib>
#include <map>
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "shim/seccomp/profile.h"

namespace gvshim::seccomp {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

std::string SourceDir() {
  const char* dir = std::getenv("GVSHIM_SOURCE_DIR");
  return dir != nullptr ? dir : ".";
}
std::string ProfilePath(const std::string& name) { return SourceDir() + "/seccomp-profiles/" + name; }
std::string TestData(const std::string& name) { return SourceDir() + "/tests/testdata/seccomp/" + name; }

// name -> action (and errnoRet) over the unconditional rules of a profile.
struct Decision {
  std::string action;
  int errno_ret = -1;
  bool conditional = false;
};
std::map<std::string, Decision> Decisions(const json& profile) {
  std::map<std::string, Decision> out;
  for (const json& rule : profile["syscalls"]) {
    for (const json& name : rule["names"]) {
      Decision d{rule["action"].get<std::string>(), rule.value("errnoRet", -1), rule.contains("args")};
      out[name.get<std::string>()] = d;
    }
  }
  return out;
}

TEST(ShippedProfiles, BothValidate) {
  for (const char* name : {"default.json", "strict.json"}) {
    SCOPED_TRACE(name);
    auto profile = LoadProfileFile(ProfilePath(name));
    ASSERT_TRUE(profile.ok()) << profile.status();
    EXPECT_EQ(profile->source_name, name);
    EXPECT_EQ(profile->summary.default_action, "SCMP_ACT_ERRNO");
    EXPECT_EQ(profile->summary.default_errno, 1u);
    EXPECT_GT(profile->summary.allowed_syscalls, 150);
    EXPECT_GT(profile->summary.bpf_instructions, 0);
    EXPECT_LE(profile->summary.bpf_instructions, 4096);
#if defined(__x86_64__)
    EXPECT_THAT(profile->summary.architectures,
                ::testing::ElementsAre("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"));
#endif
  }
}

TEST(ShippedProfiles, StrictRefusesDangerousSyscallsWithEperm) {
  auto profile = LoadProfileFile(ProfilePath("strict.json"));
  ASSERT_TRUE(profile.ok()) << profile.status();
  auto decisions = Decisions(profile->profile);
  for (const char* name : {"mount",
                           "umount2",
                           "ptrace",
                           "unshare",
                           "setns",
                           "keyctl",
                           "add_key",
                           "request_key",
                           "bpf",
                           "perf_event_open",
                           "kexec_load",
                           "kexec_file_load",
                           "init_module",
                           "finit_module",
                           "delete_module",
                           "reboot",
                           "swapon",
                           "swapoff",
                           "pivot_root",
                           "chroot",
                           "userfaultfd",
                           "process_vm_readv",
                           "process_vm_writev",
                           "open_by_handle_at",
                           "fsopen",
                           "move_mount",
                           "open_tree"}) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(decisions.contains(name));
    EXPECT_EQ(decisions[name].action, "SCMP_ACT_ERRNO");
    EXPECT_EQ(decisions[name].errno_ret, 1);
  }
  // clone3 is left to gVisor, which answers ENOSYS itself (runsc 20221219 ignores errnoRet, so an
  // ERRNO(ENOSYS) rule would answer EPERM and glibc would not fall back to clone).
  EXPECT_EQ(decisions["clone3"].action, "SCMP_ACT_ALLOW");
  EXPECT_EQ(decisions["io_uring_setup"].errno_ret, 38);
  EXPECT_EQ(decisions["clone"].action, "SCMP_ACT_ALLOW");
  EXPECT_TRUE(decisions["clone"].conditional);
  EXPECT_TRUE(decisions["personality"].conditional);
}

TEST(ShippedProfiles, InterpretersHaveWhatTheyNeed) {
  // What Python 3.11, Node 20 (libuv, V8) and busybox sh call on start-up and in ordinary work.
  const char* needed[] = {"read",
                          "write",
                          "openat",
                          "close",
                          "mmap",
                          "mprotect",
                          "munmap",
                          "brk",
                          "futex",
                          "rseq",
                          "getrandom",
                          "statx",
                          "newfstatat",
                          "epoll_create1",
                          "epoll_ctl",
                          "epoll_pwait",
                          "eventfd2",
                          "pipe2",
                          "execve",
                          "wait4",
                          "vfork",
                          "rt_sigaction",
                          "rt_sigprocmask",
                          "prlimit64",
                          "sched_getaffinity",
                          "madvise",
                          "getdents64",
                          "ioctl",
                          "set_robust_list",
                          "clock_gettime",
                          "socket",
                          "connect",
                          "getcwd",
                          "readlink",
                          "sysinfo",
                          "capget",
                          "uname",
                          "fcntl",
                          "lseek",
                          "dup3"};
  for (const char* file : {"default.json", "strict.json"}) {
    auto profile = LoadProfileFile(ProfilePath(file));
    ASSERT_TRUE(profile.ok()) << profile.status();
    auto decisions = Decisions(profile->profile);
    for (const char* name : needed) {
      EXPECT_EQ(decisions[name].action, "SCMP_ACT_ALLOW") << file << ": " << name;
    }
  }
}

TEST(ShippedProfiles, ConvertToOciForm) {
  auto profile = LoadProfileFile(ProfilePath("strict.json"));
  ASSERT_TRUE(profile.ok()) << profile.status();
  auto oci = ToOciSeccomp(profile->profile, "strict.json");
  ASSERT_TRUE(oci.ok()) << oci.status();
  EXPECT_FALSE(oci->contains("archMap"));
  EXPECT_FALSE(oci->contains("comment"));
  EXPECT_EQ((*oci)["defaultAction"], "SCMP_ACT_ERRNO");
  EXPECT_EQ((*oci)["defaultErrnoRet"], 1);
  EXPECT_EQ((*oci)["syscalls"].size(), profile->profile["syscalls"].size());
  for (const json& rule : (*oci)["syscalls"]) EXPECT_FALSE(rule.contains("comment"));
  // The OCI form is itself a valid profile.
  EXPECT_TRUE(ValidateProfile(*oci, "oci").ok());
}

TEST(DockerStyle, NameArchMapAndEmptyConditionsAreAccepted) {
  auto profile = LoadProfileFile(TestData("docker-style.json"));
  ASSERT_TRUE(profile.ok()) << profile.status();
  EXPECT_EQ(profile->summary.rule_count, 6);
  EXPECT_EQ(profile->summary.allowed_syscalls, 5);
  EXPECT_EQ(profile->summary.denied_syscalls, 2);
  EXPECT_EQ(profile->summary.other_syscalls, 1);
  auto oci = ToOciSeccomp(profile->profile, "docker-style.json");
  ASSERT_TRUE(oci.ok()) << oci.status();
  EXPECT_EQ((*oci)["syscalls"][0]["names"], json::array({"read"}));
  EXPECT_FALSE((*oci)["syscalls"][0].contains("args"));
  EXPECT_EQ((*oci)["syscalls"][2]["args"][0],
            json({{"index", 0}, {"value", 0}, {"valueTwo", 0}, {"op", "SCMP_CMP_EQ"}}));
#if defined(__x86_64__)
  EXPECT_EQ((*oci)["architectures"], json::array({"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}));
#endif
}

TEST(Files, MalformedJsonNamesLineAndColumn) {
  auto profile = LoadProfileFile(TestData("malformed.json"));
  ASSERT_FALSE(profile.ok());
  EXPECT_EQ(profile.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(profile.status().message()),
              HasSubstr("malformed.json:4:53: malformed JSON: syntax error"));
}

TEST(Files, UnknownSyscallNamesFileAndPath) {
  auto profile = LoadProfileFile(TestData("unknown-syscall.json"));
  ASSERT_FALSE(profile.ok());
  EXPECT_EQ(profile.status().message(),
            "unknown-syscall.json: syscalls[1].names[1]: unknown syscall \"frobnicate\" on all architectures "
            "[SCMP_ARCH_X86_64]");
}

TEST(Files, MissingFileNamesThePath) {
  auto profile = LoadProfileFile("/nonexistent/gvshim/none.json");
  ASSERT_FALSE(profile.ok());
  EXPECT_EQ(profile.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(profile.status().message()), HasSubstr("/nonexistent/gvshim/none.json"));
}

struct ErrorCase {
  const char* name;
  const char* profile;
  const char* message;  // exact, after "t.json: "
};

class ProfileErrors : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ProfileErrors, AreRejectedWithPathAndReason) {
  const ErrorCase& c = GetParam();
  auto summary = ValidateProfile(json::parse(c.profile), "t.json");
  ASSERT_FALSE(summary.ok());
  EXPECT_EQ(summary.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(summary.status().message()),
              ::testing::StartsWith(std::string("t.json: ") + c.message));
}

INSTANTIATE_TEST_SUITE_P(
    Table, ProfileErrors,
    ::testing::Values(
        ErrorCase{"NotAnObject", R"([1])", "(document): a seccomp profile must be a JSON object, not array"},
        ErrorCase{"MissingDefault", R"({"syscalls": []})", "defaultAction: missing"},
        ErrorCase{"UnknownTopField", R"({"defaultAction": "SCMP_ACT_ALLOW", "defaultActon": 1})",
                  "defaultActon: unknown field"},
        ErrorCase{"BadDefaultAction", R"({"defaultAction": "SCMP_ACT_MAYBE"})",
                  "defaultAction: unknown action \"SCMP_ACT_MAYBE\""},
        ErrorCase{"BadAction",
                  R"({"defaultAction": "SCMP_ACT_ERRNO",
                      "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                                   {"names": ["write"], "action": "ALLOW"}]})",
                  "syscalls[1].action: unknown action \"ALLOW\""},
        ErrorCase{"NotifyUnsupported",
                  R"({"defaultAction": "SCMP_ACT_ALLOW",
                      "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]})",
                  "syscalls[0].action: SCMP_ACT_NOTIFY needs a seccomp agent"},
        ErrorCase{"ErrnoOnAllow",
                  R"({"defaultAction": "SCMP_ACT_ERRNO",
                      "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]})",
                  "syscalls[0].errnoRet: only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take an errno"},
        ErrorCase{"ErrnoTooLarge", R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5000})",
                  "defaultErrnoRet: value 5000 is larger than 4095"},
        ErrorCase{
            "BadArch",
            R"({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]})",
            "architectures[1]: unknown architecture \"SCMP_ARCH_Z80\""},
        ErrorCase{"BadArchMap",
                  R"({"defaultAction": "SCMP_ACT_ALLOW",
                      "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["x86"]}]})",
                  "archMap[0].subArchitectures[0]: unknown architecture \"x86\""},
        ErrorCase{
            "UnknownSyscall",
            R"({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                      "syscalls": [{"names": ["read", "frobnicate"], "action": "SCMP_ACT_ALLOW"}]})",
            "syscalls[0].names[1]: unknown syscall \"frobnicate\" on all architectures [SCMP_ARCH_X86_64]"},
        ErrorCase{"KnownOnlyOnUnlistedArch",
                  R"({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                      "syscalls": [{"name": "mmap2", "action": "SCMP_ACT_ALLOW"}]})",
                  "syscalls[0].name: unknown syscall \"mmap2\" on all architectures [SCMP_ARCH_X86_64]"},
        ErrorCase{
            "NamesNotArray",
            R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": "read", "action": "SCMP_ACT_ALLOW"}]})",
            "syscalls[0].names: must be an array, not string"},
        ErrorCase{"NoNames",
                  R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]})",
                  "syscalls[0]: missing field \"names\""},
        ErrorCase{"BadOp",
                  R"({"defaultAction": "SCMP_ACT_ERRNO",
                      "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                                    "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_ALMOST"}]}]})",
                  "syscalls[0].args[0].op: unknown operator \"SCMP_CMP_ALMOST\""},
        ErrorCase{
            "ArgIndex7",
            R"({"defaultAction": "SCMP_ACT_ERRNO",
                      "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                                    "args": [{"index": 7, "value": 0, "op": "SCMP_CMP_EQ"}]}]})",
            "syscalls[0].args[0].index: argument index 7 is out of range (a syscall has arguments 0..5)"},
        ErrorCase{"NegativeValue",
                  R"({"defaultAction": "SCMP_ACT_ERRNO",
                      "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                                    "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]})",
                  "syscalls[0].args[0].value: must be a non-negative integer, not -1"},
        ErrorCase{"ArgMissingOp",
                  R"({"defaultAction": "SCMP_ACT_ERRNO",
                      "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                                    "args": [{"index": 0, "value": 1}]}]})",
                  "syscalls[0].args[0]: missing field \"op\""},
        ErrorCase{"ConditionalInclude",
                  R"({"defaultAction": "SCMP_ACT_ERRNO",
                      "syscalls": [{"names": ["reboot"], "action": "SCMP_ACT_ALLOW",
                                    "includes": {"caps": ["CAP_SYS_BOOT"]}}]})",
                  "syscalls[0].includes: conditional rules (Docker's includes/excludes) are not supported"},
        ErrorCase{
            "ConflictingActions",
            R"({"defaultAction": "SCMP_ACT_ERRNO",
                      "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                                   {"names": ["write"], "action": "SCMP_ACT_KILL"}]})",
            "syscalls[1].names[0]: syscall \"write\" already has a different action at syscalls[0].names[1]"},
        ErrorCase{"BadFlag", R"({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_YOLO"]})",
                  "flags[0]: unknown flag \"SECCOMP_FILTER_FLAG_YOLO\""}),
    [](const ::testing::TestParamInfo<ErrorCase>& info) { return std::string(info.param.name); });

struct OkCase {
  const char* name;
  const char* profile;
};

class ProfileAccepted : public ::testing::TestWithParam<OkCase> {};

TEST_P(ProfileAccepted, Validates) {
  auto summary = ValidateProfile(json::parse(GetParam().profile), "ok.json");
  EXPECT_TRUE(summary.ok()) << summary.status();
}

INSTANTIATE_TEST_SUITE_P(
    Table, ProfileAccepted,
    ::testing::Values(
        OkCase{"Minimal", R"({"defaultAction": "SCMP_ACT_ALLOW"})"},
        OkCase{"NullOptionalFields",
               R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": null, "architectures": null})"},
        // Known on one listed architecture is enough, as Docker does it.
        OkCase{"UnknownOnSomeArches",
               R"({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                   "syscalls": [{"names": ["mmap2", "arch_prctl", "socketcall"], "action": "SCMP_ACT_ALLOW"}]})"},
        OkCase{
            "RuleWithDefaultActionIsHarmless",
            R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO"}]})"},
        OkCase{"SeveralConditionsOnOneArgument",
               R"({"defaultAction": "SCMP_ACT_ERRNO",
                   "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                                          {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]})"},
        OkCase{"EveryActionAndOperator",
               R"({"defaultAction": "SCMP_ACT_KILL_PROCESS", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                   "syscalls": [
                     {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                     {"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                     {"names": ["open"], "action": "SCMP_ACT_KILL"},
                     {"names": ["close"], "action": "SCMP_ACT_KILL_THREAD"},
                     {"names": ["stat"], "action": "SCMP_ACT_TRAP"},
                     {"names": ["fstat"], "action": "SCMP_ACT_TRACE", "errnoRet": 1},
                     {"names": ["lstat"], "action": "SCMP_ACT_LOG"},
                     {"names": ["mmap"], "action": "SCMP_ACT_ALLOW", "args": [
                       {"index": 0, "value": 1, "op": "SCMP_CMP_NE"}, {"index": 1, "value": 2, "op": "SCMP_CMP_LT"},
                       {"index": 2, "value": 3, "op": "SCMP_CMP_LE"}, {"index": 3, "value": 4, "op": "SCMP_CMP_GE"},
                       {"index": 4, "value": 5, "op": "SCMP_CMP_GT"},
                       {"index": 5, "value": 240, "valueTwo": 16, "op": "SCMP_CMP_MASKED_EQ"}]}]})"}),
    [](const ::testing::TestParamInfo<OkCase>& info) { return std::string(info.param.name); });

TEST(ParseProfile, MalformedTextGivesLineColumn) {
  auto p = ParseProfile("{\n  \"defaultAction\": SCMP\n}", "x.json");
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("x.json:2:20: malformed JSON: "));
  auto empty = ParseProfile("", "e.json");
  ASSERT_FALSE(empty.ok());
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("e.json:1:1: malformed JSON"));
}

TEST(OffsetToLineColumn, Table) {
  struct Case {
    const char* text;
    size_t byte;
    int line, column;
  } cases[] = {{"abc", 1, 1, 1},   {"abc", 3, 1, 3}, {"a\nbc", 3, 2, 1}, {"a\nbc", 4, 2, 2},
               {"a\n\n", 4, 3, 1}, {"", 0, 1, 1},    {"ab", 99, 1, 3}};
  for (const Case& c : cases) {
    int line = 0, column = 0;
    OffsetToLineColumn(c.text, c.byte, &line, &column);
    EXPECT_EQ(line, c.line) << c.text << " @" << c.byte;
    EXPECT_EQ(column, c.column) << c.text << " @" << c.byte;
  }
}

}  // namespace
}  // namespace gvshim::seccomp
