// The runner -> server half of the frame protocol, as pure functions: what a runner process writes on its
// stdout (a 4-byte big-endian length, then a JSON object) split into frames and decoded. The runner runs
// inside the pod's sandbox next to untrusted snippets, so every byte here is treated as hostile: a malformed
// frame is a protocol error (the server kills that runner), never a crash. Used by runner_io.cc's I/O thread.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace gvshim::execute {

// Splits every complete frame off the front of `*buf` and hands its body to `handle`, which returns a
// protocol error ("" for none). Stops at the first error — a length over `max_frame` ("a frame of N bytes")
// or one `handle` returned — and returns it; "" otherwise. An incomplete frame stays in `*buf` for the next
// read.
std::string SplitRunnerFrames(std::string* buf, size_t max_frame,
                              const std::function<std::string(const std::string& body)>& handle);

struct RunnerFrame {
  std::string type;     // "ready", "result", "output", "pong", "error" or one the server ignores
  std::string id;       // the job's (or ping's) id; "" when absent or not a string
  nlohmann::json json;  // the whole frame (a result frame is the job's result)
  // "ready": what the runner says about itself, for the log.
  std::string runner, version;
  int pid = 0;
  // "output": a chunk of a job's output, decoded from base64.
  bool to_stderr = false;
  std::string data;
  // "error": the runner's message.
  std::string message;
};

// Frames nest a few levels; copying a parsed document (the ready frame's isolation object is) recurses once
// per level, so deeper nesting is a protocol error rather than a stack overflow in the server.
inline constexpr int kMaxRunnerFrameDepth = 64;

// Decodes one frame body. INVALID_ARGUMENT with the protocol error as message: "a frame that is not a JSON
// object", "a frame nested deeper than 64 levels", "an output frame with invalid base64".
absl::StatusOr<RunnerFrame> DecodeRunnerFrame(const std::string& body);

}  // namespace gvshim::execute
