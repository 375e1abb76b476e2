// Process-wide logging. The shim daemon logs to the `log` fifo of its bundle, which containerd copies into
// its own log; tools log to stderr. Lines are logfmt (time=… level=… msg=…), like the rest of containerd's
// output.
#pragma once

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace gvshim::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Sends log lines to `fd` (not owned; must stay open). Default: stderr.
void SetOutputFd(int fd);
int OutputFd();
void SetLevel(Level level);
Level GetLevel();
// Parses "debug", "info", "warn", "error"; returns false for anything else.
bool ParseLevel(absl::string_view text, Level* out);

void Write(Level level, absl::string_view message);

template <typename... Args>
void Debugf(const absl::FormatSpec<Args...>& fmt, const Args&... args) {
  if (GetLevel() <= Level::kDebug) Write(Level::kDebug, absl::StrFormat(fmt, args...));
}
template <typename... Args>
void Infof(const absl::FormatSpec<Args...>& fmt, const Args&... args) {
  if (GetLevel() <= Level::kInfo) Write(Level::kInfo, absl::StrFormat(fmt, args...));
}
template <typename... Args>
void Warnf(const absl::FormatSpec<Args...>& fmt, const Args&... args) {
  if (GetLevel() <= Level::kWarn) Write(Level::kWarn, absl::StrFormat(fmt, args...));
}
template <typename... Args>
void Errorf(const absl::FormatSpec<Args...>& fmt, const Args&... args) {
  Write(Level::kError, absl::StrFormat(fmt, args...));
}

}  // namespace gvshim::log
