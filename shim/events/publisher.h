// Task events. Producers call Publisher::Publish; the Forwarder keeps one FIFO queue and one thread that
// sends each envelope to containerd (Events/Forward over ttrpc), so events reach containerd in the order they
// were published.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.pb.h"
#include "google/protobuf/message_lite.h"

namespace gvshim::events {

using Envelope = containerd::services::events::ttrpc::v1::Envelope;

// Topic of a containerd task event message ("/tasks/exit" for containerd.events.TaskExit), or "" if unknown.
std::string TopicFor(const google::protobuf::MessageLite& event);

class Publisher {
 public:
  virtual ~Publisher() = default;
  // Queues the event; never blocks on the network. The topic is derived from the message type.
  virtual void Publish(const google::protobuf::MessageLite& event) = 0;
};

// Where envelopes go: containerd in production, a recorder in unit tests.
class EnvelopeSink {
 public:
  virtual ~EnvelopeSink() = default;
  virtual absl::Status Forward(const Envelope& envelope) = 0;
};

// Sends through a ttrpc client to containerd's ttrpc address (connects lazily, reconnects after failures).
std::unique_ptr<EnvelopeSink> NewTtrpcSink(std::string address, std::string ns);

class Forwarder : public Publisher {
 public:
  struct Options {
    int attempts = 3;  // per envelope, then it is dropped and logged
    absl::Duration retry_delay = absl::Milliseconds(100);
    size_t max_queue = 4096;  // beyond this, the oldest events are dropped and logged
  };
  Forwarder(std::unique_ptr<EnvelopeSink> sink, std::string ns, Options options);
  Forwarder(std::unique_ptr<EnvelopeSink> sink, std::string ns)
      : Forwarder(std::move(sink), std::move(ns), Options{}) {}
  ~Forwarder() override;  // Drains (bounded) and stops the thread.

  void Publish(const google::protobuf::MessageLite& event) override;
  // Waits until everything queued so far was sent (or dropped); false on timeout.
  bool Drain(absl::Duration timeout);

 private:
  void Run();

  std::unique_ptr<EnvelopeSink> sink_;
  const std::string ns_;
  const Options options_;
  absl::Mutex mu_;
  std::deque<Envelope> queue_ ABSL_GUARDED_BY(mu_);
  size_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace gvshim::events
