// The fixture of the task::Service tests (service_test.cc, service_exec_test.cc): Service::Call with
// serialized containerd.task.v2 requests, on top of FakeRunsc (real child processes stand in for the sandbox)
// and a RecordingPublisher.
#pragma once

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "github.com/containerd/cgroups/stats/v1/metrics.pb.h"
#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/empty.pb.h"
#include "gtest/gtest.h"
#include "gvshim/runtimeoptions/v1/options.pb.h"
#include "nlohmann/json.hpp"
#include "shim/task/service.h"
#include "tests/unit/fakes/fake_runsc.h"
#include "tests/unit/fakes/recording_publisher.h"

namespace gvshim::task::testing {

namespace tv2 = containerd::task::v2;
using ::gvshim::testing::FakeRunsc;
using ::gvshim::testing::FakeRunscView;
using ::gvshim::testing::RecordedEvent;
using ::gvshim::testing::RecordingPublisher;
using namespace ::gvshim::testing::event_types;  // NOLINT

constexpr absl::Duration kTimeout = absl::Seconds(20);

inline std::string MakeTempDir() {
  char tmpl[] = "/tmp/gvtt-XXXXXX";
  return ::mkdtemp(tmpl) == nullptr ? "" : tmpl;
}

inline RecordingPublisher::Match ExitOf(const std::string& id) {
  return [id](const RecordedEvent& e) { return e.As<containerd::events::TaskExit>().id() == id; };
}

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    config_path_ = dir_ + "/gvshim.toml";
    std::ofstream(config_path_) << "[runsc]\nroot = \"" << dir_ << "/runsc-root\"\n";
    ::unsetenv("GVSHIM_CONFIG");
    NewService(config_path_);
  }
  void TearDown() override {
    fake_.KillAll();
    service_.reset();
    ::unsetenv("GVSHIM_CONFIG");
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  void NewService(const std::string& config_path) {
    ServiceOptions o;
    o.ns = "testns";
    o.config_path = config_path;
    o.runsc_factory = [this](const runsc::GlobalOptions& g) {
      absl::MutexLock lock(&globals_mu_);
      globals_.push_back(g);
      return std::make_unique<FakeRunscView>(&fake_);
    };
    o.request_shutdown = [this] { shutdowns_++; };
    o.reaper = &::gvshim::testing::TestReaper();
    service_ = std::make_unique<Service>(std::move(o), &events_);
  }

  // A bundle with a config.json; `annotations` and `linux` are merged into a minimal spec.
  std::string Bundle(const std::string& name, nlohmann::json annotations = nlohmann::json::object(),
                     nlohmann::json linux = nlohmann::json::object()) {
    std::string b = dir_ + "/" + name;
    std::filesystem::create_directories(b + "/rootfs");
    nlohmann::json spec = {{"ociVersion", "1.0.2"},
                           {"process", {{"args", {"/bin/sh"}}, {"cwd", "/"}}},
                           {"root", {{"path", "rootfs"}}},
                           {"annotations", annotations},
                           {"linux", linux}};
    std::ofstream(b + "/config.json") << spec.dump();
    return b;
  }

  template <typename Resp>
  absl::StatusOr<Resp> Call(const std::string& method, const google::protobuf::MessageLite& req) {
    auto out = service_->Call(method, req.SerializeAsString());
    if (!out.ok()) return out.status();
    Resp resp;
    if (!resp.ParseFromString(*out)) return absl::InternalError(method + ": response does not parse");
    return resp;
  }
  absl::Status CallEmpty(const std::string& method, const google::protobuf::MessageLite& req) {
    return Call<google::protobuf::Empty>(method, req).status();
  }

  tv2::CreateTaskRequest CreateReq(const std::string& id, const std::string& bundle) {
    tv2::CreateTaskRequest r;
    r.set_id(id);
    r.set_bundle(bundle);
    return r;
  }
  absl::StatusOr<tv2::CreateTaskResponse> Create(const std::string& id, const std::string& bundle) {
    return Call<tv2::CreateTaskResponse>("Create", CreateReq(id, bundle));
  }
  absl::StatusOr<uint32_t> Start(const std::string& id, const std::string& exec_id = "") {
    tv2::StartRequest r;
    r.set_id(id);
    r.set_exec_id(exec_id);
    auto resp = Call<tv2::StartResponse>("Start", r);
    if (!resp.ok()) return resp.status();
    return resp->pid();
  }
  absl::StatusOr<tv2::StateResponse> State(const std::string& id, const std::string& exec_id = "") {
    tv2::StateRequest r;
    r.set_id(id);
    r.set_exec_id(exec_id);
    return Call<tv2::StateResponse>("State", r);
  }
  absl::StatusOr<tv2::WaitResponse> Wait(const std::string& id, const std::string& exec_id = "") {
    tv2::WaitRequest r;
    r.set_id(id);
    r.set_exec_id(exec_id);
    return Call<tv2::WaitResponse>("Wait", r);
  }
  absl::StatusOr<tv2::DeleteResponse> Delete(const std::string& id, const std::string& exec_id = "") {
    tv2::DeleteRequest r;
    r.set_id(id);
    r.set_exec_id(exec_id);
    return Call<tv2::DeleteResponse>("Delete", r);
  }
  absl::Status Kill(const std::string& id, uint32_t sig, const std::string& exec_id = "") {
    tv2::KillRequest r;
    r.set_id(id);
    r.set_exec_id(exec_id);
    r.set_signal(sig);
    return CallEmpty("Kill", r);
  }
  absl::Status Exec(const std::string& id, const std::string& exec_id, const std::string& spec_json) {
    tv2::ExecProcessRequest r;
    r.set_id(id);
    r.set_exec_id(exec_id);
    r.mutable_spec()->set_type_url("types.containerd.io/opencontainers/runtime-spec/1/Process");
    r.mutable_spec()->set_value(spec_json);
    return CallEmpty("Exec", r);
  }
  absl::Status Shutdown(bool now = false) {
    tv2::ShutdownRequest r;
    r.set_now(now);
    return CallEmpty("Shutdown", r);
  }
  // Waits for the TaskExit of `id` (container or exec id); its index among the events.
  size_t WaitExit(const std::string& id) {
    auto i = events_.WaitFor(kTaskExit, kTimeout, ExitOf(id));
    EXPECT_TRUE(i.has_value()) << "no TaskExit for " << id;
    return i.value_or(0);
  }

  std::string dir_, config_path_;
  FakeRunsc fake_;
  RecordingPublisher events_;
  absl::Mutex globals_mu_;  // the factory runs on each Create's thread
  std::vector<runsc::GlobalOptions> globals_;
  std::atomic<int> shutdowns_{0};
  std::unique_ptr<Service> service_;
};

}  // namespace gvshim::task::testing
