#include "shim/ttrpc/frame.h"

#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace gvshim::ttrpc {
namespace {

struct HeaderCase {
  FrameHeader header;
  std::vector<uint8_t> bytes;
};

TEST(FrameHeaderTest, EncodeDecodeTable) {
  const std::vector<HeaderCase> cases = {
      {{0, 1, 1, 0}, {0, 0, 0, 0, 0, 0, 0, 1, 1, 0}},
      {{5, 3, 2, 0}, {0, 0, 0, 5, 0, 0, 0, 3, 2, 0}},
      {{0x01020304, 0x0a0b0c0d, 3, 0x7}, {1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, 3, 7}},
      {{kMaxPayload, 0x7fffffff, 1, 0x4}, {0, 0x40, 0, 0, 0x7f, 0xff, 0xff, 0xff, 1, 4}},
      {{0xffffffff, 0xffffffff, 0xff, 0xff}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
  };
  for (const auto& c : cases) {
    uint8_t out[kHeaderSize];
    EncodeHeader(c.header, out);
    EXPECT_EQ(std::vector<uint8_t>(out, out + kHeaderSize), c.bytes) << "length " << c.header.length;
    FrameHeader h = DecodeHeader(c.bytes.data());
    EXPECT_EQ(h.length, c.header.length);
    EXPECT_EQ(h.stream_id, c.header.stream_id);
    EXPECT_EQ(h.type, c.header.type);
    EXPECT_EQ(h.flags, c.header.flags);
  }
}

TEST(FrameHeaderTest, EncodeFrameAppendsPayload) {
  std::string f = EncodeFrame(7, FrameType::kResponse, 0, "abc");
  ASSERT_EQ(f.size(), kHeaderSize + 3);
  EXPECT_EQ(f, std::string("\0\0\0\3\0\0\0\7\2\0abc", 13));
}

TEST(FrameReaderTest, EmptyInputNeedsMore) {
  FrameReader r;
  Frame f;
  EXPECT_EQ(r.Next(&f), FrameReader::Result::kNeedMore);
}

TEST(FrameReaderTest, WholeFramesInOneFeed) {
  FrameReader r;
  r.Feed(EncodeFrame(1, FrameType::kRequest, 0, "one") + EncodeFrame(3, FrameType::kRequest, 0, "") +
         EncodeFrame(5, FrameType::kData, 2, "three"));
  Frame f;
  ASSERT_EQ(r.Next(&f), FrameReader::Result::kFrame);
  EXPECT_EQ(f.header.stream_id, 1u);
  EXPECT_EQ(f.payload, "one");
  ASSERT_EQ(r.Next(&f), FrameReader::Result::kFrame);
  EXPECT_EQ(f.header.stream_id, 3u);
  EXPECT_EQ(f.payload, "");
  ASSERT_EQ(r.Next(&f), FrameReader::Result::kFrame);
  EXPECT_EQ(f.header.stream_id, 5u);
  EXPECT_EQ(f.header.type, 3);
  EXPECT_EQ(f.header.flags, 2);
  EXPECT_EQ(f.payload, "three");
  EXPECT_EQ(r.Next(&f), FrameReader::Result::kNeedMore);
  EXPECT_EQ(r.buffered(), 0u);
}

TEST(FrameReaderTest, ByteByByte) {
  const std::string payload(300, 'x');
  const std::string wire =
      EncodeFrame(9, FrameType::kRequest, 0, payload) + EncodeFrame(11, FrameType::kRequest, 0, "y");
  FrameReader r;
  Frame f;
  std::vector<std::string> got;
  for (char c : wire) {
    r.Feed(absl::string_view(&c, 1));
    while (r.Next(&f) == FrameReader::Result::kFrame) got.push_back(f.payload);
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], payload);
  EXPECT_EQ(got[1], "y");
}

TEST(FrameReaderTest, SplitAtEveryOffset) {
  const std::string wire =
      EncodeFrame(1, FrameType::kRequest, 0, "hello") + EncodeFrame(3, FrameType::kRequest, 0, "w");
  for (size_t cut = 0; cut <= wire.size(); ++cut) {
    FrameReader r;
    Frame f;
    std::vector<uint32_t> ids;
    r.Feed(absl::string_view(wire).substr(0, cut));
    while (r.Next(&f) == FrameReader::Result::kFrame) ids.push_back(f.header.stream_id);
    r.Feed(absl::string_view(wire).substr(cut));
    while (r.Next(&f) == FrameReader::Result::kFrame) ids.push_back(f.header.stream_id);
    EXPECT_EQ(ids, (std::vector<uint32_t>{1, 3})) << "cut at " << cut;
  }
}

TEST(FrameReaderTest, PartialHeaderAndPayloadNeedMore) {
  const std::string wire = EncodeFrame(1, FrameType::kRequest, 0, "abcdef");
  FrameReader r;
  Frame f;
  r.Feed(wire.substr(0, 4));
  EXPECT_EQ(r.Next(&f), FrameReader::Result::kNeedMore);
  r.Feed(wire.substr(4, 8));  // header complete, payload partial
  EXPECT_EQ(r.Next(&f), FrameReader::Result::kNeedMore);
  r.Feed(wire.substr(12));
  ASSERT_EQ(r.Next(&f), FrameReader::Result::kFrame);
  EXPECT_EQ(f.payload, "abcdef");
}

TEST(FrameReaderTest, MaxPayloadAcceptedOneMoreIsOversized) {
  FrameReader r(16);
  Frame f;
  r.Feed(EncodeFrame(1, FrameType::kRequest, 0, std::string(16, 'a')));
  ASSERT_EQ(r.Next(&f), FrameReader::Result::kFrame);
  EXPECT_EQ(f.payload.size(), 16u);
  r.Feed(EncodeFrame(3, FrameType::kRequest, 0, std::string(17, 'b')));
  ASSERT_EQ(r.Next(&f), FrameReader::Result::kOversized);
  EXPECT_EQ(f.header.stream_id, 3u);
  EXPECT_EQ(f.header.length, 17u);
  EXPECT_TRUE(f.payload.empty());
  EXPECT_EQ(r.Next(&f), FrameReader::Result::kNeedMore);
  EXPECT_EQ(r.buffered(), 0u);
}

TEST(FrameReaderTest, OversizedPayloadIsSkippedAcrossFeeds) {
  FrameReader r(8);
  Frame f;
  uint8_t hdr[kHeaderSize];
  EncodeHeader({100, 5, 1, 0}, hdr);
  r.Feed(std::string(reinterpret_cast<char*>(hdr), kHeaderSize) + std::string(30, 'z'));
  ASSERT_EQ(r.Next(&f), FrameReader::Result::kOversized);
  EXPECT_EQ(f.header.stream_id, 5u);
  EXPECT_EQ(r.skipping(), 70u);
  EXPECT_EQ(r.buffered(), 0u);
  r.Feed(std::string(69, 'z'));
  EXPECT_EQ(r.Next(&f), FrameReader::Result::kNeedMore);
  EXPECT_EQ(r.buffered(), 0u);
  // Last skipped byte and the next frame arrive together.
  r.Feed("z" + EncodeFrame(7, FrameType::kRequest, 0, "ok"));
  ASSERT_EQ(r.Next(&f), FrameReader::Result::kFrame);
  EXPECT_EQ(f.header.stream_id, 7u);
  EXPECT_EQ(f.payload, "ok");
}

TEST(FrameReaderTest, HugeLengthDoesNotBuffer) {
  FrameReader r;
  Frame f;
  uint8_t hdr[kHeaderSize];
  EncodeHeader({0xffffffff, 1, 1, 0}, hdr);
  r.Feed(absl::string_view(reinterpret_cast<char*>(hdr), kHeaderSize));
  ASSERT_EQ(r.Next(&f), FrameReader::Result::kOversized);
  EXPECT_EQ(r.skipping(), 0xffffffffu);
  const std::string chunk(1 << 20, 'q');
  for (int i = 0; i < 8; ++i) {
    r.Feed(chunk);
    EXPECT_EQ(r.Next(&f), FrameReader::Result::kNeedMore);
    EXPECT_EQ(r.buffered(), 0u);
  }
  EXPECT_EQ(r.skipping(), 0xffffffffu - 8 * chunk.size());
}

}  // namespace
}  // namespace gvshim::ttrpc
