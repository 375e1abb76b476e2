#include "shim/gateway/run_result.h"

#include <gtest/gtest.h>

namespace gvshim::gateway {
namespace {

using ojson = nlohmann::ordered_json;
namespace ev1 = execute::v1;

ev1::ExecuteResponse Resp(ev1::Status s, int exit_code = 0, int sig = 0, std::string out = "",
                          std::string err = "") {
  ev1::ExecuteResponse r;
  r.set_status(s);
  r.set_exit_code(exit_code);
  r.set_signal(sig);
  r.set_stdout(out);
  r.set_stderr(err);
  r.set_duration_ms(12.5);
  return r;
}

ojson Map(const ev1::ExecuteResponse& r, bool network_refused = true) {
  ResultOptions o;
  o.network_refused = network_refused;
  return ResultFromExecute(r, o);
}

TEST(RunResult, AllFieldsInRagflowsOrder) {
  ojson j = Map(Resp(ev1::STATUS_SUCCESS));
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  EXPECT_EQ(keys,
            (std::vector<std::string>{"status", "stdout", "stderr", "exit_code", "detail", "time_used_ms",
                                      "memory_used_kb", "resource_limit_type", "unauthorized_access_type",
                                      "runtime_error_type", "artifacts", "result"}));
}

TEST(RunResult, Success) {
  ev1::ExecuteResponse r = Resp(ev1::STATUS_SUCCESS, 0, 0, "hi\n", "warn\n");
  r.set_result_json(R"({"sum": 42})");
  r.set_peak_memory_bytes(2048 * 1024);
  ojson j = Map(r);
  EXPECT_EQ(j["status"], "success");
  EXPECT_EQ(j["stdout"], "hi\n");
  EXPECT_EQ(j["stderr"], "warn\n");
  EXPECT_EQ(j["exit_code"], 0);
  EXPECT_TRUE(j["detail"].is_null());
  EXPECT_EQ(j["time_used_ms"], 12.5);
  EXPECT_EQ(j["memory_used_kb"], 2048.0);
  EXPECT_EQ(j["result"], ojson({{"present", true}, {"value", {{"sum", 42}}}, {"type", "json"}}));
  // A script without main has no result.
  EXPECT_TRUE(Map(Resp(ev1::STATUS_SUCCESS))["result"].is_null());
  EXPECT_TRUE(Map(Resp(ev1::STATUS_SUCCESS))["memory_used_kb"].is_null());
}

TEST(RunResult, TimeoutIsMinus124) {
  ev1::ExecuteResponse r = Resp(ev1::STATUS_TIMEOUT, -1, 9, "partial", "trace");
  r.set_error("wall timeout of 1000 ms exceeded");
  ojson j = Map(r);
  EXPECT_EQ(j["status"], "resource_limit_exceeded");
  EXPECT_EQ(j["resource_limit_type"], "time");
  EXPECT_EQ(j["exit_code"], -124);
  EXPECT_EQ(j["stderr"], "Execution timeout");
  EXPECT_EQ(j["stdout"], "partial");
  EXPECT_EQ(j["detail"], "wall timeout of 1000 ms exceeded");
}

TEST(RunResult, Memory) {
  ojson killed = Map(Resp(ev1::STATUS_MEMORY_LIMIT, -1, 9));
  EXPECT_EQ(killed["status"], "resource_limit_exceeded");
  EXPECT_EQ(killed["resource_limit_type"], "memory");
  EXPECT_EQ(killed["exit_code"], -137);
  EXPECT_EQ(killed["stderr"], "Memory limit exceeded (killed by OOM)");
  ojson raised = Map(Resp(ev1::STATUS_MEMORY_LIMIT, 1, 0, "", "MemoryError\n"));
  EXPECT_EQ(raised["exit_code"], 1);
  EXPECT_EQ(raised["stderr"], "MemoryError\n");
  EXPECT_EQ(raised["resource_limit_type"], "memory");
}

TEST(RunResult, OutputCap) {
  ojson j = Map(Resp(ev1::STATUS_OUTPUT_LIMIT, -1, 9, "xxxx"));
  EXPECT_EQ(j["status"], "resource_limit_exceeded");
  EXPECT_EQ(j["resource_limit_type"], "output");
  EXPECT_EQ(j["exit_code"], 137);
  EXPECT_EQ(j["stdout"], "xxxx");
}

TEST(RunResult, ProgramErrorsClassifiedAsRagflowDoes) {
  ojson j = Map(Resp(ev1::STATUS_PROGRAM_ERROR, 1, 0, "out", "ValueError: boom"));
  EXPECT_EQ(j["status"], "program_error");
  EXPECT_EQ(j["runtime_error_type"], "nonzero_exit");
  EXPECT_EQ(j["exit_code"], 1);
  EXPECT_EQ(j["stdout"], "out");  // RAGFlow drops it; we keep it
  j = Map(Resp(ev1::STATUS_PROGRAM_ERROR, -1, 11));
  EXPECT_EQ(j["runtime_error_type"], "signalled");
  EXPECT_EQ(j["exit_code"], 139);
  j = Map(
      Resp(ev1::STATUS_PROGRAM_ERROR, 1, 0, "", "PermissionError: [Errno 13] Permission denied: '/etc/x'"));
  EXPECT_EQ(j["status"], "unauthorized_access");
  EXPECT_EQ(j["unauthorized_access_type"], "file_access");
  j = Map(Resp(ev1::STATUS_PROGRAM_ERROR, 1, 0, "", "PermissionError: [Errno 1] Operation not permitted"));
  EXPECT_EQ(j["unauthorized_access_type"], "disallowed_syscall");
  j = Map(Resp(ev1::STATUS_PROGRAM_ERROR, 1, 0, "", "Traceback...\nMemoryError"));
  EXPECT_EQ(j["status"], "resource_limit_exceeded");
  EXPECT_EQ(j["resource_limit_type"], "memory");
}

TEST(RunResult, RefusedNetwork) {
  auto r = Resp(ev1::STATUS_PROGRAM_ERROR, 1, 0, "", "OSError: [Errno 101] Network is unreachable");
  ojson j = Map(r);
  EXPECT_EQ(j["status"], "unauthorized_access");
  EXPECT_EQ(j["unauthorized_access_type"], "network_access");
  j = Map(Resp(ev1::STATUS_PROGRAM_ERROR, 1, 0, "", "OSError: [Errno 113] No route to host"));
  EXPECT_EQ(j["unauthorized_access_type"], "network_access");
  j = Map(Resp(ev1::STATUS_PROGRAM_ERROR, 1, 0, "", "Error: getaddrinfo EAI_AGAIN example.com"));
  EXPECT_EQ(j["unauthorized_access_type"], "network_access");
  // With the network allowed, the same failure is the program's own.
  EXPECT_EQ(Map(r, false)["status"], "program_error");
}

TEST(RunResult, RunnerFailures) {
  ev1::ExecuteResponse r = Resp(ev1::STATUS_INTERNAL_ERROR, -1);
  r.set_error("runner crashed");
  ojson j = Map(r);
  EXPECT_EQ(j["status"], "program_runner_error");
  EXPECT_EQ(j["exit_code"], -3);
  EXPECT_EQ(j["detail"], "internal_error");
  EXPECT_EQ(j["stderr"], "runner crashed");
  r.set_status(ev1::STATUS_REJECTED);
  EXPECT_EQ(Map(r)["detail"], "rejected");
  ojson none = NoAvailableContainerResult();
  EXPECT_EQ(none["status"], "program_runner_error");
  EXPECT_EQ(none["exit_code"], -10);
  EXPECT_EQ(none["stderr"], "Container pool is busy");
  EXPECT_EQ(none["detail"], "no_available_container");
  ojson limited = RateLimitedResult();
  EXPECT_EQ(limited["exit_code"], -429);
  EXPECT_EQ(limited["stderr"], "Too many requests, please try again later");
  EXPECT_EQ(limited["detail"], "Too many requests, please try again later");
  EXPECT_EQ(limited["stdout"], "");
  EXPECT_EQ(limited["artifacts"], ojson::array());
  EXPECT_EQ(ResultStatusOf(limited), "program_runner_error");
}

TEST(RunResult, ArtifactsFilteredAsRagflowDoes) {
  ev1::ExecuteResponse r = Resp(ev1::STATUS_SUCCESS);
  auto add = [&](const std::string& name, const std::string& content) {
    ev1::Artifact* a = r.add_artifacts();
    a->set_name(name);
    a->set_content(content);
    a->set_size(content.size());
  };
  add("plot.PNG", "png-bytes");
  add("data.csv", "a,b\n");
  add("notes.txt", "text");  // extension not allowed
  add(".hidden.png", "x");   // hidden
  add("empty.json", "");     // empty
  for (int i = 0; i < 12; ++i) add("f" + std::to_string(i) + ".json", "{}");
  ojson a = Map(r)["artifacts"];
  ASSERT_EQ(a.size(), 10u);
  EXPECT_EQ(a[0]["name"], "plot.PNG");
  EXPECT_EQ(a[0]["mime_type"], "image/png");
  EXPECT_EQ(a[0]["size"], 9);
  EXPECT_EQ(a[0]["content_b64"], "cG5nLWJ5dGVz");
  EXPECT_EQ(a[1]["mime_type"], "text/csv");
  EXPECT_EQ(a[2]["name"], "f0.json");
}

TEST(RunResult, InvalidUtf8OutputStillSerialises) {
  ojson j = Map(Resp(ev1::STATUS_SUCCESS, 0, 0, "bad \xff byte"));
  std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  EXPECT_NE(s.find("bad"), std::string::npos);
}

}  // namespace
}  // namespace gvshim::gateway
