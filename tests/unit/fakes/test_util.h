// Small helpers shared by the unit tests.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace gvshim::testing {

// The whole file, or "" if it cannot be read.
inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Polls cond every 10 ms until it holds or the timeout passes; returns its last value.
inline bool WaitFor(const std::function<bool()>& cond, absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    if (cond()) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return cond();
}

// Follows a child process that reports its own pid: put `echo $$ > PATH` (PATH = fifo()) in its shell command
// before it execs the long-running part; Await() reads the pid and holds a pidfd on the process, so Exited()
// answers for that very process even after its pid is reused.
class PidReport {
 public:
  explicit PidReport(const std::string& dir) : fifo_(dir + "/pid.fifo") {
    ok_ = ::mkfifo(fifo_.c_str(), 0600) == 0;
    // Non-blocking: the open does not wait for the writer, and poll waits (bounded) for the pid.
    fd_ = ok_ ? ::open(fifo_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC) : -1;
  }
  ~PidReport() {
    if (fd_ >= 0) ::close(fd_);
    if (pidfd_ >= 0) ::close(pidfd_);
    ::unlink(fifo_.c_str());
  }
  const std::string& fifo() const { return fifo_; }
  // Waits until the child wrote its pid (and the pidfd is open); false on timeout or error.
  bool Await(absl::Duration timeout = absl::Seconds(20)) {
    if (fd_ < 0) return false;
    std::string text;
    const absl::Time end = absl::Now() + timeout;
    while (text.find('\n') == std::string::npos) {
      pollfd p = {fd_, POLLIN, 0};
      int ms = static_cast<int>(absl::ToInt64Milliseconds(end - absl::Now()));
      if (ms <= 0 || ::poll(&p, 1, ms) <= 0) return false;
      char buf[32];
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n > 0) text.append(buf, static_cast<size_t>(n));
    }
    pid_ = std::atoi(text.c_str());
    pidfd_ = pid_ > 0 ? static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)) : -1;
    return pidfd_ >= 0;
  }
  pid_t pid() const { return pid_; }
  // True once the process has exited (its pidfd polls readable).
  bool Exited() const {
    pollfd p = {pidfd_, POLLIN, 0};
    return pidfd_ >= 0 && ::poll(&p, 1, 0) == 1;
  }

 private:
  std::string fifo_;
  bool ok_ = false;
  int fd_ = -1;
  pid_t pid_ = 0;
  int pidfd_ = -1;
};

}  // namespace gvshim::testing
