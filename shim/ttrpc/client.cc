#include "shim/ttrpc/client.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "gvshim/ttrpc/v1/ttrpc.pb.h"
#include "shim/base/log.h"
#include "shim/base/status.h"
#include "shim/sys/socket.h"
#include "shim/ttrpc/frame.h"
#include "shim/ttrpc/status.h"

namespace gvshim::ttrpc {
absl::StatusOr<std::unique_ptr<Client>> Client::Dial(const std::string& unix_path, absl::Duration timeout) {
  auto fd = sys::DialUnix(unix_path, timeout);
  if (!fd.ok()) return Annotate(fd.status(), "ttrpc");
  return FromFd(std::move(*fd));
}

std::unique_ptr<Client> Client::FromFd(sys::UniqueFd fd) {
  std::unique_ptr<Client> client(new Client(std::move(fd)));
  absl::MutexLock lock(&client->close_mu_);
  client->reader_ = std::thread([c = client.get()] { c->ReadLoop(); });
  return client;
}

Client::Client(sys::UniqueFd fd) : fd_(std::move(fd)) {}

Client::~Client() { Close(); }

void Client::Close() {
  absl::MutexLock close_lock(&close_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (broken_.ok()) broken_ = absl::UnavailableError("ttrpc: client closed");
  }
  // Wakes the reader (read returns 0) and any writer blocked on a full socket.
  ::shutdown(fd_.get(), SHUT_RDWR);
  if (reader_.joinable()) reader_.join();
}

absl::StatusOr<std::string> Client::Call(const std::string& service, const std::string& method,
                                         const std::string& payload, const Metadata& metadata,
                                         absl::Duration timeout) {
  const std::string what = absl::StrCat("ttrpc call ", service, "/", method);
  if (timeout <= absl::ZeroDuration())
    return absl::DeadlineExceededError(absl::StrCat(what, ": no time left"));
  const absl::Time deadline = absl::Now() + timeout;  // InfiniteFuture for an infinite timeout

  v1::Request req;
  req.set_service(service);
  req.set_method(method);
  req.set_payload(payload);
  if (timeout != absl::InfiniteDuration()) req.set_timeout_nano(absl::ToInt64Nanoseconds(timeout));
  for (const auto& [k, v] : metadata) {
    v1::KeyValue* kv = req.add_metadata();
    kv->set_key(k);
    kv->set_value(v);
  }
  const std::string body = req.SerializeAsString();
  if (body.size() > kMaxPayload) {
    return absl::ResourceExhaustedError(absl::StrCat(what, ": request of ", body.size(),
                                                     " bytes exceeds maximum message size of ", kMaxPayload));
  }

  Pending pending;
  uint32_t id;
  {
    absl::MutexLock lock(&mu_);
    if (!broken_.ok()) return absl::Status(broken_.code(), absl::StrCat(what, ": ", broken_.message()));
    id = next_stream_id_;
    next_stream_id_ += 2;
    pending_[id] = &pending;
  }

  const std::string frame = EncodeFrame(id, FrameType::kRequest, 0, body);
  int send_errno = 0;
  {
    absl::MutexLock lock(&write_mu_);
    absl::string_view rest = frame;
    while (!rest.empty()) {
      ssize_t n = ::send(fd_.get(), rest.data(), rest.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        send_errno = errno;
        break;
      }
      rest.remove_prefix(static_cast<size_t>(n));
    }
  }
  if (send_errno != 0) {
    // The peer no longer takes requests (e.g. a server draining on shutdown), but responses to calls already
    // sent may still arrive: fail new calls, and leave pending ones to the reader.
    absl::MutexLock lock(&mu_);
    pending_.erase(id);
    if (pending.done) return std::move(pending.result);
    const absl::Status st = absl::UnavailableError(absl::StrCat(what, ": send: ", strerror(send_errno)));
    if (broken_.ok()) broken_ = st;
    return st;
  }

  absl::MutexLock lock(&mu_);
  if (!mu_.AwaitWithDeadline(absl::Condition(&pending.done), deadline)) {
    pending_.erase(id);
    return absl::DeadlineExceededError(
        absl::StrCat(what, ": deadline exceeded after ", absl::FormatDuration(timeout)));
  }
  return std::move(pending.result);
}

void Client::ReadLoop() {
  FrameReader reader;
  Frame frame;
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::read(fd_.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      FailAll(absl::UnavailableError(absl::StrCat("ttrpc: connection read failed: ", strerror(errno))));
      return;
    }
    if (n == 0) {
      FailAll(absl::UnavailableError("ttrpc: connection closed"));
      return;
    }
    reader.Feed(absl::string_view(buf, static_cast<size_t>(n)));
    for (;;) {
      FrameReader::Result r = reader.Next(&frame);
      if (r == FrameReader::Result::kNeedMore) break;
      absl::StatusOr<std::string> result;
      if (r == FrameReader::Result::kOversized) {
        result = absl::ResourceExhaustedError(absl::StrCat("ttrpc: response length ", frame.header.length,
                                                           " exceeds maximum message size of ", kMaxPayload));
      } else if (frame.header.type != static_cast<uint8_t>(FrameType::kResponse)) {
        continue;  // nothing else is meaningful to a unary client
      } else {
        v1::Response resp;
        if (!resp.ParseFromString(frame.payload)) {
          result = absl::InternalError("ttrpc: malformed response message");
        } else if (absl::Status st = FromProto(resp.status()); !st.ok()) {
          result = st;
        } else {
          result = std::move(*resp.mutable_payload());
        }
      }
      absl::MutexLock lock(&mu_);
      auto it = pending_.find(frame.header.stream_id);
      if (it == pending_.end()) continue;  // timed out, or never ours
      it->second->result = std::move(result);
      it->second->done = true;
      pending_.erase(it);
    }
  }
}

void Client::FailAll(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  if (broken_.ok()) broken_ = status;
  for (auto& [id, p] : pending_) {
    p->result = broken_;
    p->done = true;
  }
  pending_.clear();
}

}  // namespace gvshim::ttrpc
