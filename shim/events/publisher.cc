#include "shim/events/publisher.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/any.pb.h"
#include "shim/base/log.h"
#include "shim/events/timestamp.h"

namespace gvshim::events {

std::string TopicFor(const google::protobuf::MessageLite& event) {
  static const auto* topics = new absl::flat_hash_map<std::string, std::string>{
      {"containerd.events.TaskCreate", "/tasks/create"},
      {"containerd.events.TaskStart", "/tasks/start"},
      {"containerd.events.TaskDelete", "/tasks/delete"},
      {"containerd.events.TaskExit", "/tasks/exit"},
      {"containerd.events.TaskOOM", "/tasks/oom"},
      {"containerd.events.TaskExecAdded", "/tasks/exec-added"},
      {"containerd.events.TaskExecStarted", "/tasks/exec-started"},
      {"containerd.events.TaskPaused", "/tasks/paused"},
      {"containerd.events.TaskResumed", "/tasks/resumed"},
      {"containerd.events.TaskCheckpointed", "/tasks/checkpointed"},
  };
  auto it = topics->find(event.GetTypeName());
  return it == topics->end() ? "" : it->second;
}

Forwarder::Forwarder(std::unique_ptr<EnvelopeSink> sink, std::string ns, Options options)
    : sink_(std::move(sink)), ns_(std::move(ns)), options_(options) {
  thread_ = std::thread([this] { Run(); });
}

Forwarder::~Forwarder() {
  Drain(options_.shutdown_drain);
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

bool Forwarder::MustDeliver(const Envelope& envelope) { return envelope.topic() == "/tasks/exit"; }

void Forwarder::Publish(const google::protobuf::MessageLite& event) {
  Envelope env;
  *env.mutable_timestamp() = NowTimestamp();
  env.set_namespace_(ns_);
  env.set_topic(TopicFor(event));
  // containerd resolves the event type by the proto's full name (no type.googleapis.com/ prefix).
  env.mutable_event()->set_type_url(event.GetTypeName());
  env.mutable_event()->set_value(event.SerializeAsString());
  log::Debugf("publish %s (%s)", env.topic(), env.event().type_url());
  absl::MutexLock lock(&mu_);
  if (!MustDeliver(env)) {
    if (droppable_queued_ >= options_.max_queue) {
      // Make room by dropping the oldest event that may be dropped; TaskExits stay.
      for (auto it = queue_.begin(); it != queue_.end(); ++it) {
        if (MustDeliver(*it)) continue;
        log::Errorf("event queue full: dropping %s", it->topic());
        queue_.erase(it);
        --droppable_queued_;
        break;
      }
    }
    ++droppable_queued_;
  }
  queue_.push_back(std::move(env));
}

bool Forwarder::Drain(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queue_.empty() && in_flight_ == 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

bool Forwarder::Deliver(const Envelope& env) {
  const bool must = MustDeliver(env);
  absl::Duration delay = options_.retry_delay;
  for (int attempt = 1;; ++attempt) {
    absl::Status st = sink_->Forward(env);
    if (st.ok()) {
      if (attempt > 1) log::Infof("forwarded %s after %d attempts", env.topic(), attempt);
      return true;
    }
    if (!must && attempt >= options_.attempts) {
      log::Errorf("dropping event %s after %d attempts: %s", env.topic(), attempt, st.ToString());
      return false;
    }
    // Log the first failures and then every 30th, so an absent containerd does not flood the log.
    if (attempt <= 3 || attempt % 30 == 0) {
      log::Warnf("forward %s (attempt %d%s): %s", env.topic(), attempt,
                 must ? ", retried until delivered" : absl::StrCat("/", options_.attempts).c_str(),
                 st.ToString());
    }
    absl::MutexLock lock(&mu_);
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping), delay)) {
      log::Errorf("shim stopping: event %s not delivered after %d attempts: %s", env.topic(), attempt,
                  st.ToString());
      return false;
    }
    delay = std::min(delay * 2, options_.max_retry_delay);
  }
}

void Forwarder::Run() {
  for (;;) {
    Envelope env;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // stopping and nothing left
      env = std::move(queue_.front());
      queue_.pop_front();
      if (!MustDeliver(env)) --droppable_queued_;
      in_flight_ = 1;
    }
    Deliver(env);
    absl::MutexLock lock(&mu_);
    in_flight_ = 0;
  }
}

}  // namespace gvshim::events
