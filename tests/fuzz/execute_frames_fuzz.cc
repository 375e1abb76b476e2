// Feeds arbitrary bytes, in input-chosen chunks, as a runner's stdout to the Execute server's frame splitter
// and decoder (shim/execute/server/runner_frames.h, what runner_io.cc's I/O thread runs on every read). The
// runner shares its sandbox with untrusted snippets, so its frames are hostile input. Checked beyond "no
// crash and no uncaught exception": the splitter hands over exactly the bodies the length fields announce,
// keeps only an incomplete frame buffered, stops at the first protocol error, and a second splitter with a
// small limit refuses every longer frame.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "shim/execute/server/runner_frames.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

size_t LengthAt(const std::string& buf) {
  const auto* b = reinterpret_cast<const unsigned char*>(buf.data());
  return (size_t{b[0]} << 24) | (size_t{b[1]} << 16) | (size_t{b[2]} << 8) | size_t{b[3]};
}

// One reader: feeds the chunks, decodes every frame, stops at the first protocol error as the I/O thread
// does.
void Read(const uint8_t* data, size_t size, size_t chunk, size_t max_frame) {
  std::string buf;
  std::string error;
  for (size_t off = 0; off < size && error.empty(); off += chunk) {
    buf.append(reinterpret_cast<const char*>(data + off), std::min(chunk, size - off));
    error = gvshim::execute::SplitRunnerFrames(&buf, max_frame, [&](const std::string& body) -> std::string {
      Check(body.size() <= max_frame);
      auto frame = gvshim::execute::DecodeRunnerFrame(body);
      if (!frame.ok()) {
        Check(!frame.status().message().empty());
        return std::string(frame.status().message());
      }
      Check(frame->json.is_object());
      if (frame->type != "output") Check(frame->data.empty());
      return "";
    });
    if (!error.empty()) break;
    // What stays buffered is one incomplete frame.
    if (buf.size() >= 4) Check(buf.size() - 4 < LengthAt(buf) && LengthAt(buf) <= max_frame);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t chunk = static_cast<size_t>(data[0] % 64) + 1;
  Read(data + 1, size - 1, chunk, size_t{64} << 20);
  Read(data + 1, size - 1, chunk, 48);
  return 0;
}
