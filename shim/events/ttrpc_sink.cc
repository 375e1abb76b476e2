#include "absl/synchronization/mutex.h"
#include "shim/events/publisher.h"
#include "shim/ttrpc/client.h"

namespace gvshim::events {
namespace {

class TtrpcSink : public EnvelopeSink {
 public:
  TtrpcSink(std::string address, std::string ns) : address_(std::move(address)), ns_(std::move(ns)) {}

  absl::Status Forward(const Envelope& envelope) override {
    absl::MutexLock lock(&mu_);
    if (client_ == nullptr) {
      auto client = ttrpc::Client::Dial(address_, absl::Seconds(5));
      if (!client.ok()) return client.status();
      client_ = std::move(*client);
    }
    containerd::services::events::ttrpc::v1::ForwardRequest req;
    *req.mutable_envelope() = envelope;
    auto resp =
        client_->Call("containerd.services.events.ttrpc.v1.Events", "Forward", req.SerializeAsString(),
                      {{"containerd-namespace-ttrpc", ns_}}, absl::Seconds(5));
    // A broken or stuck connection (containerd restarted or hangs): dial again next time.
    if (!resp.ok() && (resp.status().code() == absl::StatusCode::kUnavailable ||
                       resp.status().code() == absl::StatusCode::kDeadlineExceeded)) {
      client_.reset();
    }
    return resp.status();
  }

 private:
  const std::string address_;
  const std::string ns_;
  absl::Mutex mu_;
  std::unique_ptr<ttrpc::Client> client_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<EnvelopeSink> NewTtrpcSink(std::string address, std::string ns) {
  // containerd passes TTRPC_ADDRESS as a plain path (no unix:// scheme); accept both.
  if (address.rfind("unix://", 0) == 0) address = address.substr(7);
  return std::make_unique<TtrpcSink>(std::move(address), std::move(ns));
}

}  // namespace gvshim::events
