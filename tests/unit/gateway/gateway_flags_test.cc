// `gvshim gateway`'s command line (CLI11, shim/cli): the chart's `--flag=value` arguments, the e2e test's
// `--flag value` ones, defaults, and the errors that name the bad flag.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <sstream>

#include "shim/cli/cli.h"
#include "shim/gateway/gateway_main.h"

namespace gvshim::gateway {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Result {
  std::optional<int> rc;
  std::string out, err;
};

Result ParseGateway(std::vector<std::string> args, GatewayFlags& f) {
  CLI::App app("test", "gvshim");
  cli::UseCommonSettings(app);
  AddGatewayCommand(app, f);
  args.insert(args.begin(), "gateway");
  std::ostringstream out, err;
  std::optional<int> rc = cli::Parse(app, args, out, err);
  return {rc, out.str(), err.str()};
}

// charts/gvshim/templates/executor/gateway.yaml renders every flag as --flag=value.
TEST(GatewayFlagsTest, TheChartsArguments) {
  GatewayFlags f;
  Result r = ParseGateway(
      {"--listen=0.0.0.0:9385", "--dir=/run/gvshim/execute", "--token-file=/etc/gvshim-gateway/token",
       "--select-pod=ragflow/gvshim-pool-", "--timeout-ms=10000", "--memory-bytes=268435456",
       "--output-bytes=1048576", "--pod-concurrency=2", "--max-queue=32", "--queue-timeout-ms=5000",
       "--max-body-bytes=1048576", "--run-rate-limit=120/minute", "--preauth-rate-limit=30/minute",
       "--log-level=info"},
      f);
  ASSERT_EQ(r.rc, std::nullopt) << r.err;
  EXPECT_EQ(f.listen, "0.0.0.0:9385");
  EXPECT_EQ(f.dir, "/run/gvshim/execute");
  EXPECT_EQ(f.token_file, "/etc/gvshim-gateway/token");
  EXPECT_EQ(f.select_pod, "ragflow/gvshim-pool-");
  EXPECT_EQ(f.timeout_ms, 10000u);
  EXPECT_EQ(f.memory_bytes, 268435456u);
  EXPECT_EQ(f.output_bytes, 1048576u);
  EXPECT_EQ(f.pod_concurrency, 2u);
  EXPECT_EQ(f.max_queue, 32u);
  EXPECT_EQ(f.queue_timeout_ms, 5000u);
  EXPECT_EQ(f.max_body_bytes, 1048576u);
  EXPECT_EQ(f.run_rate, "120/minute");
  EXPECT_EQ(f.preauth_rate, "30/minute");
  EXPECT_EQ(f.log_level, "info");
  EXPECT_FALSE(f.allow_unauthenticated);
}

// tests/e2e/test_gateway.sh and tests/bench/gateway.sh: --flag value, repeated --select-annotation.
TEST(GatewayFlagsTest, TheE2eArguments) {
  GatewayFlags f;
  Result r = ParseGateway({"--listen",
                           "127.0.0.1:0",
                           "--port-file",
                           "/w/gw.port",
                           "--dir",
                           "/w/exec",
                           "--health-interval-ms",
                           "200",
                           "--token-file",
                           "/w/token",
                           "--select-annotation",
                           "dev.gvshim.execute=true",
                           "--select-annotation",
                           "team=a",
                           "--queue-timeout-ms",
                           "300",
                           "--run-rate-limit",
                           "none",
                           "--preauth-rate-limit",
                           "none",
                           "--allow-unauthenticated",
                           "--allow-network",
                           "--cpu-time-ms",
                           "1",
                           "--max-processes",
                           "2",
                           "--file-size-bytes",
                           "3",
                           "--max-connections",
                           "4"},
                          f);
  ASSERT_EQ(r.rc, std::nullopt) << r.err;
  EXPECT_EQ(f.listen, "127.0.0.1:0");
  EXPECT_EQ(f.port_file, "/w/gw.port");
  EXPECT_EQ(f.health_interval_ms, 200u);
  EXPECT_THAT(f.select_annotations, ElementsAre("dev.gvshim.execute=true", "team=a"));
  EXPECT_EQ(f.run_rate, "none");
  EXPECT_TRUE(f.allow_unauthenticated);
  EXPECT_TRUE(f.allow_network);
  EXPECT_EQ(f.cpu_time_ms, 1u);
  EXPECT_EQ(f.max_processes, 2u);
  EXPECT_EQ(f.file_size_bytes, 3u);
  EXPECT_EQ(f.max_connections, 4u);
}

TEST(GatewayFlagsTest, Defaults) {
  GatewayFlags f;
  Result r = ParseGateway({}, f);
  ASSERT_EQ(r.rc, std::nullopt) << r.err;
  EXPECT_EQ(f.listen, "0.0.0.0:9385");
  EXPECT_EQ(f.dir, "");
  EXPECT_EQ(f.pod_concurrency, 4u);
  EXPECT_EQ(f.max_queue, 64u);
  EXPECT_EQ(f.queue_timeout_ms, 10000u);
  EXPECT_EQ(f.max_body_bytes, 16u << 20);
  EXPECT_EQ(f.max_connections, 256u);
  EXPECT_EQ(f.health_interval_ms, 1000u);
  EXPECT_EQ(f.timeout_ms, 0u);
}

TEST(GatewayFlagsTest, BadValuesAreNamed) {
  struct Case {
    std::vector<std::string> args;
    std::string names;
  };
  for (const Case& c : std::vector<Case>{{{"--pod-concurrency=0"}, "--pod-concurrency"},
                                         {{"--max-body-bytes", "0"}, "--max-body-bytes"},
                                         {{"--max-connections=0"}, "--max-connections"},
                                         {{"--health-interval-ms=0"}, "--health-interval-ms"},
                                         {{"--timeout-ms=-5"}, "--timeout-ms"},
                                         {{"--max-queue=many"}, "--max-queue"},
                                         {{"--listen"}, "--listen"},
                                         {{"--bogus"}, "--bogus"},
                                         {{"--dir", "/d", "extra"}, "extra"}}) {
    GatewayFlags f;
    Result r = ParseGateway(c.args, f);
    EXPECT_EQ(r.rc, 2) << c.names;
    EXPECT_THAT(r.err, HasSubstr("gvshim gateway: ")) << c.names;
    EXPECT_THAT(r.err, HasSubstr(c.names));
  }
}

TEST(GatewayFlagsTest, Help) {
  GatewayFlags f;
  Result r = ParseGateway({"-h"}, f);
  EXPECT_EQ(r.rc, 0);
  EXPECT_THAT(r.out, HasSubstr("--select-annotation KEY=VALUE"));
  EXPECT_THAT(r.out, HasSubstr("SANDBOX_EXECUTOR_MANAGER_API_TOKEN"));
}

}  // namespace
}  // namespace gvshim::gateway
