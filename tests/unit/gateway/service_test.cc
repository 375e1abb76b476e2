#include "shim/gateway/service.h"

#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "fake_pods.h"

namespace gvshim::gateway {
namespace {

using ojson = nlohmann::ordered_json;
using testing::FakeNode;
namespace ev1 = execute::v1;

constexpr char kToken[] = "unit-test-shared-secret";

struct FakeClock {
  absl::Time now = absl::FromUnixSeconds(1000000);
  Clock fn() {
    return [this] { return now; };
  }
};

// A Service over fake pods, with RAGFlow's test settings: a token, 3/minute execution quota.
struct Fixture {
  explicit Fixture(std::string token = kToken, bool allow_unauth = false, int preauth = 1000) {
    a = node.AddPod("a");
    pool = std::make_unique<Pool>(PoolOptions{node.dir(), {}, 2, 8}, node.Factory(), &metrics);
    pool->Refresh();
    auth = std::make_unique<Authenticator>(TokenSource::Fixed(token), allow_unauth);
    run_limiter = std::make_unique<FixedWindowLimiter>(std::vector<Rate>{{3, absl::Minutes(1)}}, clock.fn());
    preauth_limiter = std::make_unique<SlidingWindowLimiter>(
        Rate{static_cast<uint64_t>(preauth), absl::Minutes(1)}, clock.fn());
    ServiceOptions o;
    o.queue_timeout = absl::Milliseconds(50);
    o.max_body_bytes = 4096;
    o.limits.set_wall_timeout_ms(10000);
    o.limits.set_memory_bytes(256 << 20);
    service = std::make_unique<Service>(o, auth.get(), pool.get(), &metrics, run_limiter.get(),
                                        preauth_limiter.get());
  }

  HttpResponse Post(const ojson& body,
                    std::map<std::string, std::string> headers = {{"authorization",
                                                                   "Bearer unit-test-shared-secret"}},
                    const std::string& peer = "10.0.0.1") {
    HttpRequest r;
    r.method = "POST";
    r.target = "/run";
    r.headers = std::move(headers);
    r.headers["content-type"] = "application/json";
    r.body = body.is_string() ? body.get<std::string>() : body.dump();
    r.body_size = r.body.size();
    r.peer = peer;
    return service->Handle(r);
  }
  HttpResponse Get(const std::string& target) {
    HttpRequest r;
    r.method = "GET";
    r.target = target;
    r.peer = "10.0.0.1";
    return service->Handle(r);
  }

  FakeNode node;
  std::shared_ptr<testing::FakePod> a;
  Metrics metrics;
  FakeClock clock;
  std::unique_ptr<Pool> pool;
  std::unique_ptr<Authenticator> auth;
  std::unique_ptr<FixedWindowLimiter> run_limiter;
  std::unique_ptr<SlidingWindowLimiter> preauth_limiter;
  std::unique_ptr<Service> service;
};

ojson Payload(const std::string& code = "def main():\n    return 42\n") {
  return {{"code_b64", absl::Base64Escape(code)}, {"language", "python"}, {"arguments", ojson::object()}};
}

ojson Body(const HttpResponse& r) { return ojson::parse(r.body); }

TEST(Service, HealthRoutesNeedNoToken) {
  Fixture f;
  for (const char* t : {"/healthz", "/", "/healthz?probe=1"}) {
    HttpResponse r = f.Get(t);
    EXPECT_EQ(r.code, 200) << t;
    EXPECT_EQ(Body(r), ojson({{"status", "ok"}}));
  }
  EXPECT_EQ(f.Get("/nope").code, 404);
  EXPECT_EQ(Body(f.Get("/nope")), ojson({{"detail", "Not Found"}}));
  HttpResponse r = f.Get("/run");
  EXPECT_EQ(r.code, 405);
  EXPECT_EQ(Body(r), ojson({{"detail", "Method Not Allowed"}}));
  EXPECT_EQ(f.Get("/readyz").code, 200);
  EXPECT_EQ(f.Get("/metrics").code, 200);
}

TEST(Service, ReadyzFollowsThePool) {
  Fixture f;
  f.a->SetHealth(grpc::Status::OK, ev1::HealthResponse::NOT_SERVING);
  f.pool->Refresh();
  EXPECT_EQ(f.Get("/readyz").code, 503);
}

TEST(Service, AuthMatrix) {
  Fixture f;
  EXPECT_EQ(f.Post(Payload(), {}).code, 401);
  EXPECT_EQ(Body(f.Post(Payload(), {})), ojson({{"detail", kUnauthorizedDetail}}));
  EXPECT_EQ(f.Post(Payload(), {{"authorization", "Bearer not-the-token"}}).code, 401);
  EXPECT_EQ(f.Post(Payload(), {{"x-sandbox-token", "also-wrong"}}).code, 401);
  HttpResponse ok = f.Post(Payload(), {{"authorization", std::string("Bearer ") + kToken}});
  EXPECT_EQ(ok.code, 200);
  EXPECT_EQ(Body(ok)["status"], "success");
  EXPECT_EQ(f.Post(Payload(), {{"x-sandbox-token", kToken}}).code, 200);
  EXPECT_EQ(f.a->executes.load(), 2);  // refused requests never reached a pod
}

TEST(Service, NoTokenFailsClosedOrOpensWhenAllowed) {
  Fixture closed("", false);
  HttpResponse r = closed.Post(Payload(), {});
  EXPECT_EQ(r.code, 503);
  EXPECT_NE(Body(r)["detail"].get<std::string>().find("SANDBOX_EXECUTOR_MANAGER_API_TOKEN"),
            std::string::npos);
  Fixture open("", true);
  EXPECT_EQ(open.Post(Payload(), {}).code, 200);
}

TEST(Service, ExecutionQuotaAnswers429WithMinus429) {
  Fixture f;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(f.Post(Payload()).code, 200);
  HttpResponse r = f.Post(Payload());
  EXPECT_EQ(r.code, 429);
  EXPECT_EQ(Body(r)["exit_code"], -429);
  EXPECT_EQ(Body(r)["status"], "program_runner_error");
  // Another client has its own quota; the window passes.
  EXPECT_EQ(f.Post(Payload(), {{"x-sandbox-token", kToken}}, "10.0.0.2").code, 200);
  f.clock.now += absl::Minutes(1);
  EXPECT_EQ(f.Post(Payload()).code, 200);
}

TEST(Service, RejectedRequestsDoNotUseTheQuota) {
  Fixture f;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(f.Post(Payload(), {}).code, 401);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(f.Post(ojson({{"language", "python"}})).code, 422);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(f.Post(Payload()).code, 200) << i;
}

TEST(Service, PreauthLimitCountsEveryRunRequestBeforeAuth) {
  Fixture f(kToken, false, /*preauth=*/3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(f.Post(Payload(), {}).code, 401);
  HttpResponse r = f.Post(Payload(), {});
  EXPECT_EQ(r.code, 429);
  EXPECT_EQ(Body(r)["exit_code"], -429);
  EXPECT_EQ(f.Post(Payload()).code, 429);  // the right token does not get past a flooded pre-auth window
  EXPECT_EQ(f.Get("/healthz").code, 200);
}

TEST(Service, ValidationAndSize) {
  Fixture f;
  HttpResponse r = f.Post(ojson({{"code_b64", "not base64!"}}));
  EXPECT_EQ(r.code, 422);
  EXPECT_EQ(Body(r)["detail"][0]["loc"], ojson({"body", "code_b64"}));
  r = f.Post(ojson({{"code_b64", std::string(5000, 'A')}}));
  EXPECT_EQ(r.code, 413);
  // Size is checked after authentication: an anonymous client learns nothing.
  EXPECT_EQ(f.Post(ojson({{"code_b64", std::string(5000, 'A')}}), {}).code, 401);
}

TEST(Service, RunsOnAPodWithLimitsAndArguments) {
  Fixture f;
  {
    absl::MutexLock lock(&f.a->mu);
    ev1::Limits max;
    max.set_wall_timeout_ms(3000);
    f.a->max_limits = max;
  }
  f.pool->Refresh();  // the pod's maximum is learnt at a poll
  f.a->on_execute = [](const ev1::ExecuteRequest& req, ev1::ExecuteResponse* resp) {
    resp->set_status(ev1::STATUS_SUCCESS);
    resp->set_result_json(req.arguments_json());
    resp->set_duration_ms(7);
    return grpc::Status::OK;
  };
  HttpResponse r = f.Post(ojson({{"code_b64", absl::Base64Escape("function main(a) { return a }")},
                                 {"language", "nodejs"},
                                 {"arguments", {{"a", 1}}}}));
  ASSERT_EQ(r.code, 200) << r.body;
  EXPECT_EQ(Body(r)["result"], ojson({{"present", true}, {"value", {{"a", 1}}}, {"type", "json"}}));
  EXPECT_EQ(Body(r)["time_used_ms"], 7.0);
  EXPECT_EQ(r.pod, "ns/a");
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0], std::make_pair(std::string("X-Gvshim-Pod"), std::string("ns/a")));
  absl::MutexLock lock(&f.a->mu);
  EXPECT_EQ(f.a->last.language(), ev1::LANGUAGE_JAVASCRIPT);
  EXPECT_EQ(f.a->last.code(), "function main(a) { return a }");
  EXPECT_EQ(f.a->last.arguments_json(), R"({"a":1})");
  EXPECT_EQ(f.a->last.limits().wall_timeout_ms(), 3000u) << "the pod's maximum lowers the gateway's limit";
  EXPECT_EQ(f.a->last.limits().memory_bytes(), 256u << 20);
  EXPECT_FALSE(f.a->last.allow_network());
}

TEST(Service, NoPodAnswersNoAvailableContainer) {
  Fixture f;
  f.a->SetHealth(grpc::Status(grpc::StatusCode::UNAVAILABLE, "gone"));
  f.pool->Refresh();
  HttpResponse r = f.Post(Payload());
  EXPECT_EQ(r.code, 200);
  EXPECT_EQ(Body(r)["exit_code"], -10);
  EXPECT_EQ(Body(r)["detail"], "no_available_container");
  EXPECT_NE(f.metrics.Render().find("status=\"program_runner_error\"} 1"), std::string::npos);
}

TEST(Service, PodFailureAnswersAnErrorAndTheNextGoesElsewhere) {
  Fixture f;
  auto b = f.node.AddPod("b");
  f.pool->Refresh();
  auto broken = [](const ev1::ExecuteRequest&, ev1::ExecuteResponse*) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "Socket closed");
  };
  f.a->on_execute = broken;
  b->on_execute = broken;
  HttpResponse r1 = f.Post(Payload());
  EXPECT_EQ(r1.code, 200);
  EXPECT_EQ(Body(r1)["status"], "program_runner_error");
  EXPECT_EQ(Body(r1)["exit_code"], -3);
  EXPECT_NE(Body(r1)["stderr"].get<std::string>().find("Socket closed"), std::string::npos);
  // The failed pod is set aside; the next request goes to the other one.
  f.a->on_execute = nullptr;
  b->on_execute = nullptr;
  for (int i = 0; i < 4; ++i) {
    HttpResponse r2 = f.Post(Payload(), {{"x-sandbox-token", kToken}}, "10.0.0." + std::to_string(10 + i));
    EXPECT_EQ(Body(r2)["status"], "success");
    EXPECT_NE(r2.pod, r1.pod) << "request " << i << " after the failure went to the failed pod";
  }
}

TEST(Service, AnsweredRunsSpareThePodHealthPolls) {
  Fixture f;
  {
    absl::MutexLock lock(&f.a->mu);
    f.a->max_limits = ev1::Limits();  // a pod whose maximum limits are known
  }
  int polls = f.a->health_calls.load();
  f.pool->Refresh();  // learns the limits
  f.pool->Refresh();
  EXPECT_EQ(f.a->health_calls.load(), polls + 2) << "the probe sees the polls while nothing runs";
  polls += 2;
  f.a->on_execute = [](const ev1::ExecuteRequest&, ev1::ExecuteResponse* resp) {
    resp->set_status(ev1::STATUS_TIMEOUT);  // an answer, whatever the snippet did
    return grpc::Status::OK;
  };
  EXPECT_EQ(Body(f.Post(Payload()))["resource_limit_type"], "time");
  f.pool->Refresh();
  EXPECT_EQ(f.a->health_calls.load(), polls) << "Health was polled right after the pod answered";
  // An internal error is no answer: the pod is set aside and polled (and probed) again.
  f.a->on_execute = [](const ev1::ExecuteRequest&, ev1::ExecuteResponse* resp) {
    resp->set_status(ev1::STATUS_INTERNAL_ERROR);
    resp->set_error("runner died");
    return grpc::Status::OK;
  };
  f.Post(Payload(), {{"x-sandbox-token", kToken}}, "10.0.0.2");
  f.pool->Refresh();
  EXPECT_GT(f.a->health_calls.load(), polls);
}

TEST(Service, MetricsCountExecutions) {
  Fixture f;
  f.Post(Payload());
  f.Post(ojson({{"code_b64", absl::Base64Escape("x")}, {"language", "nodejs"}}));
  std::string m = f.Get("/metrics").body;
  EXPECT_NE(m.find("gvshim_gateway_executions_total{language=\"python\",status=\"success\"} 1"),
            std::string::npos);
  EXPECT_NE(m.find("gvshim_gateway_executions_total{language=\"nodejs\",status=\"success\"} 1"),
            std::string::npos);
  EXPECT_NE(m.find("gvshim_gateway_requests_total{route=\"/run\",code=\"200\"} 2"), std::string::npos);
}

TEST(Service, AccessLogLine) {
  HttpRequest req;
  req.method = "POST";
  req.target = "/run?x=1";
  req.peer = "10.0.0.9";
  req.body_size = 42;
  HttpResponse resp;
  resp.code = 200;
  resp.body = "{}";
  resp.language = "python";
  resp.status = "success";
  resp.exit_code = 0;
  resp.pod = "ns/a";
  resp.queue_ms = 1.5;
  resp.execute_ms = 20.25;
  ojson j = ojson::parse(AccessLogLine(req, resp, absl::FromUnixSeconds(0), absl::Milliseconds(5)));
  EXPECT_EQ(j["path"], "/run");
  EXPECT_EQ(j["code"], 200);
  EXPECT_EQ(j["remote"], "10.0.0.9");
  EXPECT_EQ(j["bytes_in"], 42);
  EXPECT_EQ(j["ms"], 5.0);
  EXPECT_EQ(j["pod"], "ns/a");
  EXPECT_EQ(j["exit_code"], 0);
  EXPECT_EQ(j["ts"], "1970-01-01T00:00:00+00:00");
  EXPECT_EQ(j["queue_ms"], 1.5);
  EXPECT_EQ(j["execute_ms"], 20.25);
}

TEST(Service, EffectiveLimits) {
  ev1::Limits want;
  want.set_wall_timeout_ms(10000);
  want.set_memory_bytes(1 << 30);
  ev1::Limits max;
  max.set_wall_timeout_ms(5000);
  max.set_memory_bytes(0);  // no maximum known for this field
  ev1::Limits got = Service::EffectiveLimits(want, max);
  EXPECT_EQ(got.wall_timeout_ms(), 5000u);
  EXPECT_EQ(got.memory_bytes(), 1u << 30);
  EXPECT_EQ(Service::EffectiveLimits(want, std::nullopt).wall_timeout_ms(), 10000u);
}

}  // namespace
}  // namespace gvshim::gateway
