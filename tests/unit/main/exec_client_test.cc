#include "shim/main/exec_client.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

namespace gvshim::cli {
namespace {

std::vector<SandboxRecord> Sample() {
  SandboxRecord a;
  a.ns = "k8s.io";
  a.sandbox_id = "sb1";
  a.containers = {"sb1", "app1"};
  a.pod_namespace = "default";
  a.pod_name = "agent-0";
  a.socket = "/run/gvshim/execute/a.sock";
  SandboxRecord b = a;
  b.ns = "other";
  b.socket = "/run/gvshim/execute/b.sock";
  SandboxRecord c;
  c.ns = "default";
  c.sandbox_id = "solo";
  c.containers = {"solo"};
  c.socket = "/run/gvshim/execute/c.sock";
  return {a, b, c};
}

TEST(FindRecordTest, ByContainerOrSandboxIdAndNamespace) {
  auto recs = Sample();
  auto r = FindRecord(recs, "solo", "", "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->socket, "/run/gvshim/execute/c.sock");
  // app1 exists in two containerd namespaces: ambiguous unless narrowed.
  auto amb = FindRecord(recs, "app1", "", "");
  EXPECT_EQ(amb.status().code(), absl::StatusCode::kFailedPrecondition);
  auto narrowed = FindRecord(recs, "app1", "", "other");
  ASSERT_TRUE(narrowed.ok());
  EXPECT_EQ(narrowed->socket, "/run/gvshim/execute/b.sock");
  EXPECT_EQ(FindRecord(recs, "nope", "", "").status().code(), absl::StatusCode::kNotFound);
}

TEST(FindRecordTest, ByPod) {
  auto recs = Sample();
  auto r = FindRecord(recs, "", "default/agent-0", "k8s.io");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->sandbox_id, "sb1");
  EXPECT_EQ(FindRecord(recs, "", "agent-0", "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FindRecord(recs, "", "default/missing", "").status().code(), absl::StatusCode::kNotFound);
}

TEST(ArgsJsonTest, TypedValuesAndBase) {
  auto j = ArgsJson({"a=1", "b=hello", "c=[1,2]", "d={\"x\":true}", "e="}, "");
  ASSERT_TRUE(j.ok()) << j.status();
  auto parsed = nlohmann::json::parse(*j);
  EXPECT_EQ(parsed["a"], 1);
  EXPECT_EQ(parsed["b"], "hello");
  EXPECT_EQ(parsed["c"], nlohmann::json::array({1, 2}));
  EXPECT_EQ(parsed["d"]["x"], true);
  EXPECT_EQ(parsed["e"], "");
  auto merged = ArgsJson({"b=2"}, R"({"a": 1})");
  ASSERT_TRUE(merged.ok());
  EXPECT_EQ(nlohmann::json::parse(*merged), nlohmann::json::parse(R"({"a":1,"b":2})"));
  EXPECT_FALSE(ArgsJson({"novalue"}, "").ok());
  EXPECT_FALSE(ArgsJson({}, "{not json").ok());
  EXPECT_FALSE(ArgsJson({"a=1"}, "[1]").ok());
  EXPECT_EQ(*ArgsJson({}, "[1,2]"), "[1,2]");
}

TEST(ReadRecordsTest, ReadsShimRecordsAndSkipsJunk) {
  char tmpl[] = "/tmp/gvexecXXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::ofstream(dir + "/k1.json")
      << R"({"namespace":"default","sandbox_id":"s","containers":[{"id":"s","python":true}],
    "socket":"/x.sock","pod_namespace":"ns","pod_name":"p"})";
  std::ofstream(dir + "/k2.json") << "{half";
  std::ofstream(dir + "/k3.sock") << "";
  auto recs = ReadRecords(dir);
  ASSERT_TRUE(recs.ok()) << recs.status();
  ASSERT_EQ(recs->size(), 1u);
  EXPECT_EQ((*recs)[0].containers, std::vector<std::string>{"s"});
  EXPECT_EQ((*recs)[0].pod_name, "p");
  EXPECT_EQ(ReadRecords(dir + "/missing").status().code(), absl::StatusCode::kNotFound);
  for (const char* f : {"/k1.json", "/k2.json", "/k3.sock"}) ::unlink((dir + f).c_str());
  ::rmdir(dir.c_str());
}

}  // namespace
}  // namespace gvshim::cli
