// An events::Publisher for unit tests: keeps every published event (proto type name + serialized bytes) in
// order, and lets a test wait, without sleeping, until some event has been published.
#pragma once

#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "google/protobuf/message_lite.h"
#include "shim/events/publisher.h"
#include "tests/unit/fakes/test_util.h"

namespace gvshim::testing {

struct RecordedEvent {
  std::string type;   // e.g. "containerd.events.TaskExit"
  std::string bytes;  // the serialized message
  std::string topic;  // events::TopicFor

  // Decodes the event as M (an empty M if the type does not match).
  template <typename M>
  M As() const {
    M m;
    if (type == M::default_instance().GetTypeName()) m.ParseFromString(bytes);
    return m;
  }
};

class RecordingPublisher : public events::Publisher {
 public:
  using Match = std::function<bool(const RecordedEvent&)>;

  void Publish(const google::protobuf::MessageLite& event) override {
    RecordedEvent e{event.GetTypeName(), event.SerializeAsString(), events::TopicFor(event)};
    absl::MutexLock lock(&mu_);
    events_.push_back(std::move(e));
  }

  std::vector<RecordedEvent> Events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  std::vector<std::string> Types() {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> out;
    for (const auto& e : events_) out.push_back(e.type);
    return out;
  }
  // Waits until at least n events have been published; false on timeout.
  bool WaitForCount(size_t n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return events_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  // Waits for the first event of `type` for which `match` (if given) holds; returns its index in Events().
  std::optional<size_t> WaitFor(const std::string& type, absl::Duration timeout, Match match = nullptr) {
    absl::MutexLock lock(&mu_);
    std::optional<size_t> found;
    auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (size_t i = 0; i < events_.size(); ++i) {
        if (events_[i].type == type && (!match || match(events_[i]))) {
          found = i;
          return true;
        }
      }
      return false;
    };
    mu_.AwaitWithTimeout(absl::Condition(&seen), timeout);
    return found;
  }
  // Index of the first event of `type` matching, or nullopt; does not wait.
  std::optional<size_t> Find(const std::string& type, Match match = nullptr) {
    return WaitFor(type, absl::ZeroDuration(), match);
  }
  size_t Count(const std::string& type) {
    absl::MutexLock lock(&mu_);
    size_t n = 0;
    for (const auto& e : events_) n += e.type == type;
    return n;
  }
  void Clear() {
    absl::MutexLock lock(&mu_);
    events_.clear();
  }

 private:
  absl::Mutex mu_;
  std::vector<RecordedEvent> events_ ABSL_GUARDED_BY(mu_);
};

// Type names of the task events, as RecordedEvent reports them.
namespace event_types {
inline constexpr char kTaskCreate[] = "containerd.events.TaskCreate";
inline constexpr char kTaskStart[] = "containerd.events.TaskStart";
inline constexpr char kTaskExit[] = "containerd.events.TaskExit";
inline constexpr char kTaskDelete[] = "containerd.events.TaskDelete";
inline constexpr char kTaskOOM[] = "containerd.events.TaskOOM";
inline constexpr char kExecAdded[] = "containerd.events.TaskExecAdded";
inline constexpr char kExecStarted[] = "containerd.events.TaskExecStarted";
inline constexpr char kPaused[] = "containerd.events.TaskPaused";
inline constexpr char kResumed[] = "containerd.events.TaskResumed";
}  // namespace event_types

}  // namespace gvshim::testing
