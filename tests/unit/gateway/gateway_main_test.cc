#include "shim/gateway/gateway_main.h"

#include <gtest/gtest.h>

namespace gvshim::gateway {
namespace {

TEST(GatewayMain, SandboxTimeoutNotation) {
  EXPECT_EQ(ParseSandboxTimeout("10s"), absl::Seconds(10));
  EXPECT_EQ(ParseSandboxTimeout("2m"), absl::Minutes(2));
  EXPECT_EQ(ParseSandboxTimeout("1M30S"), absl::Seconds(90));
  EXPECT_EQ(ParseSandboxTimeout(" 45s "), absl::Seconds(45));
  for (const char* bad : {"", "0s", "10", "1h", "s", "1.5s", "30s1m"})
    EXPECT_FALSE(ParseSandboxTimeout(bad).has_value()) << bad;
}

TEST(GatewayMain, HostPort) {
  std::string host;
  uint16_t port = 0;
  ASSERT_TRUE(SplitHostPort("0.0.0.0:9385", &host, &port).ok());
  EXPECT_EQ(host, "0.0.0.0");
  EXPECT_EQ(port, 9385);
  ASSERT_TRUE(SplitHostPort("[::]:80", &host, &port).ok());
  EXPECT_EQ(host, "::");
  EXPECT_FALSE(SplitHostPort("9385", &host, &port).ok());
  EXPECT_FALSE(SplitHostPort(":9385", &host, &port).ok());
  EXPECT_FALSE(SplitHostPort("h:70000", &host, &port).ok());
}

}  // namespace
}  // namespace gvshim::gateway
