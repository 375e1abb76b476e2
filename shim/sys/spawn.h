// Starting child processes: fork + exec with explicit fd plumbing, done so that it is safe in a multithreaded
// process (everything the child needs is built before fork; the child makes only async-signal-safe calls).
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "shim/sys/process_watcher.h"

namespace gvshim::sys {

struct SpawnOptions {
  // argv[0] is looked up in PATH when it has no '/'. PATH comes from `env` when it sets one, else from the
  // shim's own environment.
  std::vector<std::string> argv;
  // "KEY=VALUE" entries; empty means inherit the shim's environment.
  std::vector<std::string> env;
  // Working directory of the child; empty means the shim's.
  std::string cwd;
  // Not owned; dup'ed into the child. -1 gives the child /dev/null.
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  // Not owned; extra_fds[i] becomes fd 3+i in the child. Every other fd is closed on exec.
  std::vector<int> extra_fds;
  // setsid() in the child.
  bool new_session = false;
  // Signal the child gets when the *thread* that spawned it exits (PR_SET_PDEATHSIG semantics); 0 = none.
  // Long-lived children spawned from short-lived threads must use 0.
  int pdeathsig = SIGKILL;
  // The child gets its own mount namespace (a slave of the shim's, so later mounts still reach it) in which
  // /proc/sys/net is an empty read-only tmpfs. For `runsc create` and `start` of a sandbox with
  // --network=sandbox only: see shim/task/netns.h for why, and for the check that must pass first.
  bool hide_proc_sys_net = false;
};

// Starts the child and returns its pid once exec has succeeded. A failure before or at exec (missing binary,
// bad cwd, ...) is reported as an error ("exec <argv0>: <strerror>", "chdir <cwd>: ...") and the failed child
// is already reaped (or left to the reaper thread). The child starts with an empty signal mask and default
// dispositions, whatever the shim blocks or ignores.
// `reaper` is the process's reaper, null in a process that has none: it must be given wherever one runs, so
// that an exit it remembers of an earlier process with the same pid is not taken for this child's.
absl::StatusOr<pid_t> Spawn(const SpawnOptions& opts, ProcessWatcher* reaper);

// Exit code in shell convention: WEXITSTATUS, or 128+signal for a signalled child.
int ExitCodeFromWaitStatus(int wait_status);

}  // namespace gvshim::sys
