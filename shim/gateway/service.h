// The gateway's HTTP routes, independent of the transport: an HttpRequest in, an HttpResponse out. POST /run
// goes through RAGFlow's order of checks (pre-auth limit, authentication, size, validation, execution quota),
// then a pool pod's Execute. docs/gateway.md is the contract.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gvshim/execute/v1/execute.pb.h"
#include "shim/gateway/auth.h"
#include "shim/gateway/metrics.h"
#include "shim/gateway/pool.h"
#include "shim/gateway/rate_limit.h"

namespace gvshim::gateway {

struct HttpRequest {
  std::string method;
  std::string target;                          // path and query as sent
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  std::string peer;  // the client's address (rate-limit key)
  // The transport did not read a body larger than the cap; `body` is empty then.
  bool body_too_large = false;
  uint64_t body_size = 0;  // announced or read

  const std::string& Header(const std::string& lower_name) const;
};

struct HttpResponse {
  int code = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // For the access log.
  std::string language, status, pod;
  std::optional<int> exit_code;
  std::optional<double> queue_ms;    // waiting for a pool pod
  std::optional<double> execute_ms;  // the pod's Execute call
};

struct ServiceOptions {
  execute::v1::Limits limits;  // sent with every snippet (zero fields: the pod's defaults), capped per pod
  bool allow_network = false;
  absl::Duration queue_timeout = absl::Seconds(10);
  uint64_t max_body_bytes = 16 << 20;
  absl::Duration execute_slack = absl::Seconds(30);  // added to the wall timeout for the gRPC deadline
};

class Service {
 public:
  // `run_limiter` / `preauth_limiter` may be null (no limit).
  Service(ServiceOptions opts, Authenticator* auth, Pool* pool, Metrics* metrics,
          FixedWindowLimiter* run_limiter, SlidingWindowLimiter* preauth_limiter);

  HttpResponse Handle(const HttpRequest& req);

  // The limits sent to a pod: the configured ones, each lowered to the pod's maximum when that is known.
  static execute::v1::Limits EffectiveLimits(const execute::v1::Limits& wanted,
                                             const std::optional<execute::v1::Limits>& max);

 private:
  HttpResponse Run(const HttpRequest& req);
  HttpResponse Execute(const RunRequest& run);

  const ServiceOptions opts_;
  Authenticator* const auth_;
  Pool* const pool_;
  Metrics* const metrics_;
  FixedWindowLimiter* const run_limiter_;
  SlidingWindowLimiter* const preauth_limiter_;
};

// The access-log line of one request (a JSON object, no newline).
std::string AccessLogLine(const HttpRequest& req, const HttpResponse& resp, absl::Time start,
                          absl::Duration took);

}  // namespace gvshim::gateway
