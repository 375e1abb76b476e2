// ttrpc wire framing (containerd/ttrpc PROTOCOL.md): every message is a 10-byte header followed by `length`
// payload bytes. Header: length u32 BE, stream id u32 BE (odd = client-initiated), type u8, flags u8.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace gvshim::ttrpc {

inline constexpr size_t kHeaderSize = 10;
inline constexpr uint32_t kMaxPayload = 4 << 20;

enum class FrameType : uint8_t { kRequest = 1, kResponse = 2, kData = 3 };

// Flags of a frame header (only meaningful for streaming, which gvshim does not use).
inline constexpr uint8_t kFlagRemoteClosed = 0x1;
inline constexpr uint8_t kFlagRemoteOpen = 0x2;
inline constexpr uint8_t kFlagNoData = 0x4;

struct FrameHeader {
  uint32_t length;
  uint32_t stream_id;
  uint8_t type;
  uint8_t flags;
};

void EncodeHeader(const FrameHeader& h, uint8_t out[kHeaderSize]);
FrameHeader DecodeHeader(const uint8_t in[kHeaderSize]);

// Header + payload as one buffer, ready to write. Precondition: payload.size() <= UINT32_MAX.
std::string EncodeFrame(uint32_t stream_id, FrameType type, uint8_t flags, absl::string_view payload);

struct Frame {
  FrameHeader header;
  std::string payload;
};

// Incremental frame parser shared by the server, the client and the fuzzer. Bytes go in with Feed() in any
// chunking; Next() pops one event at a time. The length field is never trusted: nothing is allocated up front
// for it, and a frame whose length exceeds the limit is reported as kOversized (header only) and its payload
// is then discarded as it arrives, without buffering, so the byte stream stays in sync and the peer can be
// answered with RESOURCE_EXHAUSTED on that stream (what containerd/ttrpc does). Buffered memory stays below
// kHeaderSize + max_payload + the size of the last Feed().
class FrameReader {
 public:
  enum class Result {
    kNeedMore,   // no complete frame buffered; Feed more bytes
    kFrame,      // *frame holds a complete frame
    kOversized,  // frame->header holds the header of an oversized frame; payload is empty and being skipped
  };

  explicit FrameReader(uint32_t max_payload = kMaxPayload) : max_payload_(max_payload) {}

  void Feed(absl::string_view bytes);
  Result Next(Frame* frame);

  // Bytes held, not yet returned in a frame.
  size_t buffered() const { return buf_.size() - pos_; }
  // Payload bytes of an oversized frame still to be discarded.
  uint64_t skipping() const { return skip_; }

 private:
  void Compact();

  const uint32_t max_payload_;
  std::string buf_;
  size_t pos_ = 0;     // start of the unread part of buf_
  uint64_t skip_ = 0;  // bytes of an oversized payload still to drop
};

}  // namespace gvshim::ttrpc
