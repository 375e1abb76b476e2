// The console socket for `runsc create/exec --console-socket PATH`: runsc connects to it and sends the master
// side of the container's pty as an SCM_RIGHTS ancillary message (the same protocol runc uses).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "shim/sys/fd.h"

namespace gvshim::stdio {

class ConsoleSocket {
 public:
  // Listens on a fresh socket in a new private directory under /run/gvshim (falling back to /tmp when that is
  // not writable); the path stays well below the 108-byte sun_path limit.
  static absl::StatusOr<std::unique_ptr<ConsoleSocket>> Create();
  // Same, under `base_dir` (must exist).
  static absl::StatusOr<std::unique_ptr<ConsoleSocket>> CreateIn(const std::string& base_dir);

  ConsoleSocket(const ConsoleSocket&) = delete;
  ConsoleSocket& operator=(const ConsoleSocket&) = delete;
  // Removes the socket file and its directory.
  ~ConsoleSocket();

  const std::string& path() const { return path_; }

  // Accepts one connection and receives the pty master from it. DEADLINE_EXCEEDED when nothing arrives in
  // time; INVALID_ARGUMENT when the peer sent no fd or one that is not a terminal.
  absl::StatusOr<sys::UniqueFd> ReceiveMaster(absl::Duration timeout);

 private:
  ConsoleSocket(std::string dir, std::string path, sys::UniqueFd listener)
      : dir_(std::move(dir)), path_(std::move(path)), listener_(std::move(listener)) {}

  std::string dir_;
  std::string path_;
  sys::UniqueFd listener_;
};

}  // namespace gvshim::stdio
