#include "shim/execute/server/scheduler.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace gvshim::execute {

Scheduler::Scheduler(uint32_t max_concurrent, uint32_t max_queue)
    : max_concurrent_(std::max<uint32_t>(1, max_concurrent)), max_queue_(max_queue) {}

Scheduler::Slot::~Slot() { s_->Release(); }

void Scheduler::Release() {
  absl::MutexLock lock(&mu_);
  --running_;
}

absl::StatusOr<std::shared_ptr<Scheduler::Slot>> Scheduler::Acquire(absl::Time queue_deadline,
                                                                    absl::Time rpc_deadline,
                                                                    const std::function<bool()>& cancelled,
                                                                    absl::Duration poll) {
  absl::MutexLock lock(&mu_);
  if (closed_) return absl::UnavailableError("the execute service is shutting down");
  if (queue_.empty() && running_ < max_concurrent_) {
    ++running_;
    return std::make_shared<Slot>(this);
  }
  if (queue_.size() >= max_queue_) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("execute queue full (%d waiting, %d running)", queue_.size(), running_));
  }
  const uint64_t ticket = next_ticket_++;
  queue_.push_back(ticket);
  auto leave = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    queue_.erase(std::find(queue_.begin(), queue_.end(), ticket));
  };
  auto my_turn = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closed_ || (queue_.front() == ticket && running_ < max_concurrent_);
  };
  const absl::Time start = absl::Now();
  while (true) {
    absl::Time now = absl::Now();
    absl::Time until = std::min({queue_deadline, rpc_deadline, now + poll});
    if (mu_.AwaitWithDeadline(absl::Condition(&my_turn), until)) {
      if (closed_) {
        leave();
        return absl::UnavailableError("the execute service is shutting down");
      }
      queue_.pop_front();
      ++running_;
      return std::make_shared<Slot>(this);
    }
    now = absl::Now();
    if (cancelled && cancelled()) {
      leave();
      return absl::CancelledError("cancelled while waiting in the execute queue");
    }
    if (now >= rpc_deadline) {
      leave();
      return absl::DeadlineExceededError(absl::StrFormat("deadline passed after %d ms in the execute queue",
                                                         absl::ToInt64Milliseconds(now - start)));
    }
    if (now >= queue_deadline) {
      leave();
      return absl::ResourceExhaustedError(absl::StrFormat(
          "no execute slot within the queue timeout of %d ms (%d waiting, %d running)",
          absl::ToInt64Milliseconds(absl::Ceil(queue_deadline - start, absl::Milliseconds(1))), queue_.size(),
          running_));
    }
  }
}

void Scheduler::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

uint32_t Scheduler::running() {
  absl::MutexLock lock(&mu_);
  return running_;
}

uint32_t Scheduler::waiting() {
  absl::MutexLock lock(&mu_);
  return static_cast<uint32_t>(queue_.size());
}

bool Scheduler::WaitIdle(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto idle = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ == 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

}  // namespace gvshim::execute
