// Test helpers: a discovery directory with records, and fake Execute services behind PodClient.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/synchronization/mutex.h"
#include "gvshim/execute/v1/execute.pb.h"
#include "shim/gateway/pool.h"

namespace gvshim::gateway::testing {

namespace ev1 = execute::v1;

// A fake pod's Execute service; behaviour set by the test.
struct FakePod {
  absl::Mutex mu;
  grpc::Status health_status ABSL_GUARDED_BY(mu) = grpc::Status::OK;
  ev1::HealthResponse::ServingStatus serving ABSL_GUARDED_BY(mu) = ev1::HealthResponse::SERVING;
  uint32_t others_active ABSL_GUARDED_BY(mu) = 0;
  std::optional<ev1::Limits> max_limits ABSL_GUARDED_BY(mu);
  // Runs for each Execute; default: success echoing the code to stdout.
  std::function<grpc::Status(const ev1::ExecuteRequest&, ev1::ExecuteResponse*)> on_execute;
  std::atomic<int> executes{0};
  std::atomic<int> health_calls{0};
  ev1::ExecuteRequest last ABSL_GUARDED_BY(mu);

  void SetHealth(grpc::Status st, ev1::HealthResponse::ServingStatus s = ev1::HealthResponse::SERVING) {
    absl::MutexLock lock(&mu);
    health_status = std::move(st);
    serving = s;
  }
};

class FakeClient : public PodClient {
 public:
  explicit FakeClient(std::shared_ptr<FakePod> pod) : pod_(std::move(pod)) {}
  grpc::Status Execute(const ev1::ExecuteRequest& req, absl::Time, ev1::ExecuteResponse* resp) override {
    ++pod_->executes;
    {
      absl::MutexLock lock(&pod_->mu);
      pod_->last = req;
    }
    if (pod_->on_execute) return pod_->on_execute(req, resp);
    resp->set_status(ev1::STATUS_SUCCESS);
    resp->set_stdout(req.code());
    return grpc::Status::OK;
  }
  grpc::Status Health(absl::Time, ev1::HealthResponse* resp) override {
    ++pod_->health_calls;
    absl::MutexLock lock(&pod_->mu);
    if (!pod_->health_status.ok()) return pod_->health_status;
    resp->set_status(pod_->serving);
    resp->set_active(pod_->others_active);
    return grpc::Status::OK;
  }
  grpc::Status ListRuntimes(absl::Time, ev1::ListRuntimesResponse* resp) override {
    absl::MutexLock lock(&pod_->mu);
    if (pod_->max_limits.has_value()) *resp->mutable_max_limits() = *pod_->max_limits;
    return grpc::Status::OK;
  }

 private:
  std::shared_ptr<FakePod> pod_;
};

// A temp discovery directory; pods by name; a factory for Pool.
class FakeNode {
 public:
  FakeNode() {
    char tmpl[] = "/tmp/gvs-gw-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  ~FakeNode() { std::filesystem::remove_all(dir_); }
  const std::string& dir() const { return dir_; }

  // Writes the record of pod `name` (a CRI pod in namespace "ns"); returns its fake service.
  std::shared_ptr<FakePod> AddPod(const std::string& name, bool python = true, bool node = true,
                                  const nlohmann::json& annotations = nullptr) {
    auto pod = std::make_shared<FakePod>();
    pods_[Socket(name)] = pod;
    nlohmann::json j = {{"namespace", "k8s.io"},
                        {"sandbox_id", "sb-" + name},
                        {"containers", {{{"id", "c-" + name}, {"python", python}, {"node", node}}}},
                        {"socket", Socket(name)},
                        {"shim_pid", 1},
                        {"server_pid", 2},
                        {"pod_namespace", "ns"},
                        {"pod_name", name}};
    if (!annotations.is_null()) j["annotations"] = annotations;
    std::ofstream(dir_ + "/" + name + ".json") << j.dump(2);
    return pod;
  }
  void RemovePod(const std::string& name) { std::filesystem::remove(dir_ + "/" + name + ".json"); }

  PodClientFactory Factory() {
    return [this](const PodRecord& r) -> std::unique_ptr<PodClient> {
      auto it = pods_.find(r.socket);
      if (it == pods_.end()) return nullptr;
      return std::make_unique<FakeClient>(it->second);
    };
  }

 private:
  std::string Socket(const std::string& name) const { return "/fake/" + name + ".sock"; }
  std::string dir_;
  std::map<std::string, std::shared_ptr<FakePod>> pods_;
};

}  // namespace gvshim::gateway::testing
