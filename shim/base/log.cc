#include "shim/base/log.h"

#include <unistd.h>

#include <atomic>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace gvshim::log {
namespace {
std::atomic<int> g_fd{STDERR_FILENO};
std::atomic<Level> g_level{Level::kInfo};

const char* LevelName(Level l) {
  switch (l) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warning";
    case Level::kError:
      return "error";
  }
  return "info";
}
}  // namespace

void SetOutputFd(int fd) { g_fd.store(fd); }
int OutputFd() { return g_fd.load(); }
void SetLevel(Level level) { g_level.store(level); }
Level GetLevel() { return g_level.load(); }

bool ParseLevel(absl::string_view text, Level* out) {
  if (text == "debug" || text == "trace") {
    *out = Level::kDebug;
  } else if (text == "info") {
    *out = Level::kInfo;
  } else if (text == "warn" || text == "warning") {
    *out = Level::kWarn;
  } else if (text == "error") {
    *out = Level::kError;
  } else {
    return false;
  }
  return true;
}

void Write(Level level, absl::string_view message) {
  std::string escaped = absl::StrReplaceAll(message, {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", "\\n"}});
  std::string line =
      absl::StrCat("time=\"", absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::Now(), absl::UTCTimeZone()),
                   "\" level=", LevelName(level), " msg=\"", escaped, "\" runtime=io.containerd.gvisor.v1\n");
  // One write() per line so concurrent writers do not interleave within a line (fifo writes <= PIPE_BUF).
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(g_fd.load(), p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // Nowhere left to report a logging failure.
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace gvshim::log
