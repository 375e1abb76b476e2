#include "shim/gateway/pool.h"

#include <future>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gvshim/execute/v1/execute.grpc.pb.h"
#include "shim/base/log.h"

namespace gvshim::gateway {
namespace {

namespace ev1 = execute::v1;

class GrpcPodClient : public PodClient {
 public:
  GrpcPodClient(const PodRecord& r, int max_response_bytes) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(max_response_bytes);
    // A pod's server that restarts comes back on the same socket: reconnect quickly.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    stub_ = ev1::Execute::NewStub(
        grpc::CreateCustomChannel("unix:" + r.socket, grpc::InsecureChannelCredentials(), args));
  }
  grpc::Status Execute(const ev1::ExecuteRequest& req, absl::Time deadline,
                       ev1::ExecuteResponse* resp) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(deadline));
    return stub_->Execute(&ctx, req, resp);
  }
  grpc::Status Health(absl::Time deadline, ev1::HealthResponse* resp) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(deadline));
    return stub_->Health(&ctx, ev1::HealthRequest(), resp);
  }
  grpc::Status ListRuntimes(absl::Time deadline, ev1::ListRuntimesResponse* resp) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(deadline));
    return stub_->ListRuntimes(&ctx, ev1::ListRuntimesRequest(), resp);
  }

 private:
  std::unique_ptr<ev1::Execute::Stub> stub_;
};

}  // namespace

std::unique_ptr<PodClient> NewGrpcPodClient(const PodRecord& record, int max_response_bytes) {
  return std::make_unique<GrpcPodClient>(record, max_response_bytes);
}

Pool::Pool(PoolOptions opts, PodClientFactory factory, Metrics* metrics)
    : opts_(std::move(opts)), factory_(std::move(factory)), metrics_(metrics) {}

Pool::~Pool() { Stop(); }

void Pool::Start(absl::Duration interval) {
  loop_ = std::thread([this, interval] {
    while (true) {
      Refresh();
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopped_), interval)) return;
    }
  });
}

void Pool::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
  }
  if (loop_.joinable()) loop_.join();
}

void Pool::Refresh() {
  // 1. The records, outside the lock.
  auto records = ScanRecords(opts_.dir);
  std::vector<std::shared_ptr<Pod>> to_poll;
  {
    absl::MutexLock lock(&mu_);
    if (!records.ok()) {
      std::string err(records.status().message());
      if (err != scan_error_) log::Warnf("gateway: %s", err);
      scan_error_ = err;
      records = std::vector<PodRecord>();
    } else {
      scan_error_.clear();
    }
    std::set<std::string> seen;
    std::map<std::string, std::string> skipped;
    for (PodRecord& r : *records) {
      std::string why;
      if (!opts_.selector.Matches(r, &why)) {
        if (!skipped_.count(r.file)) log::Infof("gateway: not using %s (%s): %s", r.Name(), r.file, why);
        skipped[r.file] = why;
        continue;
      }
      seen.insert(r.file);
      auto it = pods_.find(r.file);
      if (it == pods_.end() || it->second->record.socket != r.socket) {
        if (it != pods_.end()) it->second->gone = true;
        auto pod = std::make_shared<Pod>();
        pod->client = std::shared_ptr<PodClient>(factory_(r));
        pod->record = std::move(r);
        log::Infof("gateway: pool pod %s (%s)", pod->record.Name(), pod->record.socket);
        pods_[pod->record.file] = pod;
      } else {
        it->second->record = std::move(r);
      }
    }
    skipped_ = std::move(skipped);
    for (auto it = pods_.begin(); it != pods_.end();) {
      if (seen.count(it->first)) {
        to_poll.push_back(it->second);
        ++it;
      } else {
        log::Infof("gateway: pool pod %s went away (its record %s is gone)", it->second->record.Name(),
                   it->first);
        it->second->gone = true;
        it = pods_.erase(it);
      }
    }
  }
  // 2. Health of every pod, in parallel (a pod's Health pings its runners and may take up to the timeout).
  std::vector<std::future<void>> polls;
  for (auto& pod : to_poll) polls.push_back(std::async(std::launch::async, [this, pod] { Poll(pod); }));
  for (auto& f : polls) f.wait();
  absl::MutexLock lock(&mu_);
  PublishLocked();
}

void Pool::Poll(const std::shared_ptr<Pod>& pod) {
  {
    // A pod that just ran a snippet is known to serve: Health (which pings every runner in the pod's sandbox,
    // costing sandbox CPU next to the snippets) is skipped while it keeps answering.
    absl::MutexLock lock(&mu_);
    if (pod->serving && !pod->set_aside && pod->max_limits.has_value() &&
        absl::Now() - pod->last_success < opts_.passive_health) {
      return;
    }
  }
  absl::Time deadline = absl::Now() + opts_.health_timeout;
  ev1::HealthResponse health;
  grpc::Status st = pod->client->Health(deadline, &health);
  std::optional<ev1::Limits> limits;
  bool need_limits, want_probe, python;
  {
    absl::MutexLock lock(&mu_);
    need_limits = !pod->max_limits.has_value();
    want_probe = pod->set_aside && absl::Now() >= pod->set_aside_until;
    python = pod->record.python;
  }
  if (st.ok() && need_limits) {
    ev1::ListRuntimesResponse rt;
    if (pod->client->ListRuntimes(deadline, &rt).ok() && rt.has_max_limits()) limits = rt.max_limits();
  }
  // A pod set aside after a failure must run a snippet again before it gets requests: its Health alone can
  // say SERVING while its sandbox is gone (a runner not started yet counts as serving).
  std::string probe_error;
  bool probed = st.ok() && health.status() == ev1::HealthResponse::SERVING && want_probe;
  if (probed) probe_error = Probe(*pod->client, python);
  absl::MutexLock lock(&mu_);
  std::string note;
  if (!st.ok()) {
    pod->serving = false;
    note = absl::StrCat("Health failed: ", st.error_message());
  } else {
    pod->serving = health.status() == ev1::HealthResponse::SERVING;
    if (!pod->serving) note = absl::StrCat("not serving: ", health.message());
    int64_t load = static_cast<int64_t>(health.active()) + health.queued();
    pod->others = std::max<int64_t>(0, load - pod->inflight);
    if (probed && probe_error.empty()) {
      log::Infof("gateway: pool pod %s runs snippets again", pod->record.Name());
      pod->set_aside = false;
    } else if (probed) {
      if (probe_error != pod->probe_note) {
        log::Warnf("gateway: pool pod %s stays aside: its probe snippet failed: %s", pod->record.Name(),
                   probe_error);
      }
      pod->probe_note = probe_error;
      pod->set_aside_until = absl::Now() + opts_.set_aside_min;
    }
  }
  if (limits.has_value()) pod->max_limits = limits;
  if (note != pod->state_note) {
    if (!note.empty())
      log::Warnf("gateway: pool pod %s: %s", pod->record.Name(), note);
    else
      log::Infof("gateway: pool pod %s is ready", pod->record.Name());
    pod->state_note = note;
  }
}

std::string Pool::Probe(PodClient& client, bool python) {
  ev1::ExecuteRequest req;
  if (python) {
    req.set_language(ev1::LANGUAGE_PYTHON);
    req.set_code("pass");
  } else {
    req.set_language(ev1::LANGUAGE_JAVASCRIPT);
    req.set_code("0");
  }
  req.mutable_limits()->set_wall_timeout_ms(
      static_cast<uint64_t>(absl::ToInt64Milliseconds(opts_.probe_timeout)));
  ev1::ExecuteResponse resp;
  grpc::Status st = client.Execute(req, absl::Now() + opts_.probe_timeout + absl::Seconds(2), &resp);
  if (!st.ok())
    return absl::StrCat("gRPC code ", static_cast<int>(st.error_code()), ": ", st.error_message());
  if (resp.status() != ev1::STATUS_SUCCESS) {
    return absl::StrCat("status ", ev1::Status_Name(resp.status()), ": ", resp.error());
  }
  return "";
}

bool Pool::ReadyFor(const Pod& p, RunLanguage lang) const {
  if (p.gone || !p.serving || p.set_aside) return false;
  return lang == RunLanguage::kPython ? p.record.python : p.record.node;
}

std::shared_ptr<Pool::Pod> Pool::PickLocked(RunLanguage lang) {
  std::shared_ptr<Pod> best;
  int64_t best_load = 0;
  if (pods_.empty()) return best;
  // Start at a rotating offset so that equally loaded pods take turns.
  size_t n = pods_.size(), start = rotate_ % n, i = 0;
  std::vector<std::shared_ptr<Pod>> order;
  order.reserve(n);
  for (auto& [file, pod] : pods_) order.push_back(pod);
  for (i = 0; i < n; ++i) {
    const auto& pod = order[(start + i) % n];
    if (!ReadyFor(*pod, lang) || pod->inflight >= opts_.pod_concurrency) continue;
    int64_t load = pod->inflight + pod->others;
    if (best == nullptr || load < best_load) {
      best = pod;
      best_load = load;
    }
  }
  return best;
}

absl::StatusOr<Pool::Lease> Pool::Acquire(RunLanguage lang, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  if (stopped_) return absl::UnavailableError("the gateway is shutting down");
  if (queue_.size() >= static_cast<size_t>(opts_.max_queue)) {
    return absl::ResourceExhaustedError(absl::StrCat("the queue is full (", opts_.max_queue, " waiting)"));
  }
  uint64_t ticket = next_ticket_++;
  queue_.emplace_back(ticket, lang);
  PublishLocked();
  // First come, first served within a language: go when no earlier request of the language waits and a pod
  // has a free slot.
  auto may_go = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (stopped_) return true;
    for (const auto& [t, l] : queue_) {
      if (l != lang) continue;
      if (t != ticket) return false;
      break;
    }
    return PickLocked(lang) != nullptr;
  };
  bool ok = mu_.AwaitWithDeadline(absl::Condition(&may_go), deadline);
  std::erase_if(queue_, [&](const auto& e) { return e.first == ticket; });
  std::shared_ptr<Pod> pod = ok && !stopped_ ? PickLocked(lang) : nullptr;
  if (pod == nullptr) {
    PublishLocked();
    if (stopped_) return absl::UnavailableError("the gateway is shutting down");
    int ready = 0;
    for (const auto& [f, p] : pods_) ready += ReadyFor(*p, lang) ? 1 : 0;
    return absl::DeadlineExceededError(absl::StrCat("no free pool pod for ", RunLanguageName(lang), " (",
                                                    ready, " ready, all busy or none)"));
  }
  ++pod->inflight;
  ++inflight_;
  ++rotate_;
  PublishLocked();
  auto client = pod->client;
  std::string name = pod->record.Name();
  auto limits = pod->max_limits;
  return Lease(this, std::move(pod), std::move(client), std::move(name), std::move(limits));
}

void Pool::Release(Pod* pod) {
  absl::MutexLock lock(&mu_);
  --pod->inflight;
  --inflight_;
  PublishLocked();
}

int Pool::ReadyCount() {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& [f, p] : pods_) {
    n += (!p->gone && p->serving && !p->set_aside) ? 1 : 0;
  }
  return n;
}

int Pool::QueueDepth() {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(queue_.size());
}

int Pool::KnownCount() {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(pods_.size());
}

void Pool::PublishLocked() {
  if (metrics_ == nullptr) return;
  int ready = 0;
  std::map<std::string, int64_t> by_pod;
  for (const auto& [f, p] : pods_) {
    ready += (!p->gone && p->serving && !p->set_aside) ? 1 : 0;
    by_pod[p->record.Name()] = p->inflight;
  }
  metrics_->SetPods(ready, static_cast<int64_t>(pods_.size()));
  metrics_->SetQueueDepth(static_cast<int64_t>(queue_.size()));
  metrics_->SetInflight(inflight_);
  metrics_->SetPodInflight(std::move(by_pod));
}

Pool::Lease::~Lease() {
  if (pool_ != nullptr) pool_->Release(pod_.get());
}

void Pool::Lease::Succeeded() {
  absl::MutexLock lock(&pool_->mu_);
  pod_->last_success = absl::Now();
}

void Pool::Lease::SetAside(const std::string& why) {
  absl::MutexLock lock(&pool_->mu_);
  if (!pod_->set_aside) {
    pod_->probe_note.clear();
    log::Warnf("gateway: setting pool pod %s aside until it runs a probe snippet: %s", name_, why);
  }
  pod_->set_aside = true;
  pod_->set_aside_until = absl::Now() + pool_->opts_.set_aside_min;
  pool_->PublishLocked();
}

}  // namespace gvshim::gateway
