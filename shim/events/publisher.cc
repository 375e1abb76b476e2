#include "shim/events/publisher.h"

#include "absl/container/flat_hash_map.h"
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
  Drain(absl::Seconds(5));
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

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
  if (queue_.size() >= options_.max_queue) {
    log::Errorf("event queue full: dropping %s", queue_.front().topic());
    queue_.pop_front();
  }
  queue_.push_back(std::move(env));
}

bool Forwarder::Drain(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queue_.empty() && in_flight_ == 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
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
      in_flight_ = 1;
    }
    absl::Status st;
    for (int attempt = 1; attempt <= options_.attempts; ++attempt) {
      st = sink_->Forward(env);
      if (st.ok()) break;
      log::Warnf("forward %s (attempt %d/%d): %s", env.topic(), attempt, options_.attempts, st.ToString());
      if (attempt < options_.attempts) absl::SleepFor(options_.retry_delay * attempt);
    }
    if (!st.ok()) log::Errorf("dropping event %s: %s", env.topic(), st.ToString());
    absl::MutexLock lock(&mu_);
    in_flight_ = 0;
  }
}

}  // namespace gvshim::events
