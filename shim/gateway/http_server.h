// The gateway's HTTP/1.1 transport on Boost.Beast: one acceptor; each connection is served, from accept to
// close, by a worker thread of a pool (a few kept warm, more started while every one is busy, the extra ones
// ending after a minute idle; connections bounded), keep-alive, a request body cap (answered 413 without
// reading the body), "Expect: 100-continue", an idle timeout, and a JSON access-log line per request.
// Requests go to a handler (Service::Handle) and know nothing of Beast.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "shim/gateway/service.h"

namespace gvshim::gateway {

struct HttpServerOptions {
  std::string host = "0.0.0.0";
  uint16_t port = 9385;  // 0: any free port (tests)
  uint64_t max_body_bytes = 16 << 20;
  int max_connections = 256;
  // A connection that makes no progress this long while reading a request or writing an answer is closed
  // (a request being executed has no such limit).
  absl::Duration idle_timeout = absl::Seconds(60);
  // Where access-log lines go (one write per line); -1: nowhere.
  int access_log_fd = 2;
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  // Binds and listens; serving starts with Start().
  static absl::StatusOr<std::unique_ptr<HttpServer>> Listen(HttpServerOptions opts, Handler handler);
  ~HttpServer();  // Shutdown(0)

  uint16_t port() const { return port_; }
  // Accepts connections on a background thread.
  void Start();
  // Stops accepting, closes idle connections, ends idle workers, and waits up to `grace` for requests being
  // served to finish and every worker to end. Returns the number of connections still open after the grace
  // period (their workers keep what they use alive, so destroying the server afterwards is safe).
  int Shutdown(absl::Duration grace);
  // Worker threads not yet ended (tests).
  int Workers();

  // Connection bookkeeping shared with the worker threads.
  struct State;

 private:
  struct Acceptor;
  HttpServer() = default;

  std::shared_ptr<State> state_;
  std::unique_ptr<Acceptor> acceptor_;
  uint16_t port_ = 0;
  std::thread accept_thread_;
};

}  // namespace gvshim::gateway
