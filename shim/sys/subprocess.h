// Running a command to its end: spawn it, feed its stdin, collect its stdout and stderr, wait for its exit
// with a timeout. The exit comes through the process's reaper when it runs (it owns every child's exit);
// in a process without one (the shim's `start` and `delete` commands, some tests) the child is collected
// here.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "shim/sys/process_watcher.h"
#include "shim/sys/spawn.h"

namespace gvshim::sys {

struct SubprocessResult {
  int wait_status = 0;
  int exit_code = 0;  // WEXITSTATUS, or 128+signal
  std::string out, err;
};

// Each of stdout and stderr is captured up to this many bytes; the rest is read and dropped.
inline constexpr size_t kMaxSubprocessCapture = 16 << 20;

// Spawns opts, feeds stdin_data (when non-empty and opts.stdin_fd is -1), collects stdout and stderr (each
// capped at kMaxSubprocessCapture; only for streams the caller left at -1) and waits for the exit. On
// timeout the child gets SIGKILL and the result is DEADLINE_EXCEEDED. Output still buffered in the pipes when
// the child exits is collected, but a grandchild that keeps a pipe open does not hold the call up.
// `reaper` may be null, or not running: then nobody else collects this process's children and the child is
// collected here with waitpid.
absl::StatusOr<SubprocessResult> RunSubprocess(ProcessWatcher* reaper, SpawnOptions opts,
                                               absl::Duration timeout, const std::string& stdin_data = "");

}  // namespace gvshim::sys
