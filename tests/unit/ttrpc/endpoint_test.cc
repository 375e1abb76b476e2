// ttrpc endpoints without the echo fixture: the server's Listen and AdoptListener, the client's dial, a
// server that vanishes, stream ids, and ParseRequest.
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

TEST(ServerTest, ListenReplacesStaleSocketAndRefusesOtherFiles) {
  char tmpl[] = "/tmp/ttrpcXXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl, path = dir + "/stale.sock", file = dir + "/file";
  ASSERT_TRUE(sys::ListenUnix(path, 0600).ok());  // closed at once: a stale socket file remains
  ASSERT_EQ(Client::Dial(path, absl::Seconds(1)).status().code(), absl::StatusCode::kUnavailable);
  {
    Server s;
    s.Register("a", "b",
               [](const CallContext&, const std::string&) -> absl::StatusOr<std::string> { return "c"; });
    ASSERT_TRUE(s.Listen("unix://" + path).ok());
    ASSERT_TRUE(s.Start().ok());
    auto c = Client::Dial("unix://" + path, absl::Seconds(5));
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ((*c)->Call("a", "b", "").value_or("fail"), "c");
    // A second server must not take a live server's socket away.
    Server second;
    absl::Status st = second.Listen(path);
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
    EXPECT_THAT(st.message(), HasSubstr(path));
    auto c2 = Client::Dial(path, absl::Seconds(5));
    ASSERT_TRUE(c2.ok()) << c2.status();
    EXPECT_EQ((*c2)->Call("a", "b", "").value_or("fail"), "c");
  }
  { sys::UniqueFd f(::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600)); }
  Server s;
  EXPECT_EQ(s.Listen(file).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.Start().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(s.Listen(dir + "/" + std::string(120, 'x')).ok());
  ::unlink(file.c_str());
  ::unlink(path.c_str());
  ::rmdir(dir.c_str());
}

TEST(ServerTest, AdoptListener) {
  char tmpl[] = "/tmp/ttrpcXXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl, path = dir + "/a.sock";
  auto fd = sys::ListenUnix(path, 0600);
  ASSERT_TRUE(fd.ok()) << fd.status();
  {
    Server s;
    s.Register("a", "b",
               [](const CallContext&, const std::string& p) -> absl::StatusOr<std::string> { return p; });
    // A socket that does not listen is refused.
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    sys::UniqueFd other(sv[1]);
    EXPECT_EQ(s.AdoptListener(sys::UniqueFd(sv[0])).code(), absl::StatusCode::kInvalidArgument);
    ASSERT_TRUE(s.AdoptListener(std::move(*fd)).ok());
    ASSERT_TRUE(s.Start().ok());
    auto c = Client::Dial(path, absl::Seconds(5));
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ((*c)->Call("a", "b", "adopted").value_or("fail"), "adopted");
  }
  ::unlink(path.c_str());
  ::rmdir(dir.c_str());
}

TEST(ClientTest, DialMissingSocketIsUnavailable) {
  auto c = Client::Dial("/tmp/ttrpc-definitely-missing.sock", absl::Seconds(1));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Client::Dial(std::string(200, 'p'), absl::Seconds(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ClientTest, ServerVanishingFailsPendingCalls) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  sys::UniqueFd server_end(sv[1]);
  auto c = Client::FromFd(sys::UniqueFd(sv[0]));
  absl::StatusOr<std::string> r;
  std::thread t([&] { r = c->Call("s", "m", "p"); });
  // Wait until the request is on the wire, then hang up without answering.
  uint8_t h[kHeaderSize];
  ASSERT_TRUE(sys::ReadFull(server_end.get(), h, kHeaderSize).ok());
  EXPECT_EQ(DecodeHeader(h).stream_id, 1u);
  EXPECT_EQ(DecodeHeader(h).type, static_cast<uint8_t>(FrameType::kRequest));
  server_end.reset();
  t.join();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
}

TEST(ClientTest, StreamIdsAreOddAndIncreasing) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  sys::UniqueFd server_end(sv[1]);
  auto c = Client::FromFd(sys::UniqueFd(sv[0]));
  for (uint32_t want : {1u, 3u, 5u}) {
    absl::StatusOr<std::string> r;
    std::thread t([&] { r = c->Call("s", "m", "p", {{"a", "b"}}, absl::Seconds(7)); });
    uint8_t h[kHeaderSize];
    ASSERT_TRUE(sys::ReadFull(server_end.get(), h, kHeaderSize).ok());
    FrameHeader hdr = DecodeHeader(h);
    EXPECT_EQ(hdr.stream_id, want);
    std::string body(hdr.length, '\0');
    ASSERT_TRUE(sys::ReadFull(server_end.get(), body.data(), body.size()).ok());
    v1::Request req;
    ASSERT_TRUE(req.ParseFromString(body));
    EXPECT_EQ(req.service(), "s");
    EXPECT_EQ(req.method(), "m");
    EXPECT_EQ(req.payload(), "p");
    EXPECT_EQ(req.timeout_nano(), 7'000'000'000);
    ASSERT_EQ(req.metadata_size(), 1);
    EXPECT_EQ(req.metadata(0).key(), "a");
    v1::Response resp;
    resp.set_payload(absl::StrCat("r", want));
    const std::string out = EncodeFrame(want, FrameType::kResponse, 0, resp.SerializeAsString());
    ASSERT_TRUE(sys::WriteAll(server_end.get(), out.data(), out.size()).ok());
    t.join();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(*r, absl::StrCat("r", want));
  }
}

TEST(ParseRequestTest, DecodesFieldsAndDeadline) {
  v1::Request req;
  req.set_service("svc");
  req.set_method("m");
  req.set_payload("data");
  req.set_timeout_nano(1'500'000'000);
  auto* kv = req.add_metadata();
  kv->set_key("k");
  kv->set_value("v");
  const absl::Time now = absl::FromUnixSeconds(1000);
  CallContext ctx;
  std::string payload;
  ASSERT_TRUE(ParseRequest(req.SerializeAsString(), now, &ctx, &payload).ok());
  EXPECT_EQ(ctx.service, "svc");
  EXPECT_EQ(ctx.method, "m");
  EXPECT_EQ(payload, "data");
  EXPECT_EQ(ctx.deadline, now + absl::Milliseconds(1500));
  EXPECT_EQ(ctx.Get("k"), "v");

  req.set_timeout_nano(-5);
  ASSERT_TRUE(ParseRequest(req.SerializeAsString(), now, &ctx, &payload).ok());
  EXPECT_EQ(ctx.deadline, absl::InfiniteFuture());

  EXPECT_EQ(ParseRequest(std::string("\xff\xff", 2), now, &ctx, &payload).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace gvshim::ttrpc
