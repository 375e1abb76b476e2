#include "shim/gateway/rate_limit.h"

#include <regex>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace gvshim::gateway {
namespace {

absl::Duration Granularity(const std::string& unit) {
  if (unit == "second") return absl::Seconds(1);
  if (unit == "minute") return absl::Minutes(1);
  if (unit == "hour") return absl::Hours(1);
  if (unit == "day") return absl::Hours(24);
  if (unit == "month") return absl::Hours(24 * 30);
  return absl::Hours(24 * 30 * 12);  // year
}

}  // namespace

absl::StatusOr<std::vector<Rate>> ParseRates(absl::string_view text) {
  // The `limits` library's grammar for one rate: amount, "/" or "per", an optional multiple, a unit with an
  // optional plural "s", spaces anywhere between.
  static const std::regex kOne(
      R"(\s*([0-9]+)\s*(?:/|\s*per\s*)\s*([0-9]+)?\s*(hour|minute|second|day|month|year)s?\s*)",
      std::regex::icase);
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat("cannot parse rate limit \"", text,
                                                   "\" (want e.g. 3/minute, 10 per hour, 5/2 seconds)"));
  };
  std::vector<Rate> rates;
  for (absl::string_view part : absl::StrSplit(text, absl::ByAnyChar(",;|"))) {
    std::smatch m;
    std::string p(part);
    if (!std::regex_match(p, m, kOne)) return bad();
    Rate r;
    uint64_t multiples = 1;
    if (!absl::SimpleAtoi(m[1].str(), &r.amount)) return bad();
    if (m[2].matched && (!absl::SimpleAtoi(m[2].str(), &multiples) || multiples == 0)) multiples = 1;
    r.window = Granularity(absl::AsciiStrToLower(m[3].str())) * static_cast<int64_t>(multiples);
    rates.push_back(r);
  }
  if (rates.empty()) return bad();
  return rates;
}

bool FixedWindowLimiter::Hit(const std::string& key) {
  absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  if (windows_.size() > kMaxTrackedClients) {
    for (auto it = windows_.begin(); it != windows_.end();) {
      it = it->second.expires <= now ? windows_.erase(it) : std::next(it);
    }
  }
  bool allowed = true;
  for (size_t i = 0; i < rates_.size(); ++i) {
    Window& w = windows_[{i, key}];
    if (w.count == 0 || w.expires <= now) w = Window{now + rates_[i].window, 0};
    ++w.count;
    if (w.count > rates_[i].amount) {
      allowed = false;
      break;  // slowapi stops at the first rate that refuses
    }
  }
  return allowed;
}

bool SlidingWindowLimiter::Hit(const std::string& key) {
  absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  std::deque<absl::Time>& window = hits_[key];
  absl::Time cutoff = now - rate_.window;
  while (!window.empty() && window.front() <= cutoff) window.pop_front();
  if (window.size() >= rate_.amount) return false;
  window.push_back(now);
  if (hits_.size() > kMaxTrackedClients) {
    for (auto it = hits_.begin(); it != hits_.end();) {
      it = it->second.empty() || it->second.back() <= cutoff ? hits_.erase(it) : std::next(it);
    }
  }
  return true;
}

}  // namespace gvshim::gateway
