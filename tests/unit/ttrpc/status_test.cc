#include "shim/ttrpc/status.h"

#include "gtest/gtest.h"

namespace gvshim::ttrpc {
namespace {

TEST(StatusTest, RoundTripsEveryCode) {
  for (int c = 1; c <= 16; ++c) {
    absl::Status in(static_cast<absl::StatusCode>(c), "msg");
    v1::Status proto;
    ToProto(in, &proto);
    EXPECT_EQ(proto.code(), c);
    EXPECT_EQ(proto.message(), "msg");
    EXPECT_EQ(FromProto(proto), in);
  }
}

TEST(StatusTest, OkIsCodeZero) {
  v1::Status proto;
  proto.set_code(7);
  ToProto(absl::OkStatus(), &proto);
  EXPECT_EQ(proto.code(), 0);
  EXPECT_TRUE(FromProto(proto).ok());
  EXPECT_TRUE(FromProto(v1::Status()).ok());
}

TEST(StatusTest, UnknownCodesBecomeUnknown) {
  for (int c : {17, 99, -1}) {
    v1::Status proto;
    proto.set_code(c);
    proto.set_message("weird");
    absl::Status s = FromProto(proto);
    EXPECT_EQ(s.code(), absl::StatusCode::kUnknown) << c;
    EXPECT_EQ(s.message(), "weird");
  }
}

TEST(StatusTest, ErrorWithEmptyMessageStaysError) {
  v1::Status proto;
  proto.set_code(static_cast<int>(absl::StatusCode::kNotFound));
  EXPECT_EQ(FromProto(proto).code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace gvshim::ttrpc
