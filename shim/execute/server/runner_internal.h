// Helpers shared by runner.cc and runner_io.cc (not part of the Runner API).
#pragma once

#include <sys/wait.h>

#include <cstddef>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"

namespace gvshim::execute::runner_internal {

inline constexpr size_t kMaxFrame = 64 << 20;  // as the runners
inline constexpr size_t kStderrTail = 4096;

inline std::string DescribeWait(int ws) {
  if (WIFSIGNALED(ws)) return absl::StrCat("was killed by signal ", WTERMSIG(ws));
  if (WIFEXITED(ws)) return absl::StrCat("exited with code ", WEXITSTATUS(ws));
  return absl::StrCat("ended (wait status ", ws, ")");
}

// The result frame of a job its runner could not answer.
inline nlohmann::json InternalErrorResult(const std::string& id, const std::string& error) {
  return nlohmann::json{{"type", "result"},     {"id", id},          {"status", "internal_error"},
                        {"exit_code", nullptr}, {"signal", nullptr}, {"stdout", ""},
                        {"stderr", ""},         {"error", error}};
}

// The end of the runner's stderr (at most 1 KiB), for one-line messages.
inline std::string TailForMessage(const std::string& tail) {
  std::string t(absl::StripTrailingAsciiWhitespace(tail));
  if (t.size() > 1024) t = "..." + t.substr(t.size() - 1024);
  return t;
}

}  // namespace gvshim::execute::runner_internal
