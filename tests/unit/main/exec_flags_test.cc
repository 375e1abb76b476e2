// `gvshim exec`'s command line (CLI11, shim/cli): every flag in both forms, repeatable flags, the errors that
// name the bad flag, and the forms that tests/e2e/execute_cases.sh, tests/cri and scripts/quickstart.sh use.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <sstream>

#include "shim/cli/cli.h"
#include "shim/main/exec_client.h"

namespace gvshim::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

struct Result {
  std::optional<int> rc;  // nullopt: parsed, the command would run
  std::string out, err;
};

Result ParseExec(std::vector<std::string> args, ExecOptions& o) {
  CLI::App app("test", "gvshim");
  UseCommonSettings(app);
  AddExecCommand(app, o);
  args.insert(args.begin(), "exec");
  std::ostringstream out, err;
  std::optional<int> rc = Parse(app, args, out, err);
  return {rc, out.str(), err.str()};
}

TEST(ExecFlagsTest, EveryFlagInBothForms) {
  ExecOptions o;
  Result r = ParseExec({"--pod",
                        "tools/agent",
                        "-n",
                        "k8s.io",
                        "--dir=/d",
                        "--lang",
                        "js",
                        "-c",
                        "main()",
                        "--arg",
                        "a=1",
                        "--arg=b=[2]",
                        "--args-json",
                        "{}",
                        "--stdin=in",
                        "--timeout",
                        "1500",
                        "--memory=1024",
                        "--output-bytes",
                        "10",
                        "--allow-network",
                        "--env",
                        "A=1",
                        "--env=B=x=y",
                        "--container",
                        "c1",
                        "--json",
                        "--stream"},
                       o);
  ASSERT_EQ(r.rc, std::nullopt) << r.err;
  EXPECT_EQ(o.pod, "tools/agent");
  EXPECT_EQ(o.id, "");
  EXPECT_EQ(o.ns, "k8s.io");
  EXPECT_EQ(o.dir, "/d");
  EXPECT_EQ(o.lang, "js");
  EXPECT_EQ(o.code, "main()");
  EXPECT_THAT(o.arg_pairs, ElementsAre("a=1", "b=[2]"));
  EXPECT_EQ(o.args_json, "{}");
  EXPECT_EQ(o.stdin_text, "in");
  EXPECT_EQ(o.timeout_ms, 1500u);
  EXPECT_EQ(o.memory, 1024u);
  EXPECT_EQ(o.output_bytes, 10u);
  EXPECT_TRUE(o.allow_network);
  EXPECT_THAT(o.envs, ElementsAre("A=1", "B=x=y"));
  EXPECT_EQ(o.container, "c1");
  EXPECT_TRUE(o.json_out);
  EXPECT_TRUE(o.stream);
  EXPECT_FALSE(o.runtimes);
  EXPECT_FALSE(o.health);
  EXPECT_EQ(o.file, "");
}

// tests/e2e/execute_cases.sh's gx helper and its callers.
TEST(ExecFlagsTest, TheE2eForms) {
  ExecOptions o;
  Result r = ParseExec({"--dir", "/run/x", "--namespace", "e2e", "--id", "pod1", "--timeout", "60000",
                        "--env", "GVX_HELD=m1", "-c", "import os"},
                       o);
  ASSERT_EQ(r.rc, std::nullopt) << r.err;
  EXPECT_EQ(o.id, "pod1");
  EXPECT_EQ(o.ns, "e2e");
  EXPECT_THAT(o.envs, ElementsAre("GVX_HELD=m1"));
  EXPECT_EQ(o.code, "import os");

  ExecOptions info;
  r = ParseExec({"--dir", "/run/x", "--namespace", "e2e", "--id", "eager1", "--health"}, info);
  ASSERT_EQ(r.rc, std::nullopt) << r.err;
  EXPECT_TRUE(info.health);
  EXPECT_FALSE(info.code.has_value());
}

TEST(ExecFlagsTest, RepeatedEnvKeepsEveryValueAndNeverTakesTheFile) {
  ExecOptions o;
  Result r = ParseExec({"--id", "x", "--env", "A=1", "--env", "B=2", "--env", "A=3", "snippet.py"}, o);
  ASSERT_EQ(r.rc, std::nullopt) << r.err;
  EXPECT_THAT(o.envs, ElementsAre("A=1", "B=2", "A=3"));
  EXPECT_EQ(o.file, "snippet.py");
  EXPECT_FALSE(o.code.has_value());
}

TEST(ExecFlagsTest, AnOptionGivenTwiceKeepsTheLastValue) {
  ExecOptions o;
  Result r = ParseExec({"--id", "a", "--id", "b", "--timeout", "5", "--timeout=7", "-c", "x"}, o);
  ASSERT_EQ(r.rc, std::nullopt) << r.err;
  EXPECT_EQ(o.id, "b");
  EXPECT_EQ(o.timeout_ms, 7u);
}

TEST(ExecFlagsTest, ValuesAreTakenVerbatim) {
  ExecOptions o;
  // A value that looks like a flag is still the value (as before CLI11); an empty -c is code.
  Result r = ParseExec({"--id", "x", "-c", "--json", "--stdin", "-1"}, o);
  ASSERT_EQ(r.rc, std::nullopt) << r.err;
  EXPECT_EQ(o.code, "--json");
  EXPECT_EQ(o.stdin_text, "-1");
  EXPECT_FALSE(o.json_out);
  ExecOptions empty;
  r = ParseExec({"--id", "x", "-c", ""}, empty);
  ASSERT_EQ(r.rc, std::nullopt) << r.err;
  EXPECT_EQ(empty.code, "");
}

TEST(ExecFlagsTest, AnEmptyValueAfterTheEqualsSign) {
  ExecOptions o;
  Result r = ParseExec({"--id", "x", "--stdin=", "--json", "-c", "1"}, o);
  ASSERT_EQ(r.rc, std::nullopt) << r.err;
  EXPECT_EQ(o.stdin_text, "");
  EXPECT_TRUE(o.json_out);
  ExecOptions t;
  r = ParseExec({"--id", "x", "--timeout=", "-c", "1"}, t);
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, HasSubstr("--timeout"));
}

TEST(ExecFlagsTest, DashIsTheStdinFile) {
  ExecOptions o;
  Result r = ParseExec({"--id", "x", "-"}, o);
  ASSERT_EQ(r.rc, std::nullopt) << r.err;
  EXPECT_EQ(o.file, "-");
}

TEST(ExecFlagsTest, UnknownFlagIsNamed) {
  ExecOptions o;
  Result r = ParseExec({"--id", "x", "-c", "1", "--bogus"}, o);
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, HasSubstr("gvshim exec: "));
  EXPECT_THAT(r.err, HasSubstr("--bogus"));
  EXPECT_THAT(r.out, IsEmpty());
}

TEST(ExecFlagsTest, MissingValueIsNamed) {
  for (const char* flag : {"--timeout", "--id", "--env", "--dir", "--arg"}) {
    ExecOptions o;
    Result r = ParseExec({"-c", "1", "--id", "x", flag}, o);
    EXPECT_EQ(r.rc, 2) << flag;
    EXPECT_THAT(r.err, HasSubstr(flag));
  }
}

TEST(ExecFlagsTest, BadValuesAreNamed) {
  struct Case {
    std::vector<std::string> args;
    std::string names;
  };
  for (const Case& c : std::vector<Case>{{{"--timeout", "-1"}, "--timeout"},
                                         {{"--memory", "lots"}, "--memory"},
                                         {{"--env", "NOEQUALS"}, "--env"},
                                         {{"--env", "=v"}, "--env"}}) {
    ExecOptions o;
    std::vector<std::string> args = {"--id", "x", "-c", "1"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    Result r = ParseExec(args, o);
    EXPECT_EQ(r.rc, 2) << c.names;
    EXPECT_THAT(r.err, HasSubstr(c.names));
  }
}

TEST(ExecFlagsTest, OnePodAndOneSnippetSource) {
  ExecOptions a, b, c, d, e;
  Result r = ParseExec({"-c", "1"}, a);
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, HasSubstr("--pod NAMESPACE/NAME or --id ID is required"));
  r = ParseExec({"--id", "x", "--pod", "a/b", "-c", "1"}, b);
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, HasSubstr("excludes"));
  r = ParseExec({"--id", "x"}, c);
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, HasSubstr("-c CODE or a FILE"));
  r = ParseExec({"--id", "x", "-c", "1", "file.py"}, d);
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, HasSubstr("excludes"));
  r = ParseExec({"--id", "x", "a.py", "b.py"}, e);
  EXPECT_EQ(r.rc, 2);
  EXPECT_THAT(r.err, HasSubstr("b.py"));
}

TEST(ExecFlagsTest, RuntimesAndHealthNeedNoSnippet) {
  ExecOptions o;
  Result r = ParseExec({"--pod", "a/b", "--runtimes"}, o);
  ASSERT_EQ(r.rc, std::nullopt) << r.err;
  EXPECT_TRUE(o.runtimes);
}

TEST(ExecFlagsTest, HelpListsTheFlagsOnStdout) {
  ExecOptions o;
  Result r = ParseExec({"--help"}, o);
  EXPECT_EQ(r.rc, 0);
  EXPECT_THAT(r.out, HasSubstr("--env KEY=VALUE"));
  EXPECT_THAT(r.out, HasSubstr("--runtimes"));
  EXPECT_THAT(r.out, HasSubstr("124 on timeout"));
  EXPECT_THAT(r.err, IsEmpty());
}

}  // namespace
}  // namespace gvshim::cli
