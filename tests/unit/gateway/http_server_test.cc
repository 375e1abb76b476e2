#include "shim/gateway/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"

namespace gvshim::gateway {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

// Echoes what the transport handed over.
HttpResponse Echo(const HttpRequest& r) {
  HttpResponse resp;
  resp.code = r.body_too_large ? 413 : 200;
  resp.body = nlohmann::json({{"method", r.method},
                              {"target", r.target},
                              {"body", r.body},
                              {"too_large", r.body_too_large},
                              {"body_size", r.body_size},
                              {"peer", r.peer},
                              {"x_test", r.Header("x-test")}})
                  .dump();
  resp.headers.emplace_back("X-Extra", "yes");
  return resp;
}

struct Server {
  explicit Server(HttpServer::Handler h = Echo, HttpServerOptions o = {}) {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
    log_r = fds[0];
    log_w = fds[1];
    o.host = "127.0.0.1";
    o.port = 0;
    o.access_log_fd = log_w;
    auto s = HttpServer::Listen(o, std::move(h));
    EXPECT_TRUE(s.ok()) << s.status();
    server = std::move(*s);
    server->Start();
  }
  ~Server() {
    server.reset();
    ::close(log_r);
    ::close(log_w);
  }
  // The access log once it has `lines` lines (a line is written after its answer is sent), or after 20 s.
  std::string Log(int lines) {
    absl::Time end = absl::Now() + absl::Seconds(20);
    while (std::count(log.begin(), log.end(), '\n') < lines && absl::Now() < end) {
      pollfd p{log_r, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[65536];
      ssize_t n = ::read(log_r, buf, sizeof(buf));
      if (n > 0) log.append(buf, n);
    }
    return log;
  }
  std::string log;
  tcp::socket Connect() {
    tcp::socket s(ioc);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server->port()));
    return s;
  }
  asio::io_context ioc;
  std::unique_ptr<HttpServer> server;
  int log_r = -1, log_w = -1;
};

http::response<http::string_body> Send(tcp::socket& s, http::request<http::string_body> req) {
  req.prepare_payload();
  http::write(s, req);
  boost::beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  return res;
}

http::request<http::string_body> Req(http::verb v, const std::string& target, std::string body = "") {
  http::request<http::string_body> r{v, target, 11};
  r.set(http::field::host, "localhost");
  r.body() = std::move(body);
  return r;
}

// Everything the server sends until it closes the connection, giving up after 20 s.
std::string ReadAll(tcp::socket& s) {
  std::string out;
  absl::Time end = absl::Now() + absl::Seconds(20);
  while (absl::Now() < end) {
    pollfd p{s.native_handle(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    ssize_t n = ::recv(s.native_handle(), buf, sizeof(buf), 0);
    if (n <= 0) return out;
    out.append(buf, n);
  }
  ADD_FAILURE() << "the server did not close the connection within 20 s";
  return out;
}

TEST(HttpServer, KeepAliveRequestsAndAccessLog) {
  Server srv;
  tcp::socket s = srv.Connect();
  auto r1 = Send(s, Req(http::verb::get, "/healthz?x=1"));
  EXPECT_EQ(r1.result_int(), 200);
  EXPECT_EQ(r1[http::field::content_type], "application/json");
  EXPECT_EQ(r1["X-Extra"], "yes");
  auto j = nlohmann::json::parse(r1.body());
  EXPECT_EQ(j["method"], "GET");
  EXPECT_EQ(j["target"], "/healthz?x=1");
  EXPECT_EQ(j["peer"], "127.0.0.1");
  auto req = Req(http::verb::post, "/run", "hello");
  req.set("X-Test", "v");
  auto r2 = Send(s, req);  // same connection
  j = nlohmann::json::parse(r2.body());
  EXPECT_EQ(j["body"], "hello");
  EXPECT_EQ(j["x_test"], "v");
  std::string log = srv.Log(2);
  EXPECT_NE(log.find("\"path\":\"/healthz\""), std::string::npos) << log;
  EXPECT_NE(log.find("\"method\":\"POST\""), std::string::npos) << log;
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 2);
}

TEST(HttpServer, BodyOverTheCapIsNotRead) {
  HttpServerOptions o;
  o.max_body_bytes = 10;
  Server srv(Echo, o);
  tcp::socket s = srv.Connect();
  // Headers only: the answer comes without the body ever being sent.
  std::string head = "POST /run HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n";
  asio::write(s, asio::buffer(head));
  boost::beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  EXPECT_EQ(res.result_int(), 413);
  EXPECT_TRUE(nlohmann::json::parse(res.body())["too_large"]);
  EXPECT_FALSE(res.keep_alive());
  // A client that sends the whole oversized body without waiting still reads the answer (no reset).
  tcp::socket s3 = srv.Connect();
  std::string all = head + std::string(1000000, 'x');
  std::thread sender([&] {
    boost::system::error_code ignored;
    asio::write(s3, asio::buffer(all), ignored);
  });
  sender.join();  // all sent (or refused) before the answer is read
  http::response<http::string_body> res3;
  boost::beast::flat_buffer buf3;
  boost::system::error_code ec3;
  http::read(s3, buf3, res3, ec3);
  EXPECT_FALSE(ec3) << ec3.message();
  EXPECT_EQ(res3.result_int(), 413);
  // A chunked body that grows past the cap.
  tcp::socket s2 = srv.Connect();
  std::string chunked =
      "POST /run HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
      "chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n";
  asio::write(s2, asio::buffer(chunked));
  http::response<http::string_body> res2;
  boost::beast::flat_buffer buf2;
  http::read(s2, buf2, res2);
  EXPECT_EQ(res2.result_int(), 413);
}

TEST(HttpServer, ExpectContinue) {
  Server srv;
  tcp::socket s = srv.Connect();
  std::string head = "POST /run HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
  asio::write(s, asio::buffer(head));
  asio::streambuf sb;
  asio::read_until(s, sb, "\r\n\r\n");
  std::string interim(asio::buffers_begin(sb.data()), asio::buffers_begin(sb.data()) + 12);
  EXPECT_EQ(interim, "HTTP/1.1 100");
  sb.consume(sb.size());
  asio::write(s, asio::buffer(std::string("hello")));
  boost::beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(nlohmann::json::parse(res.body())["body"], "hello");
}

TEST(HttpServer, MalformedRequestIs400) {
  Server srv;
  tcp::socket s = srv.Connect();
  asio::write(s, asio::buffer(std::string("NOT HTTP AT ALL\r\n\r\n")));
  std::string out = ReadAll(s);
  EXPECT_EQ(out.substr(0, 12), "HTTP/1.1 400") << out;
}

TEST(HttpServer, ConnectionLimit) {
  HttpServerOptions o;
  o.max_connections = 1;
  Server srv(Echo, o);
  tcp::socket first = srv.Connect();
  Send(first, Req(http::verb::get, "/"));  // the first connection is now open and idle
  tcp::socket second = srv.Connect();
  std::string out = ReadAll(second);
  EXPECT_EQ(out.substr(0, 12), "HTTP/1.1 503") << out;
  EXPECT_EQ(Send(first, Req(http::verb::get, "/")).result_int(), 200);
}

TEST(HttpServer, IdleConnectionsAreClosed) {
  HttpServerOptions o;
  o.idle_timeout = absl::Milliseconds(200);
  Server srv(Echo, o);
  tcp::socket s = srv.Connect();
  // No request: the watchdog closes it (within the timeout plus one watchdog period); read sees EOF.
  absl::Time start = absl::Now();
  std::string out = ReadAll(s);
  EXPECT_EQ(out, "");
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST(HttpServer, ShutdownLetsRunningRequestsFinish) {
  absl::Notification in_handler, release;
  Server srv([&](const HttpRequest& r) {
    if (r.target == "/slow") {
      in_handler.Notify();
      release.WaitForNotification();
    }
    return Echo(r);
  });
  tcp::socket idle = srv.Connect();
  Send(idle, Req(http::verb::get, "/"));
  tcp::socket busy = srv.Connect();
  auto req = Req(http::verb::get, "/slow");
  req.prepare_payload();
  http::write(busy, req);
  in_handler.WaitForNotification();
  int left = -1;
  std::thread stopper([&] { left = srv.server->Shutdown(absl::Seconds(20)); });
  EXPECT_EQ(ReadAll(idle), "");  // the idle connection is closed at once
  release.Notify();
  boost::beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(busy, buf, res);
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_FALSE(res.keep_alive());
  stopper.join();
  EXPECT_EQ(left, 0);
  boost::system::error_code ec;
  tcp::socket late(srv.ioc);
  late.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), srv.server->port()), ec);
  EXPECT_TRUE(ec) << "the server still accepts after Shutdown";
}

// The open fds of this process.
int OpenFds() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n - 1;  // the iterator's own
}

TEST(HttpServer, ShutdownEndsEveryWorkerAndClosesEveryFd) {
  constexpr int kBusy = 12;  // more than the warm workers, so extra ones are started
  // Plain sockets on the client side, so that nothing but the server opens or closes fds meanwhile.
  auto connect = [](uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    return fd;
  };
  const int before = OpenFds();
  absl::Mutex mu;
  int in_handler = 0;
  bool release = false;
  HttpServerOptions o;
  o.host = "127.0.0.1";
  o.port = 0;
  o.access_log_fd = -1;
  auto server = HttpServer::Listen(o, [&](const HttpRequest& r) {
    if (r.target != "/slow") return Echo(r);
    absl::MutexLock lock(&mu);
    ++in_handler;
    mu.Await(absl::Condition(&release));
    return Echo(r);
  });
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->Start();
  std::vector<int> clients;
  for (int i = 0; i < kBusy; ++i) {
    clients.push_back(connect((*server)->port()));
    std::string req = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(::write(clients.back(), req.data(), req.size()), static_cast<ssize_t>(req.size()));
  }
  {
    absl::MutexLock lock(&mu);
    auto all_in = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return in_handler == kBusy; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all_in), absl::Seconds(20)));
  }
  EXPECT_GE((*server)->Workers(), kBusy) << "each connection has a worker of its own";
  // A connection answered once and then idle (kept alive): Shutdown closes it.
  int idle = connect((*server)->port());
  {
    std::string req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n", out;
    ASSERT_EQ(::write(idle, req.data(), req.size()), static_cast<ssize_t>(req.size()));
    char buf[4096];
    while (out.find("\"x_test\":\"\"}") == std::string::npos) {  // the end of the body
      ssize_t n = ::read(idle, buf, sizeof(buf));
      ASSERT_GT(n, 0) << out;
      out.append(buf, n);
    }
  }
  EXPECT_GT(OpenFds(), before + 2 * kBusy) << "the probe sees the connections' fds";
  std::thread stopper([&] { EXPECT_EQ((*server)->Shutdown(absl::Seconds(20)), 0); });
  {
    absl::MutexLock lock(&mu);
    release = true;
  }
  stopper.join();
  EXPECT_EQ((*server)->Workers(), 0) << "workers still running after Shutdown";
  for (int fd : clients) {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof(buf))) > 0) out.append(buf, n);
    EXPECT_EQ(out.substr(0, 12), "HTTP/1.1 200") << out;
    ::close(fd);
  }
  char c;
  EXPECT_EQ(::read(idle, &c, 1), 0) << "the idle connection was not closed";
  ::close(idle);
  server->reset();
  EXPECT_EQ(OpenFds(), before) << "fds left open after the server was destroyed";
}

TEST(HttpServer, ListenErrors) {
  HttpServerOptions o;
  o.host = "not-an-address";
  EXPECT_FALSE(HttpServer::Listen(o, Echo).ok());
  Server srv;
  HttpServerOptions same;
  same.host = "127.0.0.1";
  same.port = srv.server->port();
  auto dup = HttpServer::Listen(same, Echo);
  EXPECT_FALSE(dup.ok());
}

}  // namespace
}  // namespace gvshim::gateway
