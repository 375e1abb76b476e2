#include "shim/ttrpc/server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <exception>
#include <set>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "gvshim/ttrpc/v1/ttrpc.pb.h"
#include "shim/base/log.h"
#include "shim/base/status.h"
#include "shim/sys/socket.h"
#include "shim/ttrpc/frame.h"
#include "shim/ttrpc/status.h"

namespace gvshim::ttrpc {
namespace {

std::string StripUnixScheme(const std::string& path) {
  return path.rfind("unix://", 0) == 0 ? path.substr(7) : path;
}

absl::Status SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    // MSG_NOSIGNAL: a peer that went away must not SIGPIPE the shim.
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "ttrpc send");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status SetNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
    return ErrnoStatus(errno, "fcntl O_NONBLOCK");
  return absl::OkStatus();
}

}  // namespace

std::optional<std::string> CallContext::Get(absl::string_view key) const {
  for (const auto& [k, v] : metadata) {
    if (k == key) return v;
  }
  return std::nullopt;
}

absl::Status ParseRequest(absl::string_view frame_payload, absl::Time now, CallContext* ctx,
                          std::string* payload) {
  v1::Request req;
  if (!req.ParseFromArray(frame_payload.data(), static_cast<int>(frame_payload.size()))) {
    return absl::InvalidArgumentError("ttrpc: unmarshal request: not a valid Request message");
  }
  ctx->service = req.service();
  ctx->method = req.method();
  ctx->metadata.clear();
  ctx->metadata.reserve(req.metadata_size());
  for (const auto& kv : req.metadata()) ctx->metadata.emplace_back(kv.key(), kv.value());
  // absl saturates: a huge timeout yields InfiniteFuture rather than overflowing.
  ctx->deadline =
      req.timeout_nano() > 0 ? now + absl::Nanoseconds(req.timeout_nano()) : absl::InfiniteFuture();
  *payload = std::move(*req.mutable_payload());
  return absl::OkStatus();
}

struct Server::Conn {
  explicit Conn(int fd) : fd(fd) {}

  sys::UniqueFd fd;  // closed only when the Conn is destroyed, after all of its threads are joined
  std::thread reader;
  bool finished = false;  // guarded by Server::mu_; set by the reader as its last act

  absl::Mutex write_mu;  // one frame at a time on the wire

  absl::Mutex mu;
  std::map<uint64_t, std::thread> handlers ABSL_GUARDED_BY(mu);
  std::vector<uint64_t> done ABSL_GUARDED_BY(mu);  // handler threads that have returned, not yet joined
  std::set<uint32_t> streams ABSL_GUARDED_BY(mu);  // stream ids in flight
  uint64_t next_token ABSL_GUARDED_BY(mu) = 0;
  bool reading_done ABSL_GUARDED_BY(mu) = false;  // the reader takes no more requests

  // No more requests will start and none is in flight.
  static bool Idle(Conn* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu) {
    return c->reading_done && c->streams.empty();
  }

  // Joins handler threads that have finished.
  void ReapHandlers() {
    std::vector<std::thread> finished_threads;
    {
      absl::MutexLock lock(&mu);
      for (uint64_t token : done) {
        auto it = handlers.find(token);
        if (it == handlers.end()) continue;
        finished_threads.push_back(std::move(it->second));
        handlers.erase(it);
      }
      done.clear();
    }
    for (auto& t : finished_threads) t.join();
  }

  // Waits for every handler thread (in-flight handlers run to completion).
  void JoinHandlers() {
    std::map<uint64_t, std::thread> all;
    {
      absl::MutexLock lock(&mu);
      all.swap(handlers);
      done.clear();
    }
    for (auto& [token, t] : all) t.join();
  }
};

Server::Server() {
  int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) log::Errorf("ttrpc server: eventfd: %s", strerror(errno));
  wake_fd_.reset(fd);
}

Server::~Server() { Shutdown(); }

void Server::Register(std::string service, std::string method, Handler handler) {
  absl::MutexLock lock(&mu_);
  handlers_[{std::move(service), std::move(method)}] = std::move(handler);
}

void Server::SetConnectionObserver(std::function<void(size_t)> observer) { observer_ = std::move(observer); }

size_t Server::ConnectionCount() const {
  absl::MutexLock lock(&mu_);
  return open_conns_;
}

absl::Status Server::Listen(const std::string& unix_path) {
  const std::string path = StripUnixScheme(unix_path);
  auto fd = sys::ClaimUnixSocket(path, 0600);
  if (!fd.ok()) return Annotate(fd.status(), "ttrpc");
  if (!fd->valid()) {
    return absl::FailedPreconditionError(
        absl::StrCat("ttrpc listen ", path, ": another server is listening on this socket"));
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    absl::Status s = ErrnoStatus(errno, absl::StrCat("ttrpc listen ", path, ": stat"));
    ::unlink(path.c_str());
    return s;
  }
  if (absl::Status s = AdoptListener(std::move(*fd)); !s.ok()) {
    ::unlink(path.c_str());
    return s;
  }
  socket_dev_ = st.st_dev;
  socket_ino_ = st.st_ino;
  socket_path_ = path;
  return absl::OkStatus();
}

absl::Status Server::AdoptListener(sys::UniqueFd listen_fd) {
  if (!listen_fd) return absl::InvalidArgumentError("ttrpc adopt listener: invalid fd");
  int accepting = 0;
  socklen_t len = sizeof(accepting);
  if (::getsockopt(listen_fd.get(), SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0) {
    return ErrnoStatus(errno, "ttrpc adopt listener: getsockopt SO_ACCEPTCONN");
  }
  if (!accepting) {
    return absl::InvalidArgumentError(
        "ttrpc adopt listener: the socket is not listening (sys::ListenUnix makes one)");
  }
  RETURN_IF_ERROR(SetNonBlocking(listen_fd.get()));
  listen_fd_ = std::move(listen_fd);
  return absl::OkStatus();
}

absl::Status Server::Start() {
  absl::MutexLock lock(&mu_);
  if (!listen_fd_)
    return absl::FailedPreconditionError("ttrpc server start: no listener (call Listen first)");
  if (!wake_fd_) return absl::InternalError("ttrpc server start: no eventfd");
  if (started_ || stopping_)
    return absl::FailedPreconditionError("ttrpc server start: already started or shut down");
  started_ = true;
  accept_thread_ = std::thread([this] { AcceptLoop(); });
  return absl::OkStatus();
}

void Server::Wake() {
  uint64_t one = 1;
  ssize_t n = ::write(wake_fd_.get(), &one, sizeof(one));
  (void)n;  // EAGAIN means a wake-up is already pending, which is just as good
}

void Server::NotifyObserver() {
  if (!observer_) return;
  // Serialised, and the count read under the same lock, so observers see counts in the order they happened.
  absl::MutexLock observer_lock(&observer_mu_);
  size_t count;
  {
    absl::MutexLock lock(&mu_);
    count = open_conns_;
  }
  observer_(count);
}

void Server::ReapFinishedConns() {
  std::list<std::unique_ptr<Conn>> finished;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = conns_.begin(); it != conns_.end();) {
      auto next = std::next(it);
      if ((*it)->finished) finished.splice(finished.end(), conns_, it);
      it = next;
    }
  }
  for (auto& c : finished) c->reader.join();
}

void Server::AcceptLoop() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      log::Errorf("ttrpc server: poll: %s", strerror(errno));
      return;
    }
    if (fds[1].revents & POLLIN) {
      uint64_t v;
      ssize_t n = ::read(wake_fd_.get(), &v, sizeof(v));
      (void)n;
    }
    ReapFinishedConns();
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    if (fds[0].revents & (POLLERR | POLLNVAL)) {
      log::Errorf("ttrpc server: listening socket failed; no longer accepting");
      return;
    }
    if (!(fds[0].revents & POLLIN)) continue;

    int c = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      int err = errno;
      if (err == EINTR || err == EAGAIN || err == EWOULDBLOCK || err == ECONNABORTED) continue;
      log::Warnf("ttrpc server: accept: %s", strerror(err));
      // Out of fds or memory: back off briefly instead of spinning, but stay responsive to Shutdown.
      pollfd wake = {wake_fd_.get(), POLLIN, 0};
      ::poll(&wake, 1, 100);
      continue;
    }
    auto conn = std::make_unique<Conn>(c);
    Conn* raw = conn.get();
    {
      absl::MutexLock lock(&mu_);
      conns_.push_back(std::move(conn));
      ++open_conns_;
      try {
        raw->reader = std::thread([this, raw] { ServeConn(raw); });
      } catch (const std::system_error& e) {
        log::Errorf("ttrpc server: cannot start connection thread: %s", e.what());
        --open_conns_;
        conns_.pop_back();
        continue;
      }
    }
    NotifyObserver();
  }
}

void Server::ServeConn(Conn* conn) {
  FrameReader reader;
  Frame frame;
  char buf[64 * 1024];
  bool keep = true;
  while (keep) {
    ssize_t n = ::read(conn->fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != ECONNRESET) log::Debugf("ttrpc server: read: %s", strerror(errno));
      break;
    }
    if (n == 0) break;
    reader.Feed(absl::string_view(buf, static_cast<size_t>(n)));
    for (;;) {
      FrameReader::Result r = reader.Next(&frame);
      if (r == FrameReader::Result::kNeedMore) break;
      const uint32_t sid = frame.header.stream_id;
      if (sid == 0 || sid % 2 == 0) {
        log::Warnf("ttrpc server: stream id %u is not client-initiated; closing connection", sid);
        keep = false;
        break;
      }
      if (r == FrameReader::Result::kOversized) {
        Respond(conn, sid,
                absl::ResourceExhaustedError(absl::StrCat("ttrpc: message length ", frame.header.length,
                                                          " exceeds maximum message size of ", kMaxPayload)),
                "");
        continue;
      }
      if (frame.header.type != static_cast<uint8_t>(FrameType::kRequest)) {
        Respond(conn, sid,
                absl::InvalidArgumentError(
                    absl::StrCat("ttrpc: unsupported message type ", frame.header.type, " on stream ", sid)),
                "");
        continue;
      }
      CallContext ctx;
      std::string payload;
      absl::Status parsed = ParseRequest(frame.payload, absl::Now(), &ctx, &payload);
      if (!parsed.ok()) {
        Respond(conn, sid, parsed, "");
        continue;
      }
      std::optional<Handler> handler = FindHandler(ctx.service, ctx.method);
      if (!handler) {
        Respond(conn, sid,
                absl::UnimplementedError(absl::StrCat("ttrpc: service ", ctx.service, ": method ", ctx.method,
                                                      ": not implemented")),
                "");
        continue;
      }

      conn->ReapHandlers();
      absl::Status refused;
      {
        absl::MutexLock lock(&conn->mu);
        if (conn->streams.count(sid) != 0) {
          log::Warnf("ttrpc server: stream id %u reused while in flight; closing connection", sid);
          keep = false;
          break;
        }
        if (conn->streams.size() >= kMaxInFlight) {
          refused = absl::ResourceExhaustedError(
              absl::StrCat("ttrpc: too many concurrent requests on this connection (", kMaxInFlight, ")"));
        } else {
          const uint64_t token = conn->next_token++;
          try {
            conn->handlers.emplace(
                token, std::thread([this, conn, sid, token, ctx = std::move(ctx),
                                    payload = std::move(payload), h = std::move(*handler)]() mutable {
                  absl::StatusOr<std::string> result;
                  try {
                    result = h(ctx, payload);
                  } catch (const std::exception& e) {
                    result = absl::InternalError(
                        absl::StrCat("ttrpc handler ", ctx.service, "/", ctx.method, " threw: ", e.what()));
                  } catch (...) {
                    result = absl::InternalError(
                        absl::StrCat("ttrpc handler ", ctx.service, "/", ctx.method, " threw"));
                  }
                  Respond(conn, sid, result.status(), result.ok() ? absl::string_view(*result) : "");
                  absl::MutexLock lock(&conn->mu);
                  conn->streams.erase(sid);
                  conn->done.push_back(token);
                }));
            conn->streams.insert(sid);
          } catch (const std::system_error& e) {
            refused =
                absl::ResourceExhaustedError(absl::StrCat("ttrpc: cannot start handler thread: ", e.what()));
          }
        }
      }
      if (!refused.ok()) Respond(conn, sid, refused, "");
    }
  }
  // While the server drains (Shutdown with a grace period), handlers in flight may still deliver responses.
  absl::Time drain_until = absl::InfinitePast();
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) drain_until = drain_deadline_;
  }
  {
    absl::MutexLock lock(&conn->mu);
    conn->reading_done = true;
    if (drain_until > absl::Now())
      conn->mu.AwaitWithDeadline(absl::Condition(&Conn::Idle, conn), drain_until);
  }
  // Let the peer see the close now; responses of handlers still running fail to send, which they tolerate.
  ::shutdown(conn->fd.get(), SHUT_RDWR);
  conn->JoinHandlers();

  {
    absl::MutexLock lock(&mu_);
    conn->finished = true;
    --open_conns_;
  }
  // From here on the accept thread (or Shutdown) may join and destroy this Conn; touch only the server.
  NotifyObserver();
  Wake();
}

void Server::Respond(Conn* conn, uint32_t stream_id, const absl::Status& status, absl::string_view payload) {
  v1::Response resp;
  ToProto(status, resp.mutable_status());
  resp.set_payload(std::string(payload));
  std::string bytes = resp.SerializeAsString();
  if (bytes.size() > kMaxPayload) {
    resp.Clear();
    ToProto(absl::ResourceExhaustedError(absl::StrCat(
                "ttrpc: response of ", bytes.size(), " bytes exceeds maximum message size of ", kMaxPayload)),
            resp.mutable_status());
    bytes = resp.SerializeAsString();
  }
  const std::string frame = EncodeFrame(stream_id, FrameType::kResponse, 0, bytes);
  absl::Status s;
  {
    absl::MutexLock lock(&conn->write_mu);
    s = SendAll(conn->fd.get(), frame);
  }
  if (!s.ok()) log::Debugf("ttrpc server: response on stream %u: %s", stream_id, s.ToString());
}

std::optional<Handler> Server::FindHandler(const std::string& service, const std::string& method) const {
  absl::MutexLock lock(&mu_);
  auto it = handlers_.find({service, method});
  if (it == handlers_.end()) return std::nullopt;
  return it->second;
}

void Server::Shutdown(absl::Duration grace) {
  absl::MutexLock shutdown_lock(&shutdown_mu_);
  const absl::Time deadline = absl::Now() + grace;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    drain_deadline_ = deadline;
  }
  if (wake_fd_) Wake();
  if (accept_thread_.joinable()) accept_thread_.join();
  listen_fd_.reset();
  if (!socket_path_.empty()) {
    // Unlink only if the path still names our socket (a successor may have bound it meanwhile).
    struct stat st;
    if (::lstat(socket_path_.c_str(), &st) == 0 && st.st_dev == socket_dev_ && st.st_ino == socket_ino_) {
      ::unlink(socket_path_.c_str());
    }
    socket_path_.clear();
  }
  // The accept thread is gone, so nobody else destroys Conns: they can be used without mu_.
  std::list<std::unique_ptr<Conn>> conns;
  {
    absl::MutexLock lock(&mu_);
    conns.swap(conns_);
  }
  if (grace > absl::ZeroDuration()) {
    // Readers see EOF once buffered requests are consumed; the peers' further sends fail (EPIPE).
    for (auto& c : conns) ::shutdown(c->fd.get(), SHUT_RD);
    for (auto& c : conns) {
      absl::MutexLock lock(&c->mu);
      c->mu.AwaitWithDeadline(absl::Condition(&Conn::Idle, c.get()), deadline);
    }
  }
  // Also unblocks handlers stuck writing to a peer that does not read.
  for (auto& c : conns) ::shutdown(c->fd.get(), SHUT_RDWR);
  for (auto& c : conns) {
    if (c->reader.joinable()) c->reader.join();
  }
}

}  // namespace gvshim::ttrpc
