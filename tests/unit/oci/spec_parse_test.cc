// oci::ParseSpec, LoadSpec's pure part (tests/fuzz/oci_spec_fuzz feeds it arbitrary bytes).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "shim/oci/hardening.h"

namespace gvshim::oci {
namespace {

using ::testing::HasSubstr;

TEST(ParseSpec, ParsesAndNamesThePathInErrors) {
  auto ok = ParseSpec(R"({"process":{},"root":{"path":"rootfs"}})", "b/config.json");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)["root"]["path"], "rootfs");
  auto bad = ParseSpec("{\n  \"a\": [1,\n}", "b/config.json");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("b/config.json:3:1:"));
  auto big = ParseSpec(R"({"a": 1e400})", "b/config.json");
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
}

// The parser is iterative, but hardening copies the spec and saving serialises it, both recursively: a
// config.json nested a million levels deep overflowed the shim's stack (found with tests/fuzz/oci_spec_fuzz).
// Nesting deeper than any OCI spec needs is refused at parse time.
TEST(ParseSpec, RefusesNestingDeeperThan256Levels) {
  const size_t n = 1000000;
  const std::string deep =
      R"({"process":{},"root":{"path":"r"},"x":)" + std::string(n, '[') + std::string(n, ']') + "}";
  auto parsed = ParseSpec(deep, "b/config.json");
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("b/config.json"));
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("nesting deeper than 256 levels"));
  // 256 levels (the document's object and 255 arrays) are fine.
  const std::string fine = R"({"x":)" + std::string(255, '[') + std::string(255, ']') + "}";
  EXPECT_TRUE(ParseSpec(fine, "b/config.json").ok());
  EXPECT_FALSE(ParseSpec(R"({"x":)" + std::string(256, '[') + std::string(256, ']') + "}", "c").ok());
}

}  // namespace
}  // namespace gvshim::oci
