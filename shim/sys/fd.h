// RAII owner of a file descriptor. Every fd the shim opens has exactly one UniqueFd owner.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <string>
#include <utility>

#include "absl/status/statusor.h"

namespace gvshim::sys {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

struct PipePair {
  UniqueFd read;
  UniqueFd write;
};

// pipe2(flags); O_CLOEXEC by default.
absl::StatusOr<PipePair> MakePipe(int flags = O_CLOEXEC);

// Sets O_NONBLOCK on fd (one end of a pipe, say), keeping its other status flags.
absl::Status SetNonBlocking(int fd);

// Duplicates fd with F_DUPFD_CLOEXEC.
absl::StatusOr<UniqueFd> Dup(int fd);

// Write(2) on a pipe whose reader may be gone: while it lives, SIGPIPE is blocked in this thread, and on
// destruction a SIGPIPE that a write raised meanwhile is consumed (not one that was pending before), so the
// write fails with EPIPE instead of ending the process (the shim ignores SIGPIPE, but a library must not rely
// on it).
class ScopedSigpipeGuard {
 public:
  ScopedSigpipeGuard();
  ~ScopedSigpipeGuard();
  ScopedSigpipeGuard(const ScopedSigpipeGuard&) = delete;
  ScopedSigpipeGuard& operator=(const ScopedSigpipeGuard&) = delete;

 private:
  sigset_t old_;
};

// Writes all of data, retrying on EINTR and short writes.
absl::Status WriteAll(int fd, const void* data, size_t size);
// Reads exactly size bytes. Clean EOF before any byte: NOT_FOUND; EOF part-way: OUT_OF_RANGE.
absl::Status ReadFull(int fd, void* data, size_t size);
// Reads until EOF (at most max bytes; the rest is drained and discarded).
absl::StatusOr<std::string> ReadAll(int fd, size_t max = 16 << 20);

}  // namespace gvshim::sys
