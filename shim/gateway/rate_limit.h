// Per-client rate limits of POST /run, as RAGFlow's executor manager applies them: the execution quota
// (slowapi + limits, fixed windows, SANDBOX_RUN_RATE_LIMIT) and the pre-authentication limit (a sliding
// window, SANDBOX_RUN_PREAUTH_RATE_LIMIT). Rates use the `limits` library's notation ("3/minute", "10 per 2
// hours", "1/second;100/day"). The clock is injected so tests control time.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace gvshim::gateway {

struct Rate {
  uint64_t amount = 0;
  absl::Duration window;  // granularity seconds x multiples (a month is 30 days, a year 360)

  bool operator==(const Rate& o) const { return amount == o.amount && window == o.window; }
};

// Parses one or more rates separated by ',', ';' or '|'. INVALID_ARGUMENT names the text.
absl::StatusOr<std::vector<Rate>> ParseRates(absl::string_view text);

using Clock = std::function<absl::Time()>;

// Keys that have not been seen for longer than their window are forgotten once more than this many are held.
inline constexpr size_t kMaxTrackedClients = 10000;

// slowapi's fixed-window strategy over several rates: a window starts at a client's first hit and lasts the
// rate's window; a hit is allowed while the window's count (this hit included) is within the amount of every
// rate. Counts increase on every hit, allowed or not, as the `limits` memory storage does.
class FixedWindowLimiter {
 public:
  FixedWindowLimiter(std::vector<Rate> rates, Clock clock)
      : rates_(std::move(rates)), clock_(std::move(clock)) {}
  bool Hit(const std::string& key);

 private:
  struct Window {
    absl::Time expires;
    uint64_t count = 0;
  };
  const std::vector<Rate> rates_;
  const Clock clock_;
  absl::Mutex mu_;
  std::map<std::pair<size_t, std::string>, Window> windows_ ABSL_GUARDED_BY(mu_);
};

// RAGFlow's pre-auth limiter: per key, the times of the last allowed hits within the window; a hit is refused
// when `amount` of them are still inside it, and a refused hit is not recorded.
class SlidingWindowLimiter {
 public:
  SlidingWindowLimiter(Rate rate, Clock clock) : rate_(rate), clock_(std::move(clock)) {}
  bool Hit(const std::string& key);

 private:
  const Rate rate_;
  const Clock clock_;
  absl::Mutex mu_;
  std::map<std::string, std::deque<absl::Time>> hits_ ABSL_GUARDED_BY(mu_);
};

}  // namespace gvshim::gateway
