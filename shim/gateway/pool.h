// The pool pods of this node and the dispatch of snippets to them: discovery records are rescanned and every
// pod's Health polled periodically; a request takes a slot on the least busy ready pod that can run its
// language, waiting in a bounded first-come-first-served queue when every slot is taken.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gvshim/execute/v1/execute.pb.h"
#include "shim/gateway/discovery.h"
#include "shim/gateway/metrics.h"
#include "shim/gateway/run_request.h"

namespace gvshim::gateway {

// One pod's Execute service (gRPC over its Unix socket; fakes in tests).
class PodClient {
 public:
  virtual ~PodClient() = default;
  virtual grpc::Status Execute(const execute::v1::ExecuteRequest& req, absl::Time deadline,
                               execute::v1::ExecuteResponse* resp) = 0;
  virtual grpc::Status Health(absl::Time deadline, execute::v1::HealthResponse* resp) = 0;
  virtual grpc::Status ListRuntimes(absl::Time deadline, execute::v1::ListRuntimesResponse* resp) = 0;
};
using PodClientFactory = std::function<std::unique_ptr<PodClient>(const PodRecord&)>;

// The real client: a gRPC channel to the record's socket; responses up to max_response_bytes.
std::unique_ptr<PodClient> NewGrpcPodClient(const PodRecord& record, int max_response_bytes);

struct PoolOptions {
  std::string dir;
  Selector selector;
  int pod_concurrency = 4;  // snippets this gateway sends to one pod at a time
  int max_queue = 64;       // requests waiting for a slot (all languages)
  absl::Duration health_timeout = absl::Seconds(2);
  // A pod set aside after a failure stays aside at least this long, and then until it runs a probe snippet
  // (a trivial one, with this wall timeout) successfully; a failed probe starts the wait again.
  absl::Duration set_aside_min = absl::Seconds(2);
  absl::Duration probe_timeout = absl::Seconds(5);
  // A pod that ran a snippet successfully this recently is not asked for Health (Health pings every runner of
  // the pod, which costs its sandbox CPU); the load others put on it is then last Health's.
  absl::Duration passive_health = absl::Seconds(2);
};

class Pool {
 private:
  struct Pod;

 public:
  Pool(PoolOptions opts, PodClientFactory factory, Metrics* metrics);
  ~Pool();  // Stop()
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Rescans the directory and polls every pod once (blocking). The background loop calls it; so can tests.
  void Refresh();
  // Runs Refresh every `interval` on a thread until Stop().
  void Start(absl::Duration interval);
  // Stops the loop and wakes every waiter (they get UNAVAILABLE). Idempotent.
  void Stop();

  // A slot on one pod, given back when the Lease is destroyed.
  class Lease {
   public:
    Lease(Lease&& o) noexcept
        : pool_(o.pool_),
          pod_(std::move(o.pod_)),
          client_(std::move(o.client_)),
          name_(std::move(o.name_)),
          max_limits_(std::move(o.max_limits_)) {
      o.pool_ = nullptr;
    }
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    PodClient& client() { return *client_; }
    const std::string& pod_name() const { return name_; }
    // The pod's maximum limits (ListRuntimes), if known.
    const std::optional<execute::v1::Limits>& max_limits() const { return max_limits_; }
    // The pod failed this request (gRPC error, internal error): it gets no more requests until, after
    // PoolOptions::set_aside_min, it answers Health and runs a probe snippet.
    void SetAside(const std::string& why);
    // The pod ran this request (whatever the snippet did): it needs no Health poll for a while.
    void Succeeded();

   private:
    friend class Pool;
    Lease(Pool* pool, std::shared_ptr<Pod> pod, std::shared_ptr<PodClient> client, std::string name,
          std::optional<execute::v1::Limits> max_limits)
        : pool_(pool),
          pod_(std::move(pod)),
          client_(std::move(client)),
          name_(std::move(name)),
          max_limits_(std::move(max_limits)) {}
    Pool* pool_;
    std::shared_ptr<Pod> pod_;
    std::shared_ptr<PodClient> client_;
    std::string name_;
    std::optional<execute::v1::Limits> max_limits_;
  };

  // Waits until `deadline` for a slot on a ready pod that can run `lang`. RESOURCE_EXHAUSTED when the queue
  // is full, DEADLINE_EXCEEDED when none freed up in time, UNAVAILABLE after Stop().
  absl::StatusOr<Lease> Acquire(RunLanguage lang, absl::Time deadline);

  int ReadyCount();
  int KnownCount();
  int QueueDepth();

 private:
  struct Pod {
    PodRecord record;
    std::shared_ptr<PodClient> client;
    bool serving = false;    // the last Health said SERVING
    bool set_aside = false;  // failed a request; waits for set_aside_until and a good probe
    absl::Time set_aside_until;
    std::string probe_note;                          // the last probe failure (logged on change)
    absl::Time last_success = absl::InfinitePast();  // the last request it answered
    bool gone = false;                               // its record disappeared
    int inflight = 0;                                // this gateway's snippets on it
    int64_t others = 0;                              // load Health reported beyond ours
    std::optional<execute::v1::Limits> max_limits;
    std::string state_note;  // why it is not ready (logged on change)
  };

  bool ReadyFor(const Pod& p, RunLanguage lang) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<Pod> PickLocked(RunLanguage lang) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Release(Pod* pod);
  void PublishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Poll(const std::shared_ptr<Pod>& pod);
  // Runs a trivial snippet (Python if the pod has it, else JavaScript); "" on success, else why it failed.
  std::string Probe(PodClient& client, bool python);

  const PoolOptions opts_;
  const PodClientFactory factory_;
  Metrics* const metrics_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Pod>> pods_ ABSL_GUARDED_BY(mu_);  // by record file
  std::map<std::string, std::string> skipped_ ABSL_GUARDED_BY(mu_);        // record file -> why not selected
  std::deque<std::pair<uint64_t, RunLanguage>> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t next_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t rotate_ ABSL_GUARDED_BY(mu_) = 0;
  int inflight_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::string scan_error_ ABSL_GUARDED_BY(mu_);
  std::thread loop_;
};

}  // namespace gvshim::gateway
