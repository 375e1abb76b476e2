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

// Delivery rules:
//  - Order: one envelope is in flight at a time, in publication order.
//  - TaskExit (containerd waits for it, and never asks again) is retried until containerd accepts it or the
//    forwarder stops: the delay doubles from retry_delay up to max_retry_delay. It is never dropped to make
//    room.
//  - Every other event gets `attempts` tries, then it is dropped and logged. When max_queue of them are
//    waiting, the oldest one is dropped to make room.
//  - Memory: at most max_queue other events, plus one TaskExit per process whose exit containerd has not
//    accepted yet (each process exists because containerd asked for it).
class Forwarder : public Publisher {
 public:
  struct Options {
    int attempts = 3;  // per envelope other than TaskExit, then it is dropped and logged
    absl::Duration retry_delay = absl::Milliseconds(100);
    absl::Duration max_retry_delay = absl::Seconds(2);
    size_t max_queue = 4096;  // events other than TaskExit waiting; beyond this the oldest is dropped
    absl::Duration shutdown_drain = absl::Seconds(5);  // how long the destructor lets the queue drain
  };
  Forwarder(std::unique_ptr<EnvelopeSink> sink, std::string ns, Options options);
  Forwarder(std::unique_ptr<EnvelopeSink> sink, std::string ns)
      : Forwarder(std::move(sink), std::move(ns), Options{}) {}
  ~Forwarder() override;  // Drains (for at most shutdown_drain), then stops retrying and ends the thread.

  void Publish(const google::protobuf::MessageLite& event) override;
  // Waits until everything queued so far was sent (or dropped); false on timeout.
  bool Drain(absl::Duration timeout);

  // True for events that are retried until delivered (TaskExit).
  static bool MustDeliver(const Envelope& envelope);

 private:
  void Run();
  // Sends one envelope under the delivery rules; false if it was given up.
  bool Deliver(const Envelope& env);

  std::unique_ptr<EnvelopeSink> sink_;
  const std::string ns_;
  const Options options_;
  absl::Mutex mu_;
  std::deque<Envelope> queue_ ABSL_GUARDED_BY(mu_);
  size_t droppable_queued_ ABSL_GUARDED_BY(mu_) = 0;  // queued events other than TaskExit
  size_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace gvshim::events
