// Unix socket helpers: listen with a mode, dial, and claiming a socket path once among concurrent claimers.
#include "shim/sys/socket.h"

#include <poll.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/barrier.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace gvshim::sys {
namespace {

using ::testing::HasSubstr;

class SocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gvsock-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  // True when a connection to `path` is pending on `listener` within a few seconds.
  static bool Accepts(const UniqueFd& listener, const std::string& path) {
    auto client = DialUnix(path, absl::Seconds(5));
    if (!client.ok()) return false;
    pollfd p = {listener.get(), POLLIN, 0};
    return ::poll(&p, 1, 5000) == 1;
  }
  std::string dir_;
};

TEST_F(SocketTest, ListenSetsTheModeAndDialConnects) {
  const std::string path = dir_ + "/a.sock";
  auto l = ListenUnix(path, 0600);
  ASSERT_TRUE(l.ok()) << l.status();
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(Accepts(*l, path));
  EXPECT_TRUE(DialUnix("unix://" + path, absl::Seconds(5)).ok());
  // An existing path is not replaced.
  EXPECT_FALSE(ListenUnix(path, 0600).ok());
}

TEST_F(SocketTest, DialOfNothingIsUnavailable) {
  auto d = DialUnix(dir_ + "/missing.sock", absl::Seconds(1));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kUnavailable) << d.status();
  auto too_long = DialUnix(dir_ + "/" + std::string(200, 'x'), absl::Seconds(1));
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_long.status().message(), HasSubstr("too long"));
}

TEST_F(SocketTest, ClaimReplacesAStaleSocketButNotALiveOne) {
  const std::string path = dir_ + "/s.sock";
  {
    auto dead = ListenUnix(path, 0600);
    ASSERT_TRUE(dead.ok());
  }  // closed: the file stays, nobody serves it
  auto first = ClaimUnixSocket(path, 0600);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(first->valid());
  auto second = ClaimUnixSocket(path, 0600);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->valid());  // served already
  EXPECT_TRUE(Accepts(*first, path));
}

TEST_F(SocketTest, ClaimRefusesToRemoveAFileThatIsNotASocket) {
  const std::string path = dir_ + "/f";
  std::ofstream(path) << "data";
  auto c = ClaimUnixSocket(path, 0600);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition) << c.status();
  EXPECT_TRUE(std::filesystem::exists(path));
}

// Two `start`s for one pod at once must not both listen: one would remove the other's live socket file, and
// containerd would be told an address whose server is gone. Many rounds of 8 concurrent claims of a fresh
// path: exactly one listener each time, and it is the one the path reaches.
TEST_F(SocketTest, ConcurrentClaimsOfOnePathMakeExactlyOneServer) {
  constexpr int kThreads = 8, kRounds = 100;
  for (int round = 0; round < kRounds; ++round) {
    const std::string path = absl::StrCat(dir_, "/r", round, ".sock");
    std::vector<UniqueFd> got(kThreads);
    std::atomic<int> errors{0};
    absl::Barrier* start = new absl::Barrier(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        if (start->Block()) delete start;
        auto c = ClaimUnixSocket(path, 0600);
        if (c.ok()) {
          got[t] = std::move(*c);
        } else {
          errors++;
        }
      });
    }
    for (auto& th : threads) th.join();
    int listeners = 0;
    const UniqueFd* winner = nullptr;
    for (const UniqueFd& fd : got) {
      if (fd.valid()) {
        ++listeners;
        winner = &fd;
      }
    }
    ASSERT_EQ(errors.load(), 0) << "round " << round;
    ASSERT_EQ(listeners, 1) << "round " << round << ": " << listeners << " claimers listen on " << path;
    ASSERT_TRUE(Accepts(*winner, path)) << "round " << round << ": the path does not reach the listener";
  }
}

}  // namespace
}  // namespace gvshim::sys
