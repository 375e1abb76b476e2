// Admission control for one sandbox: at most max_concurrent snippets run, at most max_queue wait (FIFO) for
// a slot. A slot is held until the runner has reported the job finished, even if the RPC went away first, so
// the runner is never handed more jobs than it was told to accept.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace gvshim::execute {

class Scheduler {
 public:
  Scheduler(uint32_t max_concurrent, uint32_t max_queue);
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Releases its slot when destroyed.
  class Slot {
   public:
    explicit Slot(Scheduler* s) : s_(s) {}
    ~Slot();
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;

   private:
    Scheduler* s_;
  };

  // Waits for a slot until `deadline`, checking `cancelled` every `poll`. Errors: RESOURCE_EXHAUSTED when the
  // queue is full ("execute queue full (N waiting, M running)") or the queue wait passed `queue_deadline`;
  // DEADLINE_EXCEEDED at `rpc_deadline`; CANCELLED when cancelled() turned true; UNAVAILABLE after Close().
  absl::StatusOr<std::shared_ptr<Slot>> Acquire(absl::Time queue_deadline, absl::Time rpc_deadline,
                                                const std::function<bool()>& cancelled,
                                                absl::Duration poll = absl::Milliseconds(20));

  // Makes waiting and later Acquire calls fail with UNAVAILABLE (the sandbox is going away).
  void Close();

  uint32_t running();
  uint32_t waiting();
  // Blocks until no slot is held (every Slot destroyed) or the timeout passes; true if none is held.
  bool WaitIdle(absl::Duration timeout);

 private:
  void Release();

  const uint32_t max_concurrent_;
  const uint32_t max_queue_;
  absl::Mutex mu_;
  uint32_t running_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<uint64_t> queue_ ABSL_GUARDED_BY(mu_);  // tickets of waiting callers, first in first out
  uint64_t next_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace gvshim::execute
