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

TEST_F(SocketTest, DialOfNothingIsUnavailableAndNamesThePath) {
  const std::string missing = dir_ + "/missing.sock";
  auto d = DialUnix(missing, absl::Seconds(1));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kUnavailable) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr(missing));
  EXPECT_THAT(d.status().message(), HasSubstr("nobody listens"));
  // A socket file whose server is gone is refused, with the same answer.
  const std::string stale = dir_ + "/stale.sock";
  ASSERT_TRUE(ListenUnix(stale, 0600).ok());  // closed at once; the file stays
  ASSERT_TRUE(std::filesystem::exists(stale));
  d = DialUnix("unix://" + stale, absl::Seconds(1));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kUnavailable) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr(stale));
}

// sun_path is 108 bytes and a path needs its NUL: 107 bytes is the longest that works, 108 is refused with an
// error that says so (not truncated to a different path).
TEST_F(SocketTest, PathLengthLimitIs107Bytes) {
  const std::string prefix = dir_ + "/";
  const std::string longest = prefix + std::string(107 - prefix.size(), 'a');
  const std::string too_long = prefix + std::string(108 - prefix.size(), 'b');
  ASSERT_EQ(longest.size(), 107u);
  auto ok = ListenUnix(longest, 0600);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(Accepts(*ok, longest));

  auto l = ListenUnix(too_long, 0600);
  EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument) << l.status();
  EXPECT_THAT(l.status().message(), HasSubstr("socket path too long (108 bytes"));
  EXPECT_THAT(l.status().message(), HasSubstr(too_long));
  EXPECT_FALSE(std::filesystem::exists(too_long));
  auto d = DialUnix(too_long, absl::Seconds(1));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
  EXPECT_THAT(d.status().message(), HasSubstr("too long"));
  EXPECT_EQ(ClaimUnixSocket(too_long, 0600).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DialUnix("", absl::Seconds(1)).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SocketTest, ListenInAMissingDirectoryNamesThePathAndTheDirectory) {
  const std::string missing_dir = dir_ + "/no/such/dir";
  const std::string path = missing_dir + "/x.sock";
  auto l = ListenUnix(path, 0600);
  EXPECT_EQ(l.status().code(), absl::StatusCode::kNotFound) << l.status();
  EXPECT_THAT(l.status().message(), HasSubstr("listen " + path));
  EXPECT_THAT(l.status().message(), HasSubstr("directory " + missing_dir + " does not exist"));
  auto c = ClaimUnixSocket(path, 0600);
  EXPECT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr(path));
}

// "@name" is a name in the abstract namespace: no file appears, the kernel keeps the name exclusive and frees
// it with the last fd, and the helpers that need a file refuse it instead of pretending to set a mode.
TEST_F(SocketTest, AbstractSockets) {
  // Unique per run: the abstract namespace is shared by every process in the network namespace.
  const std::string name = absl::StrCat("@gvshim-test-", ::getpid(), dir_);
  {
    auto l = ListenAbstract(name);
    ASSERT_TRUE(l.ok()) << l.status();
    EXPECT_TRUE(Accepts(*l, name));
    EXPECT_TRUE(DialUnix("unix://" + name, absl::Seconds(5)).ok());
    EXPECT_FALSE(std::filesystem::exists(name.substr(1)));  // nothing in the filesystem
    auto again = ListenAbstract(name);
    EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists) << again.status();
    EXPECT_THAT(again.status().message(), HasSubstr(name));
  }
  // Closed: the name is free again at once, and nobody listens on it.
  auto d = DialUnix(name, absl::Seconds(1));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kUnavailable) << d.status();
  EXPECT_TRUE(ListenAbstract(name).ok());

  EXPECT_EQ(ListenUnix(name, 0600).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ClaimUnixSocket(name, 0600).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ListenAbstract(dir_ + "/p.sock").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ListenAbstract("@").status().code(), absl::StatusCode::kInvalidArgument);
  // An abstract name may use all 107 bytes after the leading NUL, not one more.
  const std::string longest = name + std::string(108 - name.size(), 'n');
  ASSERT_EQ(longest.size(), 108u);
  auto l = ListenAbstract(longest);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_TRUE(Accepts(*l, longest));
  auto too_long = ListenAbstract(longest + "n");
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument) << too_long.status();
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

// ClaimUnixPath: the same claim for a listener a library binds (gRPC). Its bind runs after a stale socket was
// removed, and not at all while a live server has the path (that server's socket file is left alone).
TEST_F(SocketTest, ClaimPathBindsOnlyWhereNobodyServes) {
  const std::string path = dir_ + "/lib.sock";
  {
    auto dead = ListenUnix(path, 0600);
    ASSERT_TRUE(dead.ok());
  }  // closed: the file stays, nobody serves it
  UniqueFd lib;
  int binds = 0;
  auto bind = [&]() -> absl::Status {
    ++binds;
    auto l = ListenUnix(path, 0600);  // fails (ALREADY_EXISTS) unless the stale file was removed first
    if (!l.ok()) return l.status();
    lib = std::move(*l);
    return absl::OkStatus();
  };
  auto first = ClaimUnixPath(path, bind);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(*first);
  EXPECT_EQ(binds, 1);
  struct stat live;
  ASSERT_EQ(::stat(path.c_str(), &live), 0);
  auto second = ClaimUnixPath(path, bind);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(*second);  // served: bind not called, the live socket kept
  EXPECT_EQ(binds, 1);
  struct stat after;
  ASSERT_EQ(::stat(path.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, live.st_ino);
  EXPECT_TRUE(Accepts(lib, path));
  // A bind that fails is the claim's error.
  lib.reset();
  auto failed = ClaimUnixPath(path, [] { return absl::InternalError("library could not bind"); });
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kInternal) << failed.status();
}

// A live owner that is slow to accept (its backlog is full) is not stale: claiming its path must fail, naming
// the path, and leave its socket file in place, still reaching the owner.
TEST_F(SocketTest, ClaimRefusesALiveButBusyOwner) {
  const std::string path = dir_ + "/busy.sock";
  auto owner = ListenUnix(path, 0600, /*nonblocking=*/false, /*backlog=*/0);
  ASSERT_TRUE(owner.ok()) << owner.status();
  struct stat before;
  ASSERT_EQ(::stat(path.c_str(), &before), 0);
  // The owner never accepts: fill its backlog until a dial is no longer accepted in time.
  std::vector<UniqueFd> queued;
  absl::Status last;
  for (int i = 0; i < 64; ++i) {
    auto c = DialUnix(path, absl::Milliseconds(100));
    if (!c.ok()) {
      last = c.status();
      break;
    }
    queued.push_back(std::move(*c));
  }
  ASSERT_EQ(last.code(), absl::StatusCode::kDeadlineExceeded) << last;
  ASSERT_FALSE(queued.empty());

  auto claim = ClaimUnixSocket(path, 0600, absl::Milliseconds(200));
  EXPECT_EQ(claim.status().code(), absl::StatusCode::kUnavailable)
      << (claim.ok() ? "claimed (removed the live owner's socket)" : claim.status().ToString());
  EXPECT_THAT(claim.status().message(), HasSubstr(path));
  EXPECT_THAT(claim.status().message(), HasSubstr("did not accept"));
  struct stat after;
  ASSERT_EQ(::stat(path.c_str(), &after), 0) << "the live owner's socket file was removed";
  EXPECT_EQ(after.st_ino, before.st_ino) << "the live owner's socket file was replaced";
  // Still the owner's: once it accepts one queued connection, a new dial reaches it again.
  UniqueFd accepted(::accept4(owner->get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(accepted.valid());
  EXPECT_TRUE(DialUnix(path, absl::Seconds(5)).ok());
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
