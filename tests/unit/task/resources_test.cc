// task/resources: LinuxResources parsing and the memory-limit arithmetic behind Stats and the OOM check.
#include "shim/task/resources.h"

#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace gvshim::task {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

TEST(ResourcesTest, ParseTable) {
  struct Case {
    const char* name;
    json in;
    Resources want;
  };
  const Case cases[] = {
      {"null", nullptr, {}},
      {"empty", json::object(), {}},
      {"memory limit", {{"memory", {{"limit", 1048576}}}}, {1048576, {}, {}, {}}},
      {"memory unlimited -1", {{"memory", {{"limit", -1}}}}, {0, {}, {}, {}}},
      {"memory limit 0", {{"memory", {{"limit", 0}}}}, {0, {}, {}, {}}},
      {"memory without limit", {{"memory", {{"swap", 5}}}}, {}},
      {"cpu", {{"cpu", {{"quota", 50000}, {"period", 100000}, {"shares", 512}}}}, {{}, 50000, 100000, 512}},
      {"cpu quota -1", {{"cpu", {{"quota", -1}}}}, {{}, -1, {}, {}}},
      {"nulls", {{"memory", nullptr}, {"cpu", nullptr}}, {}},
  };
  for (const Case& c : cases) {
    auto r = ParseLinuxResources(c.in, "res");
    ASSERT_TRUE(r.ok()) << c.name << ": " << r.status();
    EXPECT_EQ(*r, c.want) << c.name;
  }
}

TEST(ResourcesTest, ParseErrorsNameTheField) {
  struct Case {
    json in;
    const char* want;
  };
  const Case cases[] = {
      {json::array(), "res: must be an object"},
      {{{"memory", 5}}, "res.memory: must be an object"},
      {{{"memory", {{"limit", -5}}}}, "res.memory.limit: must be -1 or a positive number of bytes, not -5"},
      {{{"memory", {{"limit", "1G"}}}}, "res.memory.limit: must be an integer, not string"},
      {{{"cpu", {{"quota", 0}}}}, "res.cpu.quota: must be -1 or positive, not 0"},
      {{{"cpu", {{"period", -2}}}}, "res.cpu.period: must not be negative, not -2"},
      {{{"cpu", {{"shares", 1.5}}}}, "res.cpu.shares: must be an integer"},
      {{{"memory", {{"limit", 18446744073709551615ull}}}}, "res.memory.limit: too large"},
  };
  for (const Case& c : cases) {
    auto r = ParseLinuxResources(c.in, "res");
    ASSERT_FALSE(r.ok()) << c.in.dump();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.want)) << c.in.dump();
  }
}

TEST(ResourcesTest, FromSpec) {
  auto r = ResourcesFromSpec({{"linux", {{"resources", {{"memory", {{"limit", 4096}}}}}}}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->memory_limit, 4096);
  EXPECT_EQ(*ResourcesFromSpec(json::object()), Resources{});
  auto bad = ResourcesFromSpec({{"linux", {{"resources", {{"memory", {{"limit", -7}}}}}}}});
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("spec: linux.resources.memory.limit"));
}

TEST(ResourcesTest, MergeReplacesOnlyWhatTheUpdateCarries) {
  Resources cur{100, 5000, 100000, 2};
  EXPECT_EQ(Merge(cur, Resources{200, {}, {}, {}}), (Resources{200, 5000, 100000, 2}));
  EXPECT_EQ(Merge(cur, Resources{0, {}, {}, {}}), (Resources{0, 5000, 100000, 2}));  // -1: unlimited now
  EXPECT_EQ(Merge(cur, Resources{{}, -1, {}, 1024}), (Resources{100, -1, 100000, 1024}));
  EXPECT_EQ(Merge(cur, Resources{}), cur);
}

TEST(ResourcesTest, ReportedLimitNeverUnderflows) {
  EXPECT_EQ(ReportedMemoryLimit(Resources{}, 4096), kMax);
  EXPECT_EQ(ReportedMemoryLimit(Resources{0, {}, {}, {}}, 4096), kMax);
  EXPECT_EQ(ReportedMemoryLimit(Resources{1 << 20, {}, {}, {}}, 4096), 1u << 20);
  // Over the limit between two checks: report the usage, so that limit - usage is 0, not 1.8e19.
  EXPECT_EQ(ReportedMemoryLimit(Resources{4096, {}, {}, {}}, 8192), 8192u);
  // runsc's own limit when the container has none; the container's wins otherwise.
  EXPECT_EQ(ReportedMemoryLimit(Resources{}, 10, 1000), 1000u);
  EXPECT_EQ(ReportedMemoryLimit(Resources{500, {}, {}, {}}, 10, 1000), 500u);
  EXPECT_EQ(ReportedMemoryLimit(Resources{}, 2000, 1000), 2000u);
}

TEST(ResourcesTest, OverMemoryLimit) {
  EXPECT_FALSE(OverMemoryLimit(Resources{}, kMax));
  EXPECT_FALSE(OverMemoryLimit(Resources{0, {}, {}, {}}, kMax));
  EXPECT_FALSE(OverMemoryLimit(Resources{4096, {}, {}, {}}, 4096));
  EXPECT_TRUE(OverMemoryLimit(Resources{4096, {}, {}, {}}, 4097));
}

}  // namespace
}  // namespace gvshim::task
