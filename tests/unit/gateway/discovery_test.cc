#include "shim/gateway/discovery.h"

#include <gtest/gtest.h>

#include <fstream>

#include "fake_pods.h"

namespace gvshim::gateway {
namespace {

// The record as shim/execute/manager.cc writes it today.
constexpr char kRecord[] = R"({
  "containers": [{"id": "pause", "node": false, "python": false}, {"id": "app", "node": true, "python": true}],
  "namespace": "k8s.io", "pod_name": "pool-7d9f-abcde", "pod_namespace": "ragflow",
  "sandbox_id": "0123abcd", "server_pid": 4242, "shim_pid": 4200, "socket": "/run/gvshim/execute/00ff.sock"
})";

TEST(Discovery, ParsesTodaysRecord) {
  auto r = ParseRecord(kRecord, "/run/gvshim/execute/00ff.json");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->Name(), "ragflow/pool-7d9f-abcde");
  EXPECT_EQ(r->socket, "/run/gvshim/execute/00ff.sock");
  EXPECT_EQ(r->server_pid, 4242);
  EXPECT_TRUE(r->python);
  EXPECT_TRUE(r->node);
  EXPECT_FALSE(r->annotations.has_value());
}

TEST(Discovery, NamesNonCriPodsBySandbox) {
  auto r = ParseRecord(
      R"({"namespace":"e2e","sandbox_id":"exe1","socket":"/s","containers":[{"id":"exe1","python":true,"node":false}]})",
      "f");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->Name(), "e2e/exe1");
  EXPECT_FALSE(r->node);
  EXPECT_FALSE(ParseRecord("[]", "f").ok());
  EXPECT_FALSE(ParseRecord(R"({"namespace":"x"})", "f").ok());  // no socket
  EXPECT_FALSE(ParseRecord("not json", "f").ok());
}

TEST(Discovery, Selectors) {
  auto r = ParseRecord(kRecord, "f");
  ASSERT_TRUE(r.ok());
  std::string why;
  EXPECT_TRUE(Selector{}.Matches(*r, &why));
  auto s = ParseSelector({}, "ragflow/pool-");
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->Matches(*r, &why));
  s = ParseSelector({}, "ragflow/other-");
  EXPECT_FALSE(s->Matches(*r, &why));
  EXPECT_NE(why.find("does not start with"), std::string::npos);
  s = ParseSelector({}, "default/pool-");
  EXPECT_FALSE(s->Matches(*r, &why));
  // An annotation selector never matches a record without annotations (fail closed)...
  s = ParseSelector({"dev.gvshim.pool=ragflow"}, "");
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(s->Matches(*r, &why));
  EXPECT_NE(why.find("carries no annotations"), std::string::npos);
  // ...and matches one that carries them.
  r->annotations =
      std::map<std::string, std::string>{{"dev.gvshim.pool", "ragflow"}, {"dev.gvshim.execute", "true"}};
  EXPECT_TRUE(s->Matches(*r, &why));
  r->annotations = std::map<std::string, std::string>{{"dev.gvshim.pool", "other"}};
  EXPECT_FALSE(s->Matches(*r, &why));
  EXPECT_FALSE(ParseSelector({"novalue"}, "").ok());
  EXPECT_FALSE(ParseSelector({}, "noslash").ok());
}

TEST(Discovery, ParsesAnnotations) {
  auto r = ParseRecord(R"({"socket":"/s","annotations":{"dev.gvshim.execute":"true","n":5}})", "f");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->annotations.has_value());
  EXPECT_EQ(r->annotations->size(), 1u);
  EXPECT_EQ(r->annotations->at("dev.gvshim.execute"), "true");
}

TEST(Discovery, ScanSkipsWhatIsNotARecord) {
  testing::FakeNode node;
  node.AddPod("a");
  node.AddPod("b");
  std::ofstream(node.dir() + "/broken.json") << "{";
  std::ofstream(node.dir() + "/a.sock") << "";
  auto recs = ScanRecords(node.dir());
  ASSERT_TRUE(recs.ok());
  EXPECT_EQ(recs->size(), 2u);
  EXPECT_FALSE(ScanRecords(node.dir() + "/missing").ok());
}

}  // namespace
}  // namespace gvshim::gateway
