#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "gvshim/ttrpc/v1/ttrpc.pb.h"
#include "shim/sys/fd.h"
#include "shim/sys/socket.h"
#include "shim/ttrpc/client.h"
#include "shim/ttrpc/frame.h"
#include "shim/ttrpc/server.h"
#include "shim/ttrpc/status.h"

namespace gvshim::ttrpc {
namespace {

using ::testing::HasSubstr;

constexpr char kService[] = "test.v1.Echo";

size_t CountEntries(const char* dir) {
  size_t n = 0;
  DIR* d = ::opendir(dir);
  if (d == nullptr) return 0;
  while (struct dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n;
}

std::string RequestBytes(const std::string& service, const std::string& method, const std::string& payload) {
  v1::Request req;
  req.set_service(service);
  req.set_method(method);
  req.set_payload(payload);
  return req.SerializeAsString();
}

// A client speaking raw bytes, for malformed input.
class RawConn {
 public:
  explicit RawConn(const std::string& path) {
    auto fd = sys::DialUnix(path, absl::Seconds(20));
    connected_ = fd.ok();
    if (connected_) fd_ = std::move(*fd);
    // Safety net so a server bug fails the test instead of hanging it; not used for synchronisation.
    timeval tv{20, 0};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  bool connected() const { return connected_; }
  void Send(absl::string_view bytes) {
    ASSERT_TRUE(sys::WriteAll(fd_.get(), bytes.data(), bytes.size()).ok());
  }
  void SendHeader(uint32_t length, uint32_t stream, uint8_t type) {
    uint8_t h[kHeaderSize];
    EncodeHeader({length, stream, type, 0}, h);
    Send(absl::string_view(reinterpret_cast<char*>(h), kHeaderSize));
  }
  // Reads one frame. NOT_FOUND: the server closed the connection.
  absl::StatusOr<Frame> ReadFrame() {
    uint8_t h[kHeaderSize];
    absl::Status s = sys::ReadFull(fd_.get(), h, kHeaderSize);
    if (s.code() == absl::StatusCode::kInternal || s.code() == absl::StatusCode::kUnavailable) {
      return absl::NotFoundError("reset");  // ECONNRESET counts as closed
    }
    if (!s.ok()) return s;
    Frame f{DecodeHeader(h), std::string()};
    if (f.header.length > kMaxPayload) return absl::DataLossError("oversized response");
    f.payload.resize(f.header.length);
    if (f.header.length > 0) {
      s = sys::ReadFull(fd_.get(), f.payload.data(), f.header.length);
      if (!s.ok()) return s;
    }
    return f;
  }
  // Reads a response frame and decodes its status.
  absl::Status ReadStatus(uint32_t expect_stream) {
    absl::StatusOr<Frame> f = ReadFrame();
    if (!f.ok())
      return absl::Status(absl::StatusCode::kAborted, absl::StrCat("read: ", f.status().ToString()));
    EXPECT_EQ(f->header.stream_id, expect_stream);
    EXPECT_EQ(f->header.type, static_cast<uint8_t>(FrameType::kResponse));
    v1::Response resp;
    EXPECT_TRUE(resp.ParseFromString(f->payload));
    return FromProto(resp.status());
  }
  bool ClosedByPeer() {
    char c;
    for (;;) {
      ssize_t n = ::read(fd_.get(), &c, 1);
      if (n < 0 && errno == EINTR) continue;
      return n == 0 || (n < 0 && errno == ECONNRESET);
    }
  }

 private:
  sys::UniqueFd fd_;
  bool connected_ = false;
};

class ServerClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ttrpcXXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/s.sock";
    server_ = std::make_unique<Server>();
    server_->Register(
        kService, "Echo",
        [](const CallContext&, const std::string& p) -> absl::StatusOr<std::string> { return p; });
    server_->Register(kService, "Fail",
                      [](const CallContext&, const std::string&) -> absl::StatusOr<std::string> {
                        return absl::NotFoundError("no such thing");
                      });
    server_->Register(kService, "Meta",
                      [this](const CallContext& ctx, const std::string&) -> absl::StatusOr<std::string> {
                        absl::MutexLock lock(&mu_);
                        seen_ = ctx;
                        return std::string("ok");
                      });
    server_->Register(kService, "Block",
                      [this](const CallContext&, const std::string& p) -> absl::StatusOr<std::string> {
                        entered_.Notify();
                        release_.WaitForNotification();
                        return absl::StrCat("released:", p);
                      });
    server_->SetConnectionObserver([this](size_t n) {
      absl::MutexLock lock(&mu_);
      observed_.push_back(n);
      if (n > open_) accepted_ += n - open_;
      open_ = n;
    });
    ASSERT_TRUE(server_->Listen(path_).ok());
    ASSERT_TRUE(server_->Start().ok());
  }

  void TearDown() override {
    if (!release_.HasBeenNotified()) release_.Notify();
    server_.reset();
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }

  std::unique_ptr<Client> DialOrDie() {
    auto c = Client::Dial(path_, absl::Seconds(5));
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  // Waits until the server has accepted at least `accepted` connections in all and none is open any more.
  // (Waiting for "0 open" alone could return before the server even accepted the connection in question.)
  void WaitAllClosedAfter(size_t accepted) {
    std::pair<ServerClientTest*, size_t> want(this, accepted);
    absl::MutexLock lock(&mu_);
    EXPECT_TRUE(
        mu_.AwaitWithTimeout(absl::Condition(
                                 +[](std::pair<ServerClientTest*, size_t>* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                   return a->first->accepted_ >= a->second && a->first->open_ == 0;
                                 },
                                 &want),
                             absl::Seconds(20)))
        << accepted_ << " accepted, " << open_ << " still open; want " << accepted << " accepted, 0 open";
  }
  size_t Accepted() {
    absl::MutexLock lock(&mu_);
    return accepted_;
  }

  void WaitOpenConnections(size_t n) {
    std::pair<ServerClientTest*, size_t> want(this, n);
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](std::pair<ServerClientTest*, size_t>* a)
             ABSL_NO_THREAD_SAFETY_ANALYSIS { return a->first->open_ == a->second; },  // Await holds mu_
        &want));
  }

  void ExpectGoodClientWorks() {
    auto c = DialOrDie();
    ASSERT_NE(c, nullptr);
    auto r = c->Call(kService, "Echo", "still serving");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(*r, "still serving");
  }

  std::string dir_, path_;
  std::unique_ptr<Server> server_;
  absl::Notification entered_, release_;
  absl::Mutex mu_;
  CallContext seen_ ABSL_GUARDED_BY(mu_);
  std::vector<size_t> observed_ ABSL_GUARDED_BY(mu_);
  size_t open_ ABSL_GUARDED_BY(mu_) = 0;
  size_t accepted_ ABSL_GUARDED_BY(mu_) = 0;  // connections accepted so far (from the observer)
};

TEST_F(ServerClientTest, RoundTrip) {
  auto c = DialOrDie();
  ASSERT_NE(c, nullptr);
  auto r = c->Call(kService, "Echo", "hello");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "hello");
  const std::string big(1 << 20, 'b');
  r = c->Call(kService, "Echo", big);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, big);
  r = c->Call(kService, "Echo", "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "");
}

TEST_F(ServerClientTest, SocketIsMode0600) {
  struct stat st;
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(ServerClientTest, HandlerErrorReachesClient) {
  auto c = DialOrDie();
  auto r = c->Call(kService, "Fail", "");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(r.status().message(), "no such thing");
}

TEST_F(ServerClientTest, UnknownMethodAndServiceAreUnimplemented) {
  auto c = DialOrDie();
  auto r = c->Call(kService, "Nope", "");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("Nope"));
  r = c->Call("other.Service", "Echo", "");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);
  // The connection is still good.
  r = c->Call(kService, "Echo", "x");
  ASSERT_TRUE(r.ok());
}

TEST_F(ServerClientTest, MetadataAndDeadlineReachHandler) {
  auto c = DialOrDie();
  const absl::Time before = absl::Now();
  auto r = c->Call(kService, "Meta", "", {{"containerd-namespace-ttrpc", "k8s.io"}, {"k", "v1"}, {"k", "v2"}},
                   absl::Seconds(10));
  const absl::Time after = absl::Now();
  ASSERT_TRUE(r.ok()) << r.status();
  {
    absl::MutexLock lock(&mu_);
    EXPECT_EQ(seen_.service, kService);
    EXPECT_EQ(seen_.method, "Meta");
    EXPECT_EQ(seen_.Get("containerd-namespace-ttrpc"), "k8s.io");
    EXPECT_EQ(seen_.Get("k"), "v1");
    EXPECT_EQ(seen_.Get("missing"), std::nullopt);
    EXPECT_EQ(seen_.metadata.size(), 3u);
    EXPECT_GE(seen_.deadline, before + absl::Seconds(10));
    EXPECT_LE(seen_.deadline, after + absl::Seconds(10));
  }
  r = c->Call(kService, "Meta", "", {}, absl::InfiniteDuration());
  ASSERT_TRUE(r.ok()) << r.status();
  absl::MutexLock lock(&mu_);
  EXPECT_EQ(seen_.deadline, absl::InfiniteFuture());
  EXPECT_TRUE(seen_.metadata.empty());
}

TEST_F(ServerClientTest, BlockedHandlerDoesNotBlockOthersOnSameConnection) {
  auto c = DialOrDie();
  absl::StatusOr<std::string> blocked;
  std::thread t([&] { blocked = c->Call(kService, "Block", "b"); });
  entered_.WaitForNotification();
  for (int i = 0; i < 5; ++i) {
    auto r = c->Call(kService, "Echo", absl::StrCat("e", i));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(*r, absl::StrCat("e", i));
  }
  release_.Notify();
  t.join();
  ASSERT_TRUE(blocked.ok()) << blocked.status();
  EXPECT_EQ(*blocked, "released:b");
}

TEST_F(ServerClientTest, ConcurrentCallsAreMatchedToTheirStreams) {
  auto c = DialOrDie();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const std::string p = absl::StrCat("t", t, "-", i, std::string(static_cast<size_t>(i * 97), 'p'));
        auto r = c->Call(kService, "Echo", p);
        if (!r.ok() || *r != p) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_F(ServerClientTest, ClientTimeoutThenConnectionStillUsable) {
  auto c = DialOrDie();
  auto r = c->Call(kService, "Block", "late", {}, absl::Milliseconds(100));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  entered_.WaitForNotification();
  release_.Notify();  // its late response must be dropped, not delivered to the next call
  r = c->Call(kService, "Echo", "next");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "next");
}

TEST_F(ServerClientTest, ShutdownFailsPendingCallsWithUnavailable) {
  auto c = DialOrDie();
  absl::StatusOr<std::string> blocked;
  std::thread caller([&] { blocked = c->Call(kService, "Block", ""); });
  entered_.WaitForNotification();
  std::thread stopper([&] { server_->Shutdown(absl::ZeroDuration()); });
  caller.join();  // returns because Shutdown closed the connection, while the handler is still blocked
  EXPECT_EQ(blocked.status().code(), absl::StatusCode::kUnavailable) << blocked.status();
  release_.Notify();
  stopper.join();
  EXPECT_EQ(c->Call(kService, "Echo", "").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(server_->ConnectionCount(), 0u);
  struct stat st;
  EXPECT_NE(::lstat(path_.c_str(), &st), 0) << "Shutdown should unlink its socket";
}

TEST_F(ServerClientTest, ShutdownGraceExpiresForStuckHandler) {
  auto c = DialOrDie();
  absl::StatusOr<std::string> blocked;
  std::thread caller([&] { blocked = c->Call(kService, "Block", ""); });
  entered_.WaitForNotification();
  std::thread stopper([&] { server_->Shutdown(absl::Milliseconds(200)); });
  caller.join();
  EXPECT_EQ(blocked.status().code(), absl::StatusCode::kUnavailable) << blocked.status();
  release_.Notify();
  stopper.join();
}

TEST_F(ServerClientTest, ShutdownLetsInFlightHandlersRespondWithinGrace) {
  auto c = DialOrDie();
  absl::StatusOr<std::string> blocked;
  std::thread caller([&] { blocked = c->Call(kService, "Block", "drained"); });
  entered_.WaitForNotification();
  std::thread stopper([&] { server_->Shutdown(absl::Seconds(60)); });
  // Once the server drains, new requests are refused; until then they are still served.
  absl::StatusOr<std::string> r;
  while ((r = c->Call(kService, "Echo", "x")).ok()) {
  }
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  release_.Notify();
  caller.join();
  ASSERT_TRUE(blocked.ok()) << blocked.status();
  EXPECT_EQ(*blocked, "released:drained");
  stopper.join();
  EXPECT_EQ(c->Call(kService, "Echo", "").status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(ServerClientTest, ClientCloseFailsLaterCalls) {
  auto c = DialOrDie();
  c->Close();
  c->Close();
  EXPECT_EQ(c->Call(kService, "Echo", "").status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(ServerClientTest, ConnectionCountAndObserver) {
  auto a = DialOrDie();
  auto b = DialOrDie();
  WaitOpenConnections(2);
  EXPECT_EQ(server_->ConnectionCount(), 2u);
  a.reset();
  WaitOpenConnections(1);
  b.reset();
  WaitOpenConnections(0);
  EXPECT_EQ(server_->ConnectionCount(), 0u);
  absl::MutexLock lock(&mu_);
  EXPECT_EQ(observed_, (std::vector<size_t>{1, 2, 1, 0}));
}

TEST_F(ServerClientTest, EvenStreamIdClosesConnection) {
  RawConn raw(path_);
  ASSERT_TRUE(raw.connected());
  const std::string req = RequestBytes(kService, "Echo", "x");
  raw.SendHeader(static_cast<uint32_t>(req.size()), 2, 1);
  raw.Send(req);
  EXPECT_TRUE(raw.ClosedByPeer());
  ExpectGoodClientWorks();
}

TEST_F(ServerClientTest, StreamIdZeroClosesConnection) {
  RawConn raw(path_);
  raw.SendHeader(0, 0, 1);
  EXPECT_TRUE(raw.ClosedByPeer());
  ExpectGoodClientWorks();
}

TEST_F(ServerClientTest, NonRequestTypeGetsInvalidArgument) {
  RawConn raw(path_);
  raw.SendHeader(3, 1, static_cast<uint8_t>(FrameType::kData));
  raw.Send("abc");
  EXPECT_EQ(raw.ReadStatus(1).code(), absl::StatusCode::kInvalidArgument);
  raw.SendHeader(0, 3, 0x42);
  EXPECT_EQ(raw.ReadStatus(3).code(), absl::StatusCode::kInvalidArgument);
  ExpectGoodClientWorks();
}

TEST_F(ServerClientTest, GarbageProtobufGetsInvalidArgumentAndConnectionSurvives) {
  RawConn raw(path_);
  const std::string garbage("\xff\xff\xff\xff\x0f\x0a\x99", 7);
  raw.SendHeader(static_cast<uint32_t>(garbage.size()), 1, 1);
  raw.Send(garbage);
  EXPECT_EQ(raw.ReadStatus(1).code(), absl::StatusCode::kInvalidArgument);
  const std::string good = RequestBytes(kService, "Echo", "after");
  raw.SendHeader(static_cast<uint32_t>(good.size()), 3, 1);
  raw.Send(good);
  auto f = raw.ReadFrame();
  ASSERT_TRUE(f.ok()) << f.status();
  v1::Response resp;
  ASSERT_TRUE(resp.ParseFromString(f->payload));
  EXPECT_EQ(resp.status().code(), 0);
  EXPECT_EQ(resp.payload(), "after");
  ExpectGoodClientWorks();
}

TEST_F(ServerClientTest, OversizedLengthGetsResourceExhaustedAndPayloadIsSkipped) {
  RawConn raw(path_);
  raw.SendHeader(kMaxPayload + 1, 3, 1);
  const std::string chunk(1 << 20, '\xee');
  for (int i = 0; i < 4; ++i) raw.Send(chunk);
  raw.Send("\xee");
  absl::Status s = raw.ReadStatus(3);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  // The stream stays in sync: the next request on the same connection is served.
  const std::string good = RequestBytes(kService, "Echo", "synced");
  raw.SendHeader(static_cast<uint32_t>(good.size()), 5, 1);
  raw.Send(good);
  EXPECT_TRUE(raw.ReadStatus(5).ok());
  ExpectGoodClientWorks();
}

TEST_F(ServerClientTest, HugeLengthThenHangUp) {
  {
    RawConn raw(path_);
    raw.SendHeader(0xffffffff, 1, 1);
    EXPECT_EQ(raw.ReadStatus(1).code(), absl::StatusCode::kResourceExhausted);
  }
  ExpectGoodClientWorks();
}

TEST_F(ServerClientTest, TruncatedFrameThenHangUpReleasesConnection) {
  const size_t before = Accepted();
  {
    RawConn raw(path_);
    raw.SendHeader(100, 1, 1);
    raw.Send("only a few bytes");
  }
  WaitAllClosedAfter(before + 1);
  ExpectGoodClientWorks();
}

TEST_F(ServerClientTest, StreamIdReusedWhileInFlightClosesConnection) {
  RawConn raw(path_);
  const std::string req = RequestBytes(kService, "Block", "");
  raw.SendHeader(static_cast<uint32_t>(req.size()), 1, 1);
  raw.Send(req);
  entered_.WaitForNotification();
  raw.SendHeader(static_cast<uint32_t>(req.size()), 1, 1);
  raw.Send(req);
  // The first call is still blocked, so nothing but the close can arrive.
  EXPECT_TRUE(raw.ClosedByPeer());
  release_.Notify();
  ExpectGoodClientWorks();
}

TEST_F(ServerClientTest, NoFdOrThreadLeaks) {
  const size_t fds_before = CountEntries("/proc/self/fd");
  const size_t threads_before = CountEntries("/proc/self/task");
  const size_t accepted_before = Accepted();
  {
    auto a = DialOrDie();
    auto b = DialOrDie();
    ASSERT_TRUE(a->Call(kService, "Echo", "1").ok());
    ASSERT_TRUE(b->Call(kService, "Echo", "2").ok());
    RawConn raw(path_);
    raw.SendHeader(0, 2, 1);
    EXPECT_TRUE(raw.ClosedByPeer());
  }
  WaitAllClosedAfter(accepted_before + 3);
  server_.reset();
  // Everything the server owned is gone: its listener and eventfd, the accept thread, and every connection's
  // fd and threads.
  EXPECT_EQ(CountEntries("/proc/self/fd"), fds_before - 2);
  EXPECT_EQ(CountEntries("/proc/self/task"), threads_before - 1);
}

}  // namespace
}  // namespace gvshim::ttrpc
