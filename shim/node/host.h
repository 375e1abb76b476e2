// The node installer's view of the host: where the host's root filesystem is mounted, and how a command is
// run as the host runs it (inside the host's mount namespace). Commands sit behind the `Host` interface so
// that unit tests can script containerd's answers; files are real files under the host root (a temp dir in
// tests).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace gvshim::node {

struct CommandResult {
  int exit_code = 0;  // shell convention: 128+signal for a signalled command
  std::string out, err;
};

class Host {
 public:
  virtual ~Host() = default;
  // Runs argv on the host and waits at most `timeout` (then kills it and fails with DEADLINE_EXCEEDED). A
  // non-zero exit is NOT an error here: callers read exit_code and name the command in their own message.
  virtual absl::StatusOr<CommandResult> Run(const std::vector<std::string>& argv, absl::Duration timeout) = 0;
};

// Runs commands through `prefix` (e.g. {"nsenter", "--target", "1", "--mount", "--"}); an empty prefix runs
// them directly (the installer is on the host, as in the tests).
class RealHost : public Host {
 public:
  explicit RealHost(std::vector<std::string> prefix) : prefix_(std::move(prefix)) {}
  absl::StatusOr<CommandResult> Run(const std::vector<std::string>& argv, absl::Duration timeout) override;

 private:
  std::vector<std::string> prefix_;
};

// Runs argv (no prefix), collecting stdout and stderr (each capped at 4 MiB), bounded by `timeout`.
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv, absl::Duration timeout);

// "argv0 arg1 ...: exit N: <stderr's last line or stdout's>" for error messages.
std::string DescribeFailure(const std::vector<std::string>& argv, const CommandResult& r);

// A host path ("/etc/containerd/config.toml") as seen by the installer: host_root + path.
std::string HostPath(const std::string& host_root, const std::string& path);

}  // namespace gvshim::node
