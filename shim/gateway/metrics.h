// The gateway's Prometheus metrics, rendered in the text exposition format (version 0.0.4) for GET /metrics.
// A handful of fixed metric families; thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace gvshim::gateway {

class Metrics {
 public:
  // An execution answered (language: python|nodejs; status: RAGFlow's status name) and its latency from
  // admission (after authentication, rate limits and validation) to the answer.
  void RecordExecution(const std::string& language, const std::string& status, absl::Duration latency);
  // An HTTP answer (route: "/run", "/healthz", ..., "other").
  void RecordRequest(const std::string& route, int code);
  // A request refused before execution: auth, preauth_rate, rate, too_large, validation, no_pod.
  void RecordRejection(const std::string& reason);

  // Gauges, set by whoever owns the number.
  void SetQueueDepth(int64_t n);
  void SetInflight(int64_t n);
  void SetPods(int64_t ready, int64_t known);
  void SetPodInflight(std::map<std::string, int64_t> by_pod);

  std::string Render();

  // Upper bounds of the latency histogram, in seconds.
  static const std::vector<double>& Buckets();

 private:
  struct Histogram {
    std::vector<uint64_t> counts;  // per bucket (not cumulative)
    uint64_t count = 0;
    double sum = 0;
  };
  absl::Mutex mu_;
  std::map<std::pair<std::string, std::string>, uint64_t> executions_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Histogram> latency_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, int>, uint64_t> requests_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> rejections_ ABSL_GUARDED_BY(mu_);
  int64_t queue_depth_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t inflight_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t pods_ready_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t pods_known_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, int64_t> pod_inflight_ ABSL_GUARDED_BY(mu_);
};

// A label value escaped for the exposition format (backslash, double quote, newline).
std::string EscapeLabelValue(const std::string& v);

}  // namespace gvshim::gateway
