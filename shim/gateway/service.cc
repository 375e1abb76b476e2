#include "shim/gateway/service.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "shim/base/log.h"
#include "shim/gateway/run_result.h"

namespace gvshim::gateway {
namespace {

using ojson = nlohmann::ordered_json;
namespace ev1 = execute::v1;

std::string Dump(const ojson& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

HttpResponse Json(int code, const ojson& body) {
  HttpResponse r;
  r.code = code;
  r.body = Dump(body);
  return r;
}

HttpResponse Detail(int code, const std::string& detail) { return Json(code, {{"detail", detail}}); }

std::string RouteOf(const std::string& path) {
  for (const char* known : {"/", "/healthz", "/readyz", "/metrics", "/run"}) {
    if (path == known) return path;
  }
  return "other";
}

// Execute's languages for RAGFlow's names.
ev1::Language ToExecute(RunLanguage l) {
  return l == RunLanguage::kNodejs ? ev1::LANGUAGE_JAVASCRIPT : ev1::LANGUAGE_PYTHON;
}

}  // namespace

const std::string& HttpRequest::Header(const std::string& lower_name) const {
  static const std::string kEmpty;
  auto it = headers.find(lower_name);
  return it == headers.end() ? kEmpty : it->second;
}

Service::Service(ServiceOptions opts, Authenticator* auth, Pool* pool, Metrics* metrics,
                 FixedWindowLimiter* run_limiter, SlidingWindowLimiter* preauth_limiter)
    : opts_(std::move(opts)),
      auth_(auth),
      pool_(pool),
      metrics_(metrics),
      run_limiter_(run_limiter),
      preauth_limiter_(preauth_limiter) {}

ev1::Limits Service::EffectiveLimits(const ev1::Limits& wanted, const std::optional<ev1::Limits>& max) {
  ev1::Limits out = wanted;
  if (!max.has_value()) return out;
  auto cap = [](uint64_t want, uint64_t limit) { return limit != 0 && want > limit ? limit : want; };
  out.set_wall_timeout_ms(cap(wanted.wall_timeout_ms(), max->wall_timeout_ms()));
  out.set_cpu_time_ms(cap(wanted.cpu_time_ms(), max->cpu_time_ms()));
  out.set_memory_bytes(cap(wanted.memory_bytes(), max->memory_bytes()));
  out.set_output_bytes(cap(wanted.output_bytes(), max->output_bytes()));
  out.set_max_processes(cap(wanted.max_processes(), max->max_processes()));
  out.set_file_size_bytes(cap(wanted.file_size_bytes(), max->file_size_bytes()));
  return out;
}

HttpResponse Service::Handle(const HttpRequest& req) {
  std::string path = req.target.substr(0, req.target.find('?'));
  std::string route = RouteOf(path);
  HttpResponse resp;
  if (route == "/" || route == "/healthz") {
    resp = req.method == "GET" ? Json(200, {{"status", "ok"}}) : Detail(405, "Method Not Allowed");
  } else if (route == "/readyz") {
    if (req.method != "GET") {
      resp = Detail(405, "Method Not Allowed");
    } else {
      int ready = pool_->ReadyCount();
      resp = Json(ready > 0 ? 200 : 503,
                  {{"status", ready > 0 ? "ready" : "no pool pod ready"}, {"pods_ready", ready}});
    }
  } else if (route == "/metrics") {
    if (req.method != "GET") {
      resp = Detail(405, "Method Not Allowed");
    } else {
      resp.content_type = "text/plain; version=0.0.4; charset=utf-8";
      resp.body = metrics_->Render();
    }
  } else if (route == "/run") {
    resp = req.method == "POST" ? Run(req) : Detail(405, "Method Not Allowed");
  } else {
    resp = Detail(404, "Not Found");
  }
  if (resp.code == 405) resp.headers.emplace_back("Allow", route == "/run" ? "POST" : "GET");
  metrics_->RecordRequest(route, resp.code);
  return resp;
}

HttpResponse Service::Run(const HttpRequest& req) {
  // RAGFlow's order: the pre-auth limit sees every /run request, then authentication.
  if (preauth_limiter_ != nullptr && !preauth_limiter_->Hit(req.peer)) {
    metrics_->RecordRejection("preauth_rate");
    return Json(429, RateLimitedResult());
  }
  switch (auth_->Check(req.Header("authorization"), req.Header("x-sandbox-token"))) {
    case AuthResult::kAllowed:
      break;
    case AuthResult::kUnauthorized:
      log::Warnf("gateway: rejected unauthenticated /run from %s", req.peer);
      metrics_->RecordRejection("auth");
      return Detail(401, kUnauthorizedDetail);
    case AuthResult::kNotConfigured:
      metrics_->RecordRejection("auth");
      return Detail(503, kNotConfiguredDetail);
  }
  if (req.body_too_large || req.body.size() > opts_.max_body_bytes) {
    metrics_->RecordRejection("too_large");
    return Detail(413, absl::StrCat("Request body of ", req.body_size, " bytes is larger than the limit of ",
                                    opts_.max_body_bytes, " bytes"));
  }
  ParsedRun parsed = ParseRunRequest(req.body, req.Header("content-type"));
  if (auto* errors = std::get_if<std::vector<FieldError>>(&parsed)) {
    metrics_->RecordRejection("validation");
    return Json(422, ValidationErrorBody(*errors));
  }
  // The execution quota counts only requests that got this far (slowapi's decorator runs inside the
  // endpoint).
  if (run_limiter_ != nullptr && !run_limiter_->Hit(req.peer)) {
    metrics_->RecordRejection("rate");
    return Json(429, RateLimitedResult());
  }
  return Execute(std::get<RunRequest>(parsed));
}

HttpResponse Service::Execute(const RunRequest& run) {
  absl::Time admitted = absl::Now();
  std::string language = RunLanguageName(run.language);
  auto finish = [&](HttpResponse r, const ojson& result) {
    r.language = language;
    r.status = ResultStatusOf(result);
    if (auto it = result.find("exit_code"); it != result.end() && it->is_number_integer())
      r.exit_code = it->get<int>();
    metrics_->RecordExecution(language, r.status, absl::Now() - admitted);
    return r;
  };
  auto lease = pool_->Acquire(run.language, admitted + opts_.queue_timeout);
  absl::Time acquired = absl::Now();
  if (!lease.ok()) {
    log::Warnf("gateway: no available pool pod for %s: %s", language, lease.status().message());
    metrics_->RecordRejection("no_pod");
    ojson result = NoAvailableContainerResult();
    HttpResponse r = Json(200, result);
    r.queue_ms = absl::ToDoubleMilliseconds(acquired - admitted);
    return finish(std::move(r), result);
  }
  ev1::ExecuteRequest req;
  req.set_language(ToExecute(run.language));
  req.set_code(run.code);
  req.set_arguments_json(run.arguments_json);
  req.set_allow_network(opts_.allow_network);
  *req.mutable_limits() = EffectiveLimits(opts_.limits, lease->max_limits());
  // The wall timeout (the pod's default when unset, at most its maximum) plus slack for queueing in the pod.
  uint64_t wall_ms = req.limits().wall_timeout_ms() != 0 ? req.limits().wall_timeout_ms()
                     : lease->max_limits().has_value() && lease->max_limits()->wall_timeout_ms() != 0
                         ? lease->max_limits()->wall_timeout_ms()
                         : 300000;
  absl::Time deadline = absl::Now() + absl::Milliseconds(static_cast<int64_t>(wall_ms)) + opts_.execute_slack;
  ev1::ExecuteResponse resp;
  grpc::Status st = lease->client().Execute(req, deadline, &resp);
  absl::Time executed = absl::Now();
  ojson result;
  if (st.ok()) {
    ResultOptions ro;
    ro.network_refused = !opts_.allow_network;
    result = ResultFromExecute(resp, ro);
    if (resp.status() == ev1::STATUS_INTERNAL_ERROR) {
      lease->SetAside(absl::StrCat("internal error: ", resp.error()));
    } else {
      lease->Succeeded();
    }
  } else if (st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
    log::Warnf("gateway: pool pod %s is full: %s", lease->pod_name(), st.error_message());
    result = NoAvailableContainerResult();
  } else if (st.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
    result = InternalErrorResult(
        absl::StrCat("pool pod ", lease->pod_name(), " refused the snippet: ", st.error_message()),
        "rejected");
  } else {
    std::string why = absl::StrFormat("Execute on pool pod %s failed (gRPC code %d): %s", lease->pod_name(),
                                      static_cast<int>(st.error_code()), st.error_message());
    lease->SetAside(why);
    result = InternalErrorResult(why);
  }
  HttpResponse r = Json(200, result);
  r.queue_ms = absl::ToDoubleMilliseconds(acquired - admitted);
  r.execute_ms = absl::ToDoubleMilliseconds(executed - acquired);
  r.pod = lease->pod_name();
  r.headers.emplace_back("X-Gvshim-Pod", r.pod);
  return finish(std::move(r), result);
}

std::string AccessLogLine(const HttpRequest& req, const HttpResponse& resp, absl::Time start,
                          absl::Duration took) {
  ojson j = {{"ts", absl::FormatTime(absl::RFC3339_full, start, absl::UTCTimeZone())},
             {"remote", req.peer},
             {"method", req.method},
             {"path", req.target.substr(0, req.target.find('?'))},
             {"code", resp.code},
             {"bytes_in", req.body_size},
             {"bytes_out", resp.body.size()},
             {"ms", absl::ToDoubleMilliseconds(took)}};
  if (!resp.language.empty()) j["language"] = resp.language;
  if (!resp.status.empty()) j["status"] = resp.status;
  if (resp.exit_code.has_value()) j["exit_code"] = *resp.exit_code;
  if (!resp.pod.empty()) j["pod"] = resp.pod;
  if (resp.queue_ms.has_value()) j["queue_ms"] = *resp.queue_ms;
  if (resp.execute_ms.has_value()) j["execute_ms"] = *resp.execute_ms;
  return Dump(j);
}

}  // namespace gvshim::gateway
