#include "shim/node/kube.h"

#include <gtest/gtest.h>

namespace gvshim::node {
namespace {

using json = nlohmann::json;

json Node(json labels) { return {{"metadata", {{"name", "n1"}, {"labels", labels}}}}; }
json Ds(json template_spec) {
  return {{"metadata", {{"name", "ds"}}}, {"spec", {{"template", {{"spec", template_spec}}}}}};
}

TEST(Kube, NodeSelector) {
  json ds = Ds({{"nodeSelector", {{"kubernetes.io/os", "linux"}, {"pool", "sandbox"}}}});
  EXPECT_TRUE(
      DaemonSetSelectsNode(ds, Node({{"kubernetes.io/os", "linux"}, {"pool", "sandbox"}, {"x", "y"}})));
  EXPECT_FALSE(DaemonSetSelectsNode(ds, Node({{"kubernetes.io/os", "linux"}})));
  EXPECT_FALSE(DaemonSetSelectsNode(ds, Node({{"kubernetes.io/os", "linux"}, {"pool", "general"}})));
  // The retire hook adds a label no node has: nothing is selected any more.
  ds["spec"]["template"]["spec"]["nodeSelector"]["gvshim.dev/retired"] = "true";
  EXPECT_FALSE(DaemonSetSelectsNode(ds, Node({{"kubernetes.io/os", "linux"}, {"pool", "sandbox"}})));
}

TEST(Kube, DeletedDaemonSetSelectsNothing) {
  json ds = Ds(json::object());
  EXPECT_TRUE(DaemonSetSelectsNode(ds, Node(json::object())));
  ds["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z";
  EXPECT_FALSE(DaemonSetSelectsNode(ds, Node(json::object())));
}

TEST(Kube, RequiredNodeAffinity) {
  json terms = json::array({
      {{"matchExpressions", json::array({{{"key", "pool"}, {"operator", "In"}, {"values", {"a", "b"}}},
                                         {{"key", "broken"}, {"operator", "DoesNotExist"}}})}},
      {{"matchFields",
        json::array({{{"key", "metadata.name"}, {"operator", "In"}, {"values", {"special"}}}})}},
  });
  json ds = Ds({{"affinity",
                 {{"nodeAffinity",
                   {{"requiredDuringSchedulingIgnoredDuringExecution", {{"nodeSelectorTerms", terms}}}}}}}});
  EXPECT_TRUE(DaemonSetSelectsNode(ds, Node({{"pool", "b"}})));
  EXPECT_FALSE(DaemonSetSelectsNode(ds, Node({{"pool", "b"}, {"broken", "1"}})));
  EXPECT_FALSE(DaemonSetSelectsNode(ds, Node({{"pool", "c"}})));
  json special = Node(json::object());
  special["metadata"]["name"] = "special";
  EXPECT_TRUE(DaemonSetSelectsNode(ds, special));
  // Gt/Lt compare integers; anything else (or an unknown operator) does not match.
  json gt =
      Ds({{"affinity",
           {{"nodeAffinity",
             {{"requiredDuringSchedulingIgnoredDuringExecution",
               {{"nodeSelectorTerms",
                 json::array(
                     {{{"matchExpressions",
                        json::array({{{"key", "cores"}, {"operator", "Gt"}, {"values", {"4"}}}})}}})}}}}}}}});
  EXPECT_TRUE(DaemonSetSelectsNode(gt, Node({{"cores", "8"}})));
  EXPECT_FALSE(DaemonSetSelectsNode(gt, Node({{"cores", "2"}})));
  EXPECT_FALSE(DaemonSetSelectsNode(gt, Node({{"cores", "many"}})));
}

}  // namespace
}  // namespace gvshim::node
