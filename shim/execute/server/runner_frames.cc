#include "shim/execute/server/runner_frames.h"

#include <climits>
#include <cstdint>

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "shim/base/json_depth.h"

namespace gvshim::execute {

std::string SplitRunnerFrames(std::string* buf, size_t max_frame,
                              const std::function<std::string(const std::string& body)>& handle) {
  std::string protocol_error;
  size_t off = 0;
  while (buf->size() - off >= 4 && protocol_error.empty()) {
    const auto* b = reinterpret_cast<const unsigned char*>(buf->data() + off);
    const size_t len = (size_t{b[0]} << 24) | (size_t{b[1]} << 16) | (size_t{b[2]} << 8) | size_t{b[3]};
    if (len > max_frame) {
      protocol_error = absl::StrFormat("a frame of %d bytes", len);
      break;
    }
    if (buf->size() - off - 4 < len) break;
    std::string err = handle(buf->substr(off + 4, len));
    if (!err.empty()) protocol_error = std::move(err);
    off += 4 + len;
  }
  buf->erase(0, off);
  return protocol_error;
}

absl::StatusOr<RunnerFrame> DecodeRunnerFrame(const std::string& body) {
  RunnerFrame f;
  try {
    f.json = nlohmann::json::parse(body, DepthLimit(kMaxRunnerFrameDepth), /*allow_exceptions=*/false);
  } catch (const JsonTooDeep&) {
    return absl::InvalidArgumentError(
        absl::StrFormat("a frame nested deeper than %d levels", kMaxRunnerFrameDepth));
  }
  if (f.json.is_discarded() || !f.json.is_object()) {
    return absl::InvalidArgumentError("a frame that is not a JSON object");
  }
  auto str = [&](const char* key) -> std::string {
    auto it = f.json.find(key);
    return it != f.json.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  f.type = str("type");
  f.id = str("id");
  if (f.type == "ready") {
    f.runner = str("runner");
    f.version = str("version");
    // Only logged. Not json::value("pid", 0): it throws on a pid that is not a number (an uncaught exception
    // in the I/O thread ended the server) and converts a huge number to int with undefined behaviour.
    if (auto pid = f.json.find("pid"); pid != f.json.end()) {
      if (pid->is_number_unsigned()) {
        if (const uint64_t v = pid->get<uint64_t>(); v <= INT_MAX) f.pid = static_cast<int>(v);
      } else if (pid->is_number_integer()) {
        if (const int64_t v = pid->get<int64_t>(); v >= INT_MIN && v <= INT_MAX) f.pid = static_cast<int>(v);
      }
    }
  } else if (f.type == "output") {
    if (!absl::Base64Unescape(str("data"), &f.data)) {
      return absl::InvalidArgumentError("an output frame with invalid base64");
    }
    f.to_stderr = str("stream") == "stderr";
  } else if (f.type == "error") {
    f.message = str("message");
  }
  return f;
}

}  // namespace gvshim::execute
