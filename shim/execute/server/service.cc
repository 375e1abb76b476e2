#include "shim/execute/server/service.h"

#include <chrono>
#include <limits>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "shim/base/log.h"
#include "shim/execute/common/wire.h"

namespace gvshim::execute {
namespace {

constexpr size_t kMaxStdinBytes = 16 << 20;

absl::Time Deadline(const grpc::ServerContext* ctx) {
  const auto d = ctx->deadline();
  // gRPC reports "no deadline" as a time far in the future.
  if (d >= std::chrono::system_clock::now() + std::chrono::hours(24 * 365 * 100))
    return absl::InfiniteFuture();
  return absl::FromChrono(d);
}

const char* JsonKind(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null:
      return "null";
    case nlohmann::json::value_t::boolean:
      return "a boolean";
    case nlohmann::json::value_t::string:
      return "a string";
    default:
      return "a number";
  }
}

pb::Status StatusFromName(const std::string& s) {
  if (s == "success") return pb::STATUS_SUCCESS;
  if (s == "program_error") return pb::STATUS_PROGRAM_ERROR;
  if (s == "timeout") return pb::STATUS_TIMEOUT;
  if (s == "memory_limit") return pb::STATUS_MEMORY_LIMIT;
  if (s == "output_limit") return pb::STATUS_OUTPUT_LIMIT;
  if (s == "rejected") return pb::STATUS_REJECTED;
  if (s == "internal_error") return pb::STATUS_INTERNAL_ERROR;
  return pb::STATUS_UNSPECIFIED;
}

Limits FromProto(const pb::Limits& l) {
  return Limits{l.wall_timeout_ms(), l.cpu_time_ms(),   l.memory_bytes(),
                l.output_bytes(),    l.max_processes(), l.file_size_bytes()};
}

void ToProto(const Limits& l, pb::Limits* out) {
  out->set_wall_timeout_ms(l.wall_timeout_ms);
  out->set_cpu_time_ms(l.cpu_time_ms);
  out->set_memory_bytes(l.memory_bytes);
  out->set_output_bytes(l.output_bytes);
  out->set_max_processes(l.max_processes);
  out->set_file_size_bytes(l.file_size_bytes);
}

pb::Language ToProto(Language l) {
  return l == Language::kPython ? pb::LANGUAGE_PYTHON : pb::LANGUAGE_JAVASCRIPT;
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& st) {
  if (st.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(st.code()), std::string(st.message()));
}

absl::Status ValidateRequest(const pb::ExecuteRequest& req, const ExecuteConfig& cfg) {
  if (req.language() != pb::LANGUAGE_PYTHON && req.language() != pb::LANGUAGE_JAVASCRIPT) {
    return absl::InvalidArgumentError(
        absl::StrFormat("language must be LANGUAGE_PYTHON or LANGUAGE_JAVASCRIPT (got %s)",
                        pb::Language_Name(req.language()).empty() ? absl::StrCat(req.language())
                                                                  : pb::Language_Name(req.language())));
  }
  if (req.code().empty()) return absl::InvalidArgumentError("code is empty");
  if (req.code().size() > cfg.max_code_bytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "code is %d bytes; the limit is %d bytes (max_code_bytes)", req.code().size(), cfg.max_code_bytes));
  }
  if (!req.arguments_json().empty()) {
    nlohmann::json args = nlohmann::json::parse(req.arguments_json(), nullptr, /*allow_exceptions=*/false);
    if (args.is_discarded()) return absl::InvalidArgumentError("arguments_json is not valid JSON");
    if (!args.is_object() && !args.is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat("arguments_json must be a JSON object or array, not ", JsonKind(args)));
    }
  }
  if (req.stdin().size() > kMaxStdinBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("stdin is %d bytes; the limit is %d bytes", req.stdin().size(), kMaxStdinBytes));
  }
  for (const auto& [k, v] : req.env()) {
    if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("env: invalid variable name \"", absl::CHexEscape(k), "\""));
    }
    if (v.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("env: the value of ", k, " contains a NUL byte"));
    }
  }
  const Limits limits = FromProto(req.limits());
  for (const LimitField& f : kLimitFields) {
    // A negative number sent through a signed client type arrives as a huge unsigned one.
    if (limits.*f.member > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(absl::StrCat("limits.", f.name, " is negative or out of range"));
    }
  }
  return absl::OkStatus();
}

nlohmann::json BuildExecFrame(const pb::ExecuteRequest& req, const ExecuteConfig& cfg) {
  const Limits eff = EffectiveLimits(FromProto(req.limits()), cfg);
  nlohmann::json env = nlohmann::json::object();
  for (const auto& [k, v] : req.env()) env[k] = v;
  nlohmann::json frame = {
      {"code", req.code()},
      {"args_json", req.arguments_json().empty() ? std::string("{}") : req.arguments_json()},
      {"env", std::move(env)},
      {"allow_network", req.allow_network()},
      {"limits", ToJson(eff)},
  };
  if (!req.stdin().empty()) frame["stdin"] = absl::Base64Escape(req.stdin());
  return frame;
}

absl::Status ResultToResponse(const nlohmann::json& r, pb::ExecuteResponse* resp) {
  resp->Clear();
  try {
    if (!r.is_object()) return absl::InternalError("result is not a JSON object");
    const std::string status = r.at("status").get<std::string>();
    pb::Status s = StatusFromName(status);
    if (s == pb::STATUS_UNSPECIFIED)
      return absl::InternalError(absl::StrCat("unknown status \"", status, "\""));
    resp->set_status(s);
    auto bytes = [&](const char* key, std::string* out) -> absl::Status {
      auto it = r.find(key);
      if (it == r.end() || it->is_null()) return absl::OkStatus();
      if (!absl::Base64Unescape(it->get<std::string>(), out)) {
        return absl::InternalError(absl::StrCat(key, " is not base64"));
      }
      return absl::OkStatus();
    };
    if (absl::Status st = bytes("stdout", resp->mutable_stdout()); !st.ok()) return st;
    if (absl::Status st = bytes("stderr", resp->mutable_stderr()); !st.ok()) return st;
    auto num = [&](const char* key) -> const nlohmann::json* {
      auto it = r.find(key);
      return it == r.end() || it->is_null() ? nullptr : &*it;
    };
    const nlohmann::json* exit_code = num("exit_code");
    resp->set_exit_code(exit_code != nullptr ? exit_code->get<int32_t>() : -1);
    const nlohmann::json* sig = num("signal");
    resp->set_signal(sig != nullptr ? sig->get<int32_t>() : 0);
    if (const nlohmann::json* rj = num("result_json")) resp->set_result_json(rj->get<std::string>());
    if (const nlohmann::json* d = num("duration_ms")) resp->set_duration_ms(d->get<double>());
    if (const nlohmann::json* m = num("peak_memory_bytes")) resp->set_peak_memory_bytes(m->get<uint64_t>());
    resp->set_stdout_truncated(r.value("stdout_truncated", false));
    resp->set_stderr_truncated(r.value("stderr_truncated", false));
    resp->set_artifacts_truncated(r.value("artifacts_truncated", false));
    if (const nlohmann::json* e = num("error")) resp->set_error(e->get<std::string>());
    if (const nlohmann::json* arts = num("artifacts")) {
      for (const auto& a : *arts) {
        pb::Artifact* out = resp->add_artifacts();
        out->set_name(a.at("name").get<std::string>());
        if (!absl::Base64Unescape(a.at("content").get<std::string>(), out->mutable_content())) {
          return absl::InternalError(absl::StrCat("artifact ", out->name(), " is not base64"));
        }
        out->set_size(a.contains("size") ? a.at("size").get<uint64_t>() : out->content().size());
      }
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::InternalError(e.what());
  }
  return absl::OkStatus();
}

Service::Service(ExecuteConfig cfg, Backend* backend)
    : cfg_(std::move(cfg)), backend_(backend), scheduler_(cfg_.max_concurrent, cfg_.max_queue) {}

grpc::Status Service::Run(grpc::ServerContext* ctx, const pb::ExecuteRequest& req,
                          const std::function<void(bool, const std::string&)>& on_output,
                          pb::ExecuteResponse* resp) {
  if (absl::Status st = ValidateRequest(req, cfg_); !st.ok()) return ToGrpcStatus(st);
  const Language lang = req.language() == pb::LANGUAGE_PYTHON ? Language::kPython : Language::kJavaScript;
  auto runner = backend_->RunnerFor(lang, req.target_container());
  if (!runner.ok()) return ToGrpcStatus(runner.status());
  const absl::Time deadline = Deadline(ctx);
  auto cancelled = [ctx] { return ctx->IsCancelled(); };
  auto slot =
      scheduler_.Acquire(absl::Now() + absl::Milliseconds(cfg_.queue_timeout_ms), deadline, cancelled);
  if (!slot.ok()) return ToGrpcStatus(slot.status());
  JobControl ctl;
  ctl.deadline = deadline;
  ctl.cancelled = cancelled;
  ctl.on_output = on_output;
  ctl.hold = *std::move(slot);
  auto result = (*runner)->Run(BuildExecFrame(req, cfg_), ctl);
  if (!result.ok()) return ToGrpcStatus(result.status());
  if (absl::Status st = ResultToResponse(*result, resp); !st.ok()) {
    log::Warnf("execute: malformed result from the %s runner: %s", LanguageName(lang), st.message());
    resp->Clear();
    resp->set_status(pb::STATUS_INTERNAL_ERROR);
    resp->set_exit_code(-1);
    resp->set_error(absl::StrCat("the runner sent a malformed result: ", st.message()));
  }
  return grpc::Status::OK;
}

grpc::Status Service::Execute(grpc::ServerContext* ctx, const pb::ExecuteRequest* req,
                              pb::ExecuteResponse* resp) {
  return Run(ctx, *req, nullptr, resp);
}

grpc::Status Service::ExecuteStream(grpc::ServerContext* ctx, const pb::ExecuteRequest* req,
                                    grpc::ServerWriter<pb::ExecuteEvent>* writer) {
  bool broken = false;
  auto on_output = [&](bool is_stderr, const std::string& data) {
    if (broken) return;
    pb::ExecuteEvent ev;
    if (is_stderr) {
      ev.set_stderr(data);
    } else {
      ev.set_stdout(data);
    }
    broken = !writer->Write(ev);  // the client went away; the cancellation check stops the snippet
  };
  pb::ExecuteEvent last;
  grpc::Status st = Run(ctx, *req, on_output, last.mutable_result());
  if (!st.ok()) return st;
  last.mutable_result()->clear_stdout();
  last.mutable_result()->clear_stderr();
  writer->Write(last);
  return grpc::Status::OK;
}

grpc::Status Service::ListRuntimes(grpc::ServerContext*, const pb::ListRuntimesRequest*,
                                   pb::ListRuntimesResponse* resp) {
  // What a runner can isolate is only known once it runs: start the ones that have not been (bounded wait).
  const absl::Time deadline = absl::Now() + kListRuntimesStartWait;
  for (const RuntimeEntry& e : backend_->Runtimes()) {
    pb::Runtime* r = resp->add_runtimes();
    r->set_language(ToProto(e.language));
    r->set_container(e.container);
    RunnerStatus status = e.status;
    auto runner = backend_->RunnerFor(e.language, e.container);
    if (!runner.ok()) {
      r->set_error(std::string(runner.status().message()));
    } else {
      absl::Status ready = (*runner)->EnsureReady(deadline);
      status = (*runner)->Status();
      if (!ready.ok()) r->set_error(std::string(ready.message()));
    }
    r->set_version(status.version);
    r->set_ready(status.ready);
    for (const std::string& i : status.isolation) r->add_isolation(i);
    r->set_isolation_mode(status.isolation_mode);
    for (const std::string& m : status.missing) r->add_isolation_missing(m);
  }
  ToProto(cfg_.default_limits, resp->mutable_default_limits());
  ToProto(cfg_.max_limits, resp->mutable_max_limits());
  return grpc::Status::OK;
}

grpc::Status Service::Health(grpc::ServerContext*, const pb::HealthRequest*, pb::HealthResponse* resp) {
  bool serving = false;
  std::vector<std::string> notes;
  std::vector<RuntimeEntry> runtimes = backend_->Runtimes();
  for (const RuntimeEntry& e : runtimes) {
    std::string what = absl::StrCat(LanguageName(e.language), "@", e.container, ": ");
    if (e.status.failing) {
      absl::StrAppend(&what, "failing: ", e.status.last_error);
    } else if (!e.status.started) {
      absl::StrAppend(&what, "not started");
      serving = true;  // started on first use
    } else {
      // Only a runner that answers counts; RunnerFor returns the existing runner.
      auto runner = backend_->RunnerFor(e.language, e.container);
      absl::Status ping = runner.ok() ? (*runner)->Ping(absl::Seconds(2)) : runner.status();
      if (ping.ok()) {
        absl::StrAppend(&what, "ready");
        serving = true;
      } else {
        absl::StrAppend(&what, ping.message());
      }
    }
    notes.push_back(std::move(what));
  }
  if (runtimes.empty()) notes.push_back("no container of this pod has an interpreter");
  resp->set_status(serving ? pb::HealthResponse::SERVING : pb::HealthResponse::NOT_SERVING);
  resp->set_active(scheduler_.running());
  resp->set_queued(scheduler_.waiting());
  resp->set_message(absl::StrJoin(notes, "; "));
  return grpc::Status::OK;
}

}  // namespace gvshim::execute
