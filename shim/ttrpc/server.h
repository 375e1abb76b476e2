// A ttrpc server on a Unix socket, speaking containerd/ttrpc's unary protocol.
//
// Threads: one accept thread; one reader thread per connection; each request runs on its own handler thread,
// so requests of one connection run concurrently (containerd keeps a Wait call blocked while it sends
// others). Responses are written under a per-connection mutex. Finished handler threads are joined by their
// connection's reader; finished connections are joined by the accept thread; Shutdown() joins whatever is
// left.
//
// Malformed input (what the peer gets):
//   - stream id 0 or even (not client-initiated): the connection is closed — there is no stream to answer on.
//   - a frame type other than request on a valid stream: INVALID_ARGUMENT on that stream.
//   - length > kMaxPayload: RESOURCE_EXHAUSTED on that stream; the payload is read and discarded (as
//     containerd/ttrpc does), so the connection stays usable.
//   - a Request that is not valid protobuf: INVALID_ARGUMENT on that stream.
//   - a stream id that is still in flight on this connection: the connection is closed.
//   - unknown service or method: UNIMPLEMENTED.
//   - more than kMaxInFlight concurrent requests on a connection: RESOURCE_EXHAUSTED.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "shim/sys/fd.h"

namespace gvshim::ttrpc {

using Metadata = std::vector<std::pair<std::string, std::string>>;

struct CallContext {
  std::string service;
  std::string method;
  Metadata metadata;
  absl::Time deadline = absl::InfiniteFuture();  // from the Request's timeout_nano; InfiniteFuture if none

  // Value of the first metadata entry named `key`.
  std::optional<std::string> Get(absl::string_view key) const;
};

using Handler = std::function<absl::StatusOr<std::string>(const CallContext&, const std::string& payload)>;

// Decodes a Request message (a request frame's payload) into the call context and the method's payload.
// `now` anchors the deadline. Garbage → INVALID_ARGUMENT. Used by the server and the fuzzer.
absl::Status ParseRequest(absl::string_view frame_payload, absl::Time now, CallContext* ctx,
                          std::string* payload);

class Server {
 public:
  // Concurrent requests allowed on one connection before new ones are refused with RESOURCE_EXHAUSTED.
  static constexpr size_t kMaxInFlight = 256;

  Server();
  ~Server();  // Shutdown()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Registers the handler of service/method (replacing an earlier one). Call before Start.
  void Register(std::string service, std::string method, Handler handler);

  // Claims unix_path (a "unix://" prefix is accepted) with sys::ClaimUnixSocket, mode 0600: a stale socket
  // file there (nobody listens) is replaced; a live server there, even a slow one, is an error
  // (FAILED_PRECONDITION or UNAVAILABLE), and so is any other kind of file. Shutdown unlinks the socket again
  // if it is still ours.
  absl::Status Listen(const std::string& unix_path);
  // Serves an already-listening socket (sys::ListenUnix, sys::ClaimUnixSocket); one that is not listening is
  // INVALID_ARGUMENT.
  absl::Status AdoptListener(sys::UniqueFd listen_fd);

  // Starts the accept thread. Requires Listen or AdoptListener first.
  absl::Status Start();

  // Stops accepting and stops reading requests at once (clients' further sends fail), lets handlers in flight
  // deliver their responses for up to `grace`, then closes every connection (calls still pending in clients
  // fail with UNAVAILABLE), waits for the remaining handlers to return and joins every thread. Idempotent.
  // Must not be called from a handler (it would wait for itself).
  void Shutdown(absl::Duration grace);
  // Shutdown(kDefaultShutdownGrace): long enough for e.g. the response of the Shutdown RPC that triggered it.
  void Shutdown() { Shutdown(kDefaultShutdownGrace); }
  static constexpr absl::Duration kDefaultShutdownGrace = absl::Seconds(2);

  size_t ConnectionCount() const;
  // Called (from server threads, with no server lock held) whenever a connection opens or closes, with the
  // number of open connections. Set before Start.
  void SetConnectionObserver(std::function<void(size_t open_connections)> observer);

 private:
  struct Conn;

  void AcceptLoop();
  void ServeConn(Conn* conn);
  void HandleRequest(Conn* conn, uint32_t stream_id, std::string frame_payload);
  // Writes a Response on the stream; errors mean the peer is gone and are only logged.
  void Respond(Conn* conn, uint32_t stream_id, const absl::Status& status, absl::string_view payload);
  void ReapFinishedConns();
  // Precondition: mu_ not held.
  void NotifyObserver();
  void Wake();
  std::optional<Handler> FindHandler(const std::string& service, const std::string& method) const;

  mutable absl::Mutex mu_;
  std::map<std::pair<std::string, std::string>, Handler> handlers_ ABSL_GUARDED_BY(mu_);
  std::list<std::unique_ptr<Conn>> conns_ ABSL_GUARDED_BY(mu_);
  size_t open_conns_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time drain_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();  // set by Shutdown
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void(size_t)> observer_;  // written before Start only
  absl::Mutex observer_mu_;               // acquired before mu_, never after

  sys::UniqueFd listen_fd_;
  sys::UniqueFd wake_fd_;    // eventfd: Shutdown and finished connections wake the accept thread
  std::string socket_path_;  // set when Listen created the socket
  dev_t socket_dev_ = 0;
  ino_t socket_ino_ = 0;
  std::thread accept_thread_;
  absl::Mutex shutdown_mu_;  // serialises Shutdown calls
};

}  // namespace gvshim::ttrpc
