#include "shim/gateway/http_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <deque>
#include <limits>
#include <map>
#include <system_error>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "shim/base/log.h"

namespace gvshim::gateway {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

struct HttpServer::State {
  State(HttpServerOptions o, Handler h) : opts(std::move(o)), handler(std::move(h)) {}
  const HttpServerOptions opts;
  const Handler handler;
  tcp protocol = tcp::v4();

  // Open connections by fd. One that is reading or writing has a deadline (the idle timeout from its last
  // step); one whose request is in the handler has none. The watchdog shuts down overdue ones.
  struct Conn {
    bool in_handler = false;
    absl::Time deadline = absl::InfiniteFuture();
  };
  absl::Mutex mu;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  std::map<int, Conn> conns ABSL_GUARDED_BY(mu);
  int active ABSL_GUARDED_BY(mu) = 0;  // connections open: waiting for a worker or being served
  // Connections are served by worker threads that wait for the next one when done: a thread woken from its
  // wait gets the CPU at once, where a newly created one can wait behind every runnable task of a busy node.
  std::deque<int> pending ABSL_GUARDED_BY(mu);  // accepted fds no worker has taken yet
  int workers ABSL_GUARDED_BY(mu) = 0;
  int idle_workers ABSL_GUARDED_BY(mu) = 0;
  static constexpr int kWarmWorkers = 8;  // kept even when idle
  static constexpr absl::Duration kIdleWorkerLife = absl::Seconds(60);

  // Starts a worker counted in `workers` by the caller; false (and uncounted) if no thread could be made.
  bool SpawnWorker(const std::shared_ptr<State>& self);
  void Worker();
  void ServeFd(int fd);

  void SetConn(int fd, bool in_handler) { SetConn(fd, in_handler, opts.idle_timeout); }
  void SetConn(int fd, bool in_handler, absl::Duration timeout) {
    absl::MutexLock lock(&mu);
    auto it = conns.find(fd);
    if (it == conns.end()) return;
    it->second.in_handler = in_handler;
    it->second.deadline = in_handler ? absl::InfiniteFuture() : absl::Now() + timeout;
  }
  bool Stopping() {
    absl::MutexLock lock(&mu);
    return stopping;
  }
  void Serve(tcp::socket& sock);
};

struct HttpServer::Acceptor {
  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  asio::steady_timer watchdog{ioc};
};

namespace {

std::string JsonDetail(const std::string& detail) { return absl::StrCat("{\"detail\":\"", detail, "\"}"); }

void WriteLine(int fd, std::string line) {
  if (fd < 0) return;
  line.push_back('\n');
  // One write per line keeps lines whole when several threads log.
  (void)!::write(fd, line.data(), line.size());
}

std::string PeerOf(tcp::socket& sock) {
  boost::system::error_code ec;
  tcp::endpoint ep = sock.remote_endpoint(ec);
  if (ec) return "unknown";
  auto a = ep.address();
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_string();
  return a.to_string();
}

bool QuietReadError(const boost::system::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::shut_down || ec == asio::error::broken_pipe || ec == asio::error::bad_descriptor;
}

}  // namespace

void HttpServer::State::Serve(tcp::socket& sock) {
  const int fd = sock.native_handle();
  const std::string peer = PeerOf(sock);
  boost::system::error_code ec;
  boost::beast::flat_buffer buf;
  while (true) {
    SetConn(fd, false);
    if (Stopping()) return;
    http::request_parser<http::string_body> parser;
    parser.header_limit(16 * 1024);
    // No body limit while reading the header (Beast would refuse an announced length over it as a header
    // error); a known length is checked below, a chunked body is limited while it is read. (Not boost::none:
    // Beast 1.74 compares a Content-Length against an empty optional as if it were over the limit.)
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    http::read_header(sock, buf, parser, ec);
    if (ec) {
      if (!QuietReadError(ec)) {
        http::response<http::string_body> res{http::status::bad_request, 11};
        res.set(http::field::content_type, "application/json");
        res.body() = JsonDetail("Invalid HTTP request received.");
        res.keep_alive(false);
        res.prepare_payload();
        http::write(sock, res, ec);
      }
      return;
    }
    absl::Time start = absl::Now();
    auto& msg = parser.get();
    HttpRequest req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    req.peer = peer;
    for (const auto& f : msg) {
      req.headers.emplace(absl::AsciiStrToLower(std::string(f.name_string())), std::string(f.value()));
    }
    bool keep_alive = parser.keep_alive();
    auto announced = parser.content_length();
    if (announced.has_value()) req.body_size = *announced;
    if (announced.has_value() && *announced > opts.max_body_bytes) {
      req.body_too_large = true;  // not read; the connection closes after the answer
      keep_alive = false;
    } else {
      if (absl::EqualsIgnoreCase(req.Header("expect"), "100-continue")) {
        http::response<http::empty_body> cont{http::status::continue_, 11};
        http::write(sock, cont, ec);
        if (ec) return;
      }
      SetConn(fd, false);
      parser.body_limit(opts.max_body_bytes);
      http::read(sock, buf, parser, ec);
      if (ec == http::error::body_limit) {
        req.body_too_large = true;  // a chunked body that grew past the cap
        req.body_size = opts.max_body_bytes + 1;
        keep_alive = false;
      } else if (ec) {
        return;
      } else {
        req.body = std::move(msg.body());
        req.body_size = req.body.size();
      }
    }
    SetConn(fd, true);
    HttpResponse resp = handler(req);
    SetConn(fd, false);
    if (Stopping()) keep_alive = false;
    http::response<http::string_body> res{static_cast<http::status>(resp.code), msg.version()};
    res.set(http::field::content_type, resp.content_type);
    for (const auto& [k, v] : resp.headers) res.set(k, v);
    res.keep_alive(keep_alive);
    res.body() = std::move(resp.body);
    res.prepare_payload();
    http::write(sock, res, ec);
    resp.body = std::move(res.body());
    WriteLine(opts.access_log_fd, AccessLogLine(req, resp, start, absl::Now() - start));
    if (!ec && req.body_too_large) {
      // The client may still be sending the body we did not read; closing now would reset the connection and
      // could destroy the answer before the client reads it. Stop sending, then discard input for a moment.
      sock.shutdown(tcp::socket::shutdown_send, ec);
      SetConn(fd, false, absl::Seconds(2));
      char sink[16384];
      size_t drained = 0;
      while (!ec && drained < (4u << 20)) drained += sock.read_some(asio::buffer(sink), ec);
      return;
    }
    if (ec || !keep_alive) return;
  }
}

bool HttpServer::State::SpawnWorker(const std::shared_ptr<State>& self) {
  try {
    std::thread([self] { self->Worker(); }).detach();
    return true;
  } catch (const std::system_error& e) {
    // Out of threads: the connection waits in `pending` for a worker that is already running.
    log::Warnf("gateway: cannot start a connection worker thread: %s", e.what());
    absl::MutexLock lock(&mu);
    --workers;
    return false;
  }
}

void HttpServer::State::Worker() {
  while (true) {
    int fd;
    {
      absl::MutexLock lock(&mu);
      ++idle_workers;
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return !pending.empty() || stopping; };
      bool woken = mu.AwaitWithTimeout(absl::Condition(&has_work), kIdleWorkerLife);
      --idle_workers;
      if (pending.empty()) {
        if (stopping || (!woken && workers > kWarmWorkers)) {
          --workers;
          return;
        }
        continue;
      }
      fd = pending.front();
      pending.pop_front();
    }
    ServeFd(fd);
  }
}

void HttpServer::State::ServeFd(int fd) {
  // Each connection gets its own socket object (and io_context): nothing it uses belongs to the acceptor.
  asio::io_context ioc;
  tcp::socket s(ioc);
  boost::system::error_code e;
  s.assign(protocol, fd, e);
  if (!e) Serve(s);
  {
    absl::MutexLock lock(&mu);
    conns.erase(fd);  // before close(2), so the watchdog never touches a reused fd number
  }
  s.shutdown(tcp::socket::shutdown_both, e);
  if (s.is_open()) {
    s.close(e);
  } else {
    ::close(fd);
  }
  absl::MutexLock lock(&mu);
  --active;
}

HttpServer::~HttpServer() { Shutdown(absl::ZeroDuration()); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Listen(HttpServerOptions opts, Handler handler) {
  std::unique_ptr<HttpServer> s(new HttpServer());
  s->state_ = std::make_shared<State>(std::move(opts), std::move(handler));
  s->acceptor_ = std::make_unique<Acceptor>();
  const HttpServerOptions& o = s->state_->opts;
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(o.host, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("listen address \"", o.host, "\": ", ec.message()));
  tcp::endpoint ep(addr, o.port);
  s->state_->protocol = ep.protocol();
  auto& a = s->acceptor_->acceptor;
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("listen on ", o.host, ":", o.port, ": ", ec.message()));
  s->port_ = a.local_endpoint().port();
  return s;
}

void HttpServer::Start() {
  std::shared_ptr<State> st = state_;
  Acceptor* acc = acceptor_.get();
  // The accept loop and the watchdog re-arm themselves. Each function holds itself only weakly and its
  // pending handler strongly, so both (and the State they hold) are freed once the io_context drops its
  // handlers: a self-capture would be a reference cycle that outlives the server.
  auto accept_fn = std::make_shared<std::function<void()>>();
  *accept_fn = [st, acc, weak = std::weak_ptr<std::function<void()>>(accept_fn)] {
    std::shared_ptr<std::function<void()>> accept = weak.lock();
    if (accept == nullptr) return;
    acc->acceptor.async_accept([st, acc, accept](boost::system::error_code ec, tcp::socket sock) {
      if (!acc->acceptor.is_open()) return;
      if (ec) {
        log::Warnf("gateway: accept: %s", ec.message());
        (*accept)();
        return;
      }
      sock.set_option(tcp::no_delay(true), ec);
      bool refuse;
      {
        absl::MutexLock lock(&st->mu);
        refuse = st->stopping || st->active >= st->opts.max_connections;
      }
      if (refuse) {
        // Over the connection limit: a short answer without reading the request.
        http::response<http::string_body> res{http::status::service_unavailable, 11};
        res.set(http::field::content_type, "application/json");
        res.body() = JsonDetail("too many connections");
        res.keep_alive(false);
        res.prepare_payload();
        http::write(sock, res, ec);
        sock.close(ec);
        (*accept)();
        return;
      }
      // A worker gets the bare fd.
      int fd = sock.release(ec);
      if (ec) {
        log::Warnf("gateway: accept: release socket: %s", ec.message());
        (*accept)();
        return;
      }
      bool spawn;
      {
        absl::MutexLock lock(&st->mu);
        ++st->active;
        st->conns[fd] = State::Conn{false, absl::Now() + st->opts.idle_timeout};
        st->pending.push_back(fd);
        spawn = st->idle_workers < static_cast<int>(st->pending.size());
        if (spawn) ++st->workers;
      }
      if (spawn) st->SpawnWorker(st);
      (*accept)();
    });
  };
  (*accept_fn)();
  {
    absl::MutexLock lock(&st->mu);
    st->workers += State::kWarmWorkers;
  }
  for (int i = 0; i < State::kWarmWorkers; ++i) st->SpawnWorker(st);
  auto watchdog_fn = std::make_shared<std::function<void()>>();
  *watchdog_fn = [st, acc, weak = std::weak_ptr<std::function<void()>>(watchdog_fn)] {
    std::shared_ptr<std::function<void()>> watchdog = weak.lock();
    if (watchdog == nullptr) return;
    acc->watchdog.expires_after(std::chrono::seconds(1));
    acc->watchdog.async_wait([st, watchdog](boost::system::error_code ec) {
      if (ec) return;
      absl::Time now = absl::Now();
      {
        absl::MutexLock lock(&st->mu);
        for (const auto& [fd, c] : st->conns) {
          if (!c.in_handler && c.deadline < now) ::shutdown(fd, SHUT_RDWR);
        }
      }
      (*watchdog)();
    });
  };
  (*watchdog_fn)();
  accept_thread_ = std::thread([acc] { acc->ioc.run(); });
}

int HttpServer::Shutdown(absl::Duration grace) {
  if (state_ == nullptr) return 0;
  {
    absl::MutexLock lock(&state_->mu);
    state_->stopping = true;
    // Idle connections end now; busy ones after their answer.
    for (const auto& [fd, c] : state_->conns) {
      if (!c.in_handler) ::shutdown(fd, SHUT_RDWR);
    }
  }
  if (accept_thread_.joinable()) {
    Acceptor* acc = acceptor_.get();
    asio::post(acc->ioc, [acc] {
      boost::system::error_code ec;
      acc->acceptor.close(ec);
      acc->watchdog.cancel();
    });
    accept_thread_.join();  // run() returns once the acceptor and the timer have no work left
  }
  // Idle workers saw `stopping` and end; a worker ends once its connection has been answered and closed.
  absl::MutexLock lock(&state_->mu);
  auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
    return state_->active == 0 && state_->workers == 0;
  };
  state_->mu.AwaitWithTimeout(absl::Condition(&done), grace);
  return state_->active;
}

int HttpServer::Workers() {
  if (state_ == nullptr) return 0;
  absl::MutexLock lock(&state_->mu);
  return state_->workers;
}

}  // namespace gvshim::gateway
