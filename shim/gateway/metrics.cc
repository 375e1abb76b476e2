#include "shim/gateway/metrics.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace gvshim::gateway {
namespace {

std::string Number(double v) {
  // Prometheus accepts Go's float syntax; %.17g round-trips and prints integers without a fraction.
  return absl::StrFormat("%.17g", v);
}

void Family(std::string* out, const char* name, const char* type, const char* help) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

}  // namespace

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

const std::vector<double>& Metrics::Buckets() {
  static const std::vector<double> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                               1,     2.5,  5,     10,   30,  60};
  return kBuckets;
}

void Metrics::RecordExecution(const std::string& language, const std::string& status,
                              absl::Duration latency) {
  double s = absl::ToDoubleSeconds(latency);
  absl::MutexLock lock(&mu_);
  ++executions_[{language, status}];
  Histogram& h = latency_[language];
  if (h.counts.empty()) h.counts.assign(Buckets().size(), 0);
  for (size_t i = 0; i < Buckets().size(); ++i) {
    if (s <= Buckets()[i]) {
      ++h.counts[i];
      break;
    }
  }
  ++h.count;
  h.sum += s;
}

void Metrics::RecordRequest(const std::string& route, int code) {
  absl::MutexLock lock(&mu_);
  ++requests_[{route, code}];
}

void Metrics::RecordRejection(const std::string& reason) {
  absl::MutexLock lock(&mu_);
  ++rejections_[reason];
}

void Metrics::SetQueueDepth(int64_t n) {
  absl::MutexLock lock(&mu_);
  queue_depth_ = n;
}

void Metrics::SetInflight(int64_t n) {
  absl::MutexLock lock(&mu_);
  inflight_ = n;
}

void Metrics::SetPods(int64_t ready, int64_t known) {
  absl::MutexLock lock(&mu_);
  pods_ready_ = ready;
  pods_known_ = known;
}

void Metrics::SetPodInflight(std::map<std::string, int64_t> by_pod) {
  absl::MutexLock lock(&mu_);
  pod_inflight_ = std::move(by_pod);
}

std::string Metrics::Render() {
  absl::MutexLock lock(&mu_);
  std::string out;
  Family(&out, "gvshim_gateway_executions_total", "counter",
         "Snippets answered, by language and RAGFlow result status.");
  for (const auto& [k, n] : executions_) {
    absl::StrAppend(&out, "gvshim_gateway_executions_total{language=\"", EscapeLabelValue(k.first),
                    "\",status=\"", EscapeLabelValue(k.second), "\"} ", n, "\n");
  }
  Family(&out, "gvshim_gateway_execution_seconds", "histogram",
         "Time from admission of a /run request to its answer, by language.");
  for (const auto& [lang, h] : latency_) {
    std::string l = EscapeLabelValue(lang);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < Buckets().size(); ++i) {
      cumulative += h.counts[i];
      absl::StrAppend(&out, "gvshim_gateway_execution_seconds_bucket{language=\"", l, "\",le=\"",
                      absl::StrFormat("%g", Buckets()[i]), "\"} ", cumulative, "\n");
    }
    absl::StrAppend(&out, "gvshim_gateway_execution_seconds_bucket{language=\"", l, "\",le=\"+Inf\"} ",
                    h.count, "\n");
    absl::StrAppend(&out, "gvshim_gateway_execution_seconds_sum{language=\"", l, "\"} ", Number(h.sum), "\n");
    absl::StrAppend(&out, "gvshim_gateway_execution_seconds_count{language=\"", l, "\"} ", h.count, "\n");
  }
  Family(&out, "gvshim_gateway_requests_total", "counter", "HTTP answers, by route and status code.");
  for (const auto& [k, n] : requests_) {
    absl::StrAppend(&out, "gvshim_gateway_requests_total{route=\"", EscapeLabelValue(k.first), "\",code=\"",
                    k.second, "\"} ", n, "\n");
  }
  Family(&out, "gvshim_gateway_rejections_total", "counter",
         "/run requests refused before execution, by reason.");
  for (const auto& [reason, n] : rejections_) {
    absl::StrAppend(&out, "gvshim_gateway_rejections_total{reason=\"", EscapeLabelValue(reason), "\"} ", n,
                    "\n");
  }
  Family(&out, "gvshim_gateway_queue_depth", "gauge", "Requests waiting for a free pool pod.");
  absl::StrAppend(&out, "gvshim_gateway_queue_depth ", queue_depth_, "\n");
  Family(&out, "gvshim_gateway_inflight", "gauge", "Snippets sent to pool pods and not answered yet.");
  absl::StrAppend(&out, "gvshim_gateway_inflight ", inflight_, "\n");
  Family(&out, "gvshim_gateway_pods", "gauge", "Pool pods on this node: known (selected records), ready.");
  absl::StrAppend(&out, "gvshim_gateway_pods{state=\"ready\"} ", pods_ready_, "\n");
  absl::StrAppend(&out, "gvshim_gateway_pods{state=\"known\"} ", pods_known_, "\n");
  Family(&out, "gvshim_gateway_pod_inflight", "gauge", "Snippets in flight per pool pod.");
  for (const auto& [pod, n] : pod_inflight_) {
    absl::StrAppend(&out, "gvshim_gateway_pod_inflight{pod=\"", EscapeLabelValue(pod), "\"} ", n, "\n");
  }
  return out;
}

}  // namespace gvshim::gateway
