#include "shim/execute/common/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <toml++/toml.h>

namespace gvshim::execute {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<ExecuteConfig> ParseText(const std::string& text) {
  toml::table root = toml::parse(std::string_view(text), std::string("g.toml"));
  const toml::table* t = root["execute"].as_table();
  return ParseExecuteTable(t, "g.toml");
}

TEST(ExecuteConfigTest, AbsentTableIsDisabledWithDefaults) {
  auto c = ParseExecuteTable(nullptr, "g.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->enabled);
  EXPECT_TRUE(c->require_annotation);
  EXPECT_EQ(c->socket_dir, "/run/gvshim/execute");
  EXPECT_EQ(c->start, StartMode::kLazy);
  EXPECT_EQ(c->max_concurrent, 4u);
  EXPECT_EQ(c->max_queue, 32u);
  EXPECT_EQ(c->queue_timeout_ms, 10000u);
  EXPECT_EQ(c->max_code_bytes, 1u << 20);
  EXPECT_EQ(c->python, "python3");
  EXPECT_EQ(c->node, "node");
  EXPECT_EQ(c->default_limits.wall_timeout_ms, 10000u);
  EXPECT_EQ(c->default_limits.memory_bytes, 512u << 20);
  EXPECT_EQ(c->max_limits.output_bytes, 16u << 20);
}

TEST(ExecuteConfigTest, ParsesEveryKey) {
  auto c = ParseText(R"(
[execute]
enabled = true
require_annotation = false
socket_dir = "/run/x"
start = "eager"
max_concurrent = 2
max_queue = 0
queue_timeout_ms = 500
max_code_bytes = 4096
python = "/opt/py/bin/python3"
node = "nodejs"
runner_args = ["--uid-count", "8"]
python_args = ["--preload", "json"]
node_args = ["--pool-size", "1"]
[execute.limits]
wall_timeout_ms = 1000
cpu_time_ms = 900
memory_bytes = 1000000
output_bytes = 100
max_processes = 4
file_size_bytes = 10
[execute.max_limits]
wall_timeout_ms = 2000
cpu_time_ms = 2000
memory_bytes = 2000000
output_bytes = 200
max_processes = 8
file_size_bytes = 20
)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->enabled);
  EXPECT_FALSE(c->require_annotation);
  EXPECT_EQ(c->socket_dir, "/run/x");
  EXPECT_EQ(c->start, StartMode::kEager);
  EXPECT_EQ(c->max_concurrent, 2u);
  EXPECT_EQ(c->max_queue, 0u);
  EXPECT_EQ(c->queue_timeout_ms, 500u);
  EXPECT_EQ(c->max_code_bytes, 4096u);
  EXPECT_EQ(c->python, "/opt/py/bin/python3");
  EXPECT_EQ(c->node, "nodejs");
  EXPECT_EQ(c->runner_args, (std::vector<std::string>{"--uid-count", "8"}));
  EXPECT_EQ(c->python_args, (std::vector<std::string>{"--preload", "json"}));
  EXPECT_EQ(c->node_args, (std::vector<std::string>{"--pool-size", "1"}));
  EXPECT_EQ(c->default_limits, (Limits{1000, 900, 1000000, 100, 4, 10}));
  EXPECT_EQ(c->max_limits, (Limits{2000, 2000, 2000000, 200, 8, 20}));
}

TEST(ExecuteConfigTest, ErrorsNameFileLineAndKey) {
  struct Case {
    std::string text;
    std::string want;
  } cases[] = {
      {"[execute]\nenabled = \"yes\"\n", "g.toml:2: execute.enabled: expected true or false"},
      {"[execute]\n\nbogus = 1\n", "g.toml:3: execute.bogus: unknown key"},
      {"[execute]\nstart = \"sometimes\"\n", "g.toml:2: execute.start: must be \"lazy\" or \"eager\""},
      {"[execute]\nsocket_dir = \"run/x\"\n", "g.toml:2: execute.socket_dir: must be an absolute path"},
      {"[execute]\nsocket_dir = \"/" + std::string(100, 'd') + "\"\n", "execute.socket_dir: is 101 bytes"},
      {"[execute]\nmax_concurrent = 0\n", "g.toml:2: execute.max_concurrent: must be between 1 and"},
      {"[execute]\nmax_queue = -1\n", "g.toml:2: execute.max_queue: must be between 0 and"},
      {"[execute]\nmax_code_bytes = 1.5\n", "g.toml:2: execute.max_code_bytes: expected an integer"},
      {"[execute]\npython = \"\"\n", "g.toml:2: execute.python: must not be empty"},
      {"[execute]\nrunner_args = [\"a\", 1]\n", "execute.runner_args: expected an array of strings"},
      {"[execute]\nrunner_args = \"--x\"\n", "g.toml:2: execute.runner_args: expected an array of strings"},
      {"[execute]\nlimits = 3\n", "g.toml:2: execute.limits: expected a table"},
      {"[execute.limits]\nwall_timeout_ms = 0\n",
       "g.toml:2: execute.limits.wall_timeout_ms: must be between 1"},
      {"[execute.limits]\n\ncpu_ms = 5\n", "g.toml:3: execute.limits.cpu_ms: unknown key"},
      {"[execute.max_limits]\nwall_timeout_ms = -5\n",
       "execute.max_limits.wall_timeout_ms: must be between 1"},
      // stdout and stderr travel base64-encoded in one 64 MiB frame: more than 16 MiB each could never be
      // returned.
      {"[execute.max_limits]\noutput_bytes = 16777217\n",
       "g.toml:2: execute.max_limits.output_bytes: must be between 1 and 16777216"},
      {"[execute.limits]\noutput_bytes = 33554432\n",
       "g.toml:2: execute.limits.output_bytes: must be between 1 and 16777216"},
      {"[execute.limits]\nmemory_bytes = 9999999999999\n",
       "execute.limits.memory_bytes: default 9999999999999 is above the maximum"},
  };
  for (const auto& c : cases) {
    auto r = ParseText(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.want)) << c.text;
  }
}

TEST(ExecuteConfigTest, EffectiveLimitsTakeDefaultsAndClampToMax) {
  ExecuteConfig cfg;
  cfg.default_limits = Limits{100, 200, 300, 400, 5, 600};
  cfg.max_limits = Limits{1000, 2000, 3000, 4000, 50, 6000};
  EXPECT_EQ(EffectiveLimits(Limits{}, cfg), cfg.default_limits);
  EXPECT_EQ(EffectiveLimits(Limits{1, 0, 99999, 4000, 7, 0}, cfg), (Limits{1, 200, 3000, 4000, 7, 600}));
}

// Clients compute the key to find a pod's socket: it must not change between versions.
TEST(ExecuteConfigTest, SocketKeyIsStableAcrossVersions) {
  EXPECT_EQ(SocketKey("t", "sbx"), "19990b657751c657");
  EXPECT_NE(SocketKey("t", "sbx2"), SocketKey("t", "sbx"));
}

}  // namespace
}  // namespace gvshim::execute
