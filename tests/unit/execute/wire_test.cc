#include "shim/execute/common/wire.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gvshim::execute {
namespace {

using ::testing::HasSubstr;

TEST(ExecuteWireTest, ConfigRoundTrips) {
  ExecuteConfig c;
  c.enabled = true;
  c.require_annotation = false;
  c.socket_dir = "/run/x";
  c.start = StartMode::kEager;
  c.max_concurrent = 7;
  c.max_queue = 3;
  c.queue_timeout_ms = 1234;
  c.max_code_bytes = 999;
  c.python = "/opt/python3";
  c.node = "nodejs";
  c.runner_args = {"--a", "1"};
  c.python_args = {"--preload", "json"};
  c.node_args = {"--pool-size", "2"};
  c.server = "/usr/bin/gvshim";
  c.default_limits = {1, 2, 3, 4, 5, 6};
  c.max_limits = {10, 20, 30, 40, 50, 60};
  auto back = ConfigFromJson(nlohmann::json::parse(ToJson(c).dump()));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->enabled);
  EXPECT_FALSE(back->require_annotation);
  EXPECT_EQ(back->socket_dir, "/run/x");
  EXPECT_EQ(back->start, StartMode::kEager);
  EXPECT_EQ(back->max_concurrent, 7u);
  EXPECT_EQ(back->max_queue, 3u);
  EXPECT_EQ(back->queue_timeout_ms, 1234u);
  EXPECT_EQ(back->max_code_bytes, 999u);
  EXPECT_EQ(back->python, "/opt/python3");
  EXPECT_EQ(back->node, "nodejs");
  EXPECT_EQ(back->runner_args, c.runner_args);
  EXPECT_EQ(back->python_args, c.python_args);
  EXPECT_EQ(back->node_args, c.node_args);
  EXPECT_EQ(back->server, "/usr/bin/gvshim");
  EXPECT_EQ(back->default_limits, c.default_limits);
  EXPECT_EQ(back->max_limits, c.max_limits);
}

TEST(ExecuteWireTest, ContainerAndHelloRoundTrip) {
  ContainerInfo c;
  c.id = "app";
  c.ns = "k8s.io";
  c.sandbox_id = "sbx";
  c.bundle = "/b";
  c.rootfs = "/b/rootfs";
  c.annotations = {{"dev.gvshim.execute", "true"}};
  c.runsc.root = "/run/runsc/k8s.io";
  c.runsc.network = "sandbox";
  c.runsc.debug = true;
  c.runsc.oci_seccomp = true;
  c.runsc.extra_flags = {"--overlay"};
  c.runsc.timeout = absl::Seconds(7);
  auto back = ContainerFromJson(nlohmann::json::parse(ToJson(c).dump()));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->id, "app");
  EXPECT_EQ(back->ns, "k8s.io");
  EXPECT_EQ(back->sandbox_id, "sbx");
  EXPECT_EQ(back->bundle, "/b");
  EXPECT_EQ(back->rootfs, "/b/rootfs");
  EXPECT_EQ(back->annotations, c.annotations);
  EXPECT_EQ(back->runsc.root, "/run/runsc/k8s.io");
  EXPECT_EQ(back->runsc.network, "sandbox");
  EXPECT_TRUE(back->runsc.debug);
  EXPECT_TRUE(back->runsc.oci_seccomp);
  EXPECT_EQ(back->runsc.extra_flags, std::vector<std::string>{"--overlay"});
  EXPECT_EQ(back->runsc.timeout, absl::Seconds(7));

  SandboxHello h{"k8s.io", "sbx", 42, "debug", ExecuteConfig{}};
  nlohmann::json hj = nlohmann::json::parse(ToJson(h).dump());
  EXPECT_EQ(hj["op"], "sandbox");
  auto hb = HelloFromJson(hj);
  ASSERT_TRUE(hb.ok()) << hb.status();
  EXPECT_EQ(hb->shim_pid, 42);
  EXPECT_EQ(hb->log_level, "debug");
  EXPECT_EQ(hb->sandbox_id, "sbx");
}

// A shim and a gvshim of neighbouring versions: config fields one side does not know keep their defaults.
TEST(ExecuteWireTest, MissingConfigFieldsKeepTheirDefaults) {
  nlohmann::json cfg = ToJson(ExecuteConfig{});
  cfg.erase("max_queue");
  cfg["limits"].erase("memory_bytes");
  cfg["a_future_field"] = 1;
  auto c = ConfigFromJson(cfg);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->max_queue, ExecuteConfig{}.max_queue);
  EXPECT_EQ(c->default_limits.memory_bytes, ExecuteConfig{}.default_limits.memory_bytes);
}

TEST(ExecuteWireTest, ErrorsNameTheField) {
  nlohmann::json c = ToJson(ContainerInfo{"a", "n", "s", "/b", "/r", {}, {}, "", ""});
  c.erase("bundle");
  EXPECT_THAT(ContainerFromJson(c).status().message(), HasSubstr("container.bundle: missing"));
  c = ToJson(ContainerInfo{"a", "n", "s", "/b", "/r", {}, {}, "", ""});
  c["runsc"]["debug"] = "yes";
  EXPECT_THAT(ContainerFromJson(c).status().message(), HasSubstr("container.runsc.debug"));
  nlohmann::json cfg = ToJson(ExecuteConfig{});
  cfg["start"] = "sometimes";
  EXPECT_THAT(ConfigFromJson(cfg).status().message(), HasSubstr("config.start"));
  cfg = ToJson(ExecuteConfig{});
  cfg["limits"]["cpu_time_ms"] = "soon";
  EXPECT_THAT(ConfigFromJson(cfg).status().message(), HasSubstr("config.limits.cpu_time_ms"));
  EXPECT_THAT(HelloFromJson(nlohmann::json::array()).status().message(), HasSubstr("expected an object"));
}

}  // namespace
}  // namespace gvshim::execute
