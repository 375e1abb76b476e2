#include "shim/gateway/rate_limit.h"

#include <gtest/gtest.h>

namespace gvshim::gateway {
namespace {

struct FakeClock {
  absl::Time now = absl::FromUnixSeconds(1000000);
  Clock fn() {
    return [this] { return now; };
  }
};

TEST(RateLimit, ParsesTheLimitsNotation) {
  auto one = [](const char* s) {
    auto r = ParseRates(s);
    EXPECT_TRUE(r.ok()) << s << ": " << r.status();
    return r.ok() && r->size() == 1 ? (*r)[0] : Rate{};
  };
  EXPECT_EQ(one("3/minute"), (Rate{3, absl::Minutes(1)}));
  EXPECT_EQ(one("3 per minute"), (Rate{3, absl::Minutes(1)}));
  EXPECT_EQ(one(" 10 / Hour "), (Rate{10, absl::Hours(1)}));
  EXPECT_EQ(one("5/2 seconds"), (Rate{5, absl::Seconds(2)}));
  EXPECT_EQ(one("1/day"), (Rate{1, absl::Hours(24)}));
  EXPECT_EQ(one("1/month"), (Rate{1, absl::Hours(24 * 30)}));
  EXPECT_EQ(one("1/year"), (Rate{1, absl::Hours(24 * 360)}));
  EXPECT_EQ(one("120/minutes"), (Rate{120, absl::Minutes(1)}));
  auto many = ParseRates("1/second;100/day,5|minute");
  EXPECT_FALSE(many.ok());  // "5" alone is not a rate
  many = ParseRates("1/second; 100/day");
  ASSERT_TRUE(many.ok());
  EXPECT_EQ(many->size(), 2u);
  for (const char* bad : {"", "3", "minute", "3/fortnight", "-1/minute", "3/minute/extra", "three/minute"}) {
    EXPECT_FALSE(ParseRates(bad).ok()) << bad;
  }
}

TEST(RateLimit, FixedWindowStartsAtTheFirstHit) {
  FakeClock clock;
  FixedWindowLimiter l({Rate{3, absl::Minutes(1)}}, clock.fn());
  EXPECT_TRUE(l.Hit("a"));
  clock.now += absl::Seconds(30);
  EXPECT_TRUE(l.Hit("a"));
  EXPECT_TRUE(l.Hit("a"));
  EXPECT_FALSE(l.Hit("a"));
  EXPECT_TRUE(l.Hit("b"));  // per client
  clock.now += absl::Seconds(29);
  EXPECT_FALSE(l.Hit("a"));  // still the first window (started 59 s ago)
  clock.now += absl::Seconds(1);
  EXPECT_TRUE(l.Hit("a"));  // a new window
}

TEST(RateLimit, FixedWindowEveryRateApplies) {
  FakeClock clock;
  FixedWindowLimiter l({Rate{2, absl::Seconds(1)}, Rate{3, absl::Minutes(1)}}, clock.fn());
  EXPECT_TRUE(l.Hit("a"));
  EXPECT_TRUE(l.Hit("a"));
  EXPECT_FALSE(l.Hit("a"));  // 2/second
  clock.now += absl::Seconds(1);
  EXPECT_TRUE(l.Hit("a"));  // third of the minute
  clock.now += absl::Seconds(1);
  EXPECT_FALSE(l.Hit("a"));  // 3/minute
}

TEST(RateLimit, SlidingWindowDoesNotRecordRefusals) {
  FakeClock clock;
  SlidingWindowLimiter l(Rate{3, absl::Minutes(1)}, clock.fn());
  EXPECT_TRUE(l.Hit("a"));  // t=0
  clock.now += absl::Seconds(20);
  EXPECT_TRUE(l.Hit("a"));  // t=20
  clock.now += absl::Seconds(20);
  EXPECT_TRUE(l.Hit("a"));  // t=40
  EXPECT_FALSE(l.Hit("a"));
  clock.now += absl::Seconds(19);
  EXPECT_FALSE(l.Hit("a"));  // t=59: all three still inside
  clock.now += absl::Seconds(1);
  EXPECT_TRUE(l.Hit("a"));  // t=60: the first one left the window
  EXPECT_FALSE(l.Hit("a"));
  EXPECT_TRUE(l.Hit("b"));
}

TEST(RateLimit, ZeroAmountRefusesEverything) {
  FakeClock clock;
  FixedWindowLimiter l({Rate{0, absl::Minutes(1)}}, clock.fn());
  EXPECT_FALSE(l.Hit("a"));
}

}  // namespace
}  // namespace gvshim::gateway
