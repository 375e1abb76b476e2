// What modules need from the child reaper (reaper.h), as an interface so that it can be handed down as a
// dependency (one real Reaper per process, made in main) and faked in unit tests.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>

#include "absl/status/status.h"

namespace gvshim::sys {

class ProcessWatcher {
 public:
  using ExitCallback = std::function<void(int wait_status)>;

  virtual ~ProcessWatcher() = default;

  // True once the reaper thread collects this process's children. While it does, nothing else may call
  // waitpid()/wait(); while it does not, whoever spawned a child collects it.
  virtual bool running() const = 0;

  // Calls on_exit with the raw wait status once pid has exited. If the exit was already collected (the child
  // died before this call) on_exit runs right away on the calling thread; otherwise it runs on the reaper
  // thread and must be quick. Several callbacks per pid are allowed. A pid that is not a child of this
  // process (or whose exit was collected and is no longer remembered) can never be reported: it is logged as
  // an error and on_exit runs at once with exit status 255.
  virtual void Watch(pid_t pid, ExitCallback on_exit) = 0;

  // Signals a watched child whose exit has not been collected yet, so a recycled pid is never hit. NOT_FOUND
  // for any other pid: one already collected, or never watched.
  virtual absl::Status Signal(pid_t pid, int sig) = 0;

  // For Spawn: the number of exits collected so far, read before fork, and the call that drops a remembered
  // exit of an earlier process with the same pid (collected before that point).
  virtual uint64_t ReapSequence() = 0;
  virtual void ForgetStaleExit(pid_t pid, uint64_t seq_before_fork) = 0;
};

}  // namespace gvshim::sys
