#include "shim/ttrpc/frame.h"

#include <algorithm>

namespace gvshim::ttrpc {
namespace {

void PutU32(uint32_t v, uint8_t* out) {
  out[0] = static_cast<uint8_t>(v >> 24);
  out[1] = static_cast<uint8_t>(v >> 16);
  out[2] = static_cast<uint8_t>(v >> 8);
  out[3] = static_cast<uint8_t>(v);
}

uint32_t GetU32(const uint8_t* in) {
  return (static_cast<uint32_t>(in[0]) << 24) | (static_cast<uint32_t>(in[1]) << 16) |
         (static_cast<uint32_t>(in[2]) << 8) | static_cast<uint32_t>(in[3]);
}

}  // namespace

void EncodeHeader(const FrameHeader& h, uint8_t out[kHeaderSize]) {
  PutU32(h.length, out);
  PutU32(h.stream_id, out + 4);
  out[8] = h.type;
  out[9] = h.flags;
}

FrameHeader DecodeHeader(const uint8_t in[kHeaderSize]) {
  return FrameHeader{GetU32(in), GetU32(in + 4), in[8], in[9]};
}

std::string EncodeFrame(uint32_t stream_id, FrameType type, uint8_t flags, absl::string_view payload) {
  std::string out(kHeaderSize + payload.size(), '\0');
  EncodeHeader(
      FrameHeader{static_cast<uint32_t>(payload.size()), stream_id, static_cast<uint8_t>(type), flags},
      reinterpret_cast<uint8_t*>(out.data()));
  std::copy(payload.begin(), payload.end(), out.begin() + kHeaderSize);
  return out;
}

void FrameReader::Feed(absl::string_view bytes) {
  // Drop what is left of an oversized payload before it ever reaches the buffer.
  if (skip_ > 0) {
    size_t drop = static_cast<size_t>(std::min<uint64_t>(skip_, bytes.size()));
    skip_ -= drop;
    bytes.remove_prefix(drop);
  }
  if (bytes.empty()) return;
  Compact();
  buf_.append(bytes.data(), bytes.size());
}

void FrameReader::Compact() {
  // Reclaim consumed bytes once they dominate the buffer, so appends stay amortised O(1).
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ > 0 && pos_ >= buf_.size() / 2) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
}

FrameReader::Result FrameReader::Next(Frame* frame) {
  // Bytes of a skipped payload that were already buffered when the oversized header was read.
  if (skip_ > 0) {
    size_t drop = static_cast<size_t>(std::min<uint64_t>(skip_, buffered()));
    skip_ -= drop;
    pos_ += drop;
    if (skip_ > 0) return Result::kNeedMore;
  }
  if (buffered() < kHeaderSize) {
    Compact();
    return Result::kNeedMore;
  }
  const FrameHeader h = DecodeHeader(reinterpret_cast<const uint8_t*>(buf_.data() + pos_));
  if (h.length > max_payload_) {
    pos_ += kHeaderSize;
    skip_ = h.length;
    size_t drop = static_cast<size_t>(std::min<uint64_t>(skip_, buffered()));
    skip_ -= drop;
    pos_ += drop;
    Compact();
    frame->header = h;
    frame->payload.clear();
    return Result::kOversized;
  }
  if (buffered() - kHeaderSize < h.length) return Result::kNeedMore;
  frame->header = h;
  frame->payload.assign(buf_, pos_ + kHeaderSize, h.length);
  pos_ += kHeaderSize + h.length;
  Compact();
  return Result::kFrame;
}

}  // namespace gvshim::ttrpc
