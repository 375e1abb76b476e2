#include "shim/gateway/metrics.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"

namespace gvshim::gateway {
namespace {

TEST(Metrics, RendersCountersHistogramAndGauges) {
  Metrics m;
  m.RecordExecution("python", "success", absl::Milliseconds(30));
  m.RecordExecution("python", "success", absl::Seconds(3));
  m.RecordExecution("nodejs", "program_error", absl::Milliseconds(4));
  m.RecordRequest("/run", 200);
  m.RecordRequest("/run", 200);
  m.RecordRequest("/healthz", 200);
  m.RecordRejection("auth");
  m.SetQueueDepth(2);
  m.SetInflight(3);
  m.SetPods(1, 2);
  m.SetPodInflight({{"ns/a\"b", 3}});
  std::string t = m.Render();
  for (const char* want : {
           "# TYPE gvshim_gateway_executions_total counter\n",
           "gvshim_gateway_executions_total{language=\"python\",status=\"success\"} 2\n",
           "gvshim_gateway_executions_total{language=\"nodejs\",status=\"program_error\"} 1\n",
           "# TYPE gvshim_gateway_execution_seconds histogram\n",
           "gvshim_gateway_execution_seconds_bucket{language=\"python\",le=\"0.025\"} 0\n",
           "gvshim_gateway_execution_seconds_bucket{language=\"python\",le=\"0.05\"} 1\n",
           "gvshim_gateway_execution_seconds_bucket{language=\"python\",le=\"5\"} 2\n",
           "gvshim_gateway_execution_seconds_bucket{language=\"python\",le=\"+Inf\"} 2\n",
           "gvshim_gateway_execution_seconds_count{language=\"python\"} 2\n",
           "gvshim_gateway_execution_seconds_sum{language=\"python\"} 3.0",
           "gvshim_gateway_execution_seconds_bucket{language=\"nodejs\",le=\"0.005\"} 1\n",
           "gvshim_gateway_requests_total{route=\"/run\",code=\"200\"} 2\n",
           "gvshim_gateway_rejections_total{reason=\"auth\"} 1\n",
           "gvshim_gateway_queue_depth 2\n",
           "gvshim_gateway_inflight 3\n",
           "gvshim_gateway_pods{state=\"ready\"} 1\n",
           "gvshim_gateway_pods{state=\"known\"} 2\n",
           "gvshim_gateway_pod_inflight{pod=\"ns/a\\\"b\"} 3\n",
       }) {
    EXPECT_TRUE(absl::StrContains(t, want)) << "missing: " << want << "\nin:\n" << t;
  }
}

TEST(Metrics, Escaping) { EXPECT_EQ(EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd"); }

}  // namespace
}  // namespace gvshim::gateway
