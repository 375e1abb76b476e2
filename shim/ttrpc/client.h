// A ttrpc client on a Unix socket: unary calls, multiplexed over one connection.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "shim/sys/fd.h"
#include "shim/ttrpc/server.h"  // Metadata

namespace gvshim::ttrpc {

class Client {
 public:
  // Connects to unix_path (a "unix://" prefix is accepted). Connection failures are UNAVAILABLE; a connect
  // that does not complete within timeout is DEADLINE_EXCEEDED.
  static absl::StatusOr<std::unique_ptr<Client>> Dial(const std::string& unix_path, absl::Duration timeout);
  // Wraps an already-connected stream socket (e.g. one end of a socketpair).
  static std::unique_ptr<Client> FromFd(sys::UniqueFd fd);

  ~Client();  // Close()
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Thread-safe. Each call gets the next odd stream id; a reader thread matches responses to streams.
  // The timeout is sent as timeout_nano (unless it is infinite) and bounds the wait for the response:
  // DEADLINE_EXCEEDED when it passes (a late response is dropped). A broken or closed connection fails every
  // pending and later call with UNAVAILABLE. A non-OK status in the Response is returned as is.
  absl::StatusOr<std::string> Call(const std::string& service, const std::string& method,
                                   const std::string& payload, const Metadata& metadata = {},
                                   absl::Duration timeout = absl::Seconds(30));

  // Closes the connection, fails pending calls with UNAVAILABLE and joins the reader thread. Idempotent; must
  // not race with the destructor.
  void Close();

 private:
  struct Pending {
    bool done = false;
    absl::StatusOr<std::string> result;
  };

  explicit Client(sys::UniqueFd fd);
  void ReadLoop();
  // Marks the connection broken and completes every pending call with `status`.
  void FailAll(const absl::Status& status);

  sys::UniqueFd fd_;      // closed in the destructor only, after the reader is joined
  absl::Mutex write_mu_;  // one frame at a time on the wire

  absl::Mutex mu_;
  uint32_t next_stream_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint32_t, Pending*> pending_ ABSL_GUARDED_BY(mu_);
  absl::Status broken_ ABSL_GUARDED_BY(mu_);  // non-OK once the connection is unusable

  absl::Mutex close_mu_;
  std::thread reader_ ABSL_GUARDED_BY(close_mu_);
};

}  // namespace gvshim::ttrpc
