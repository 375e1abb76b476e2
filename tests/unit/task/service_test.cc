// task::Service through Service::Call with serialized containerd.task.v2 requests, on top of FakeRunsc (real
// child processes stand in for the sandbox) and a RecordingPublisher.
#include "shim/task/service.h"

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
#include "tests/unit/fakes/fake_runsc.h"
#include "tests/unit/fakes/recording_publisher.h"

namespace gvshim::task {
namespace {

namespace tv2 = containerd::task::v2;
using ::gvshim::testing::FakeRunsc;
using ::gvshim::testing::FakeRunscView;
using ::gvshim::testing::ReadFile;
using ::gvshim::testing::RecordedEvent;
using ::gvshim::testing::RecordingPublisher;
using namespace ::gvshim::testing::event_types;  // NOLINT
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr absl::Duration kTimeout = absl::Seconds(20);

std::string MakeTempDir() {
  char tmpl[] = "/tmp/gvtt-XXXXXX";
  return ::mkdtemp(tmpl) == nullptr ? "" : tmpl;
}

RecordingPublisher::Match ExitOf(const std::string& id) {
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
    o.reaper = &testing::TestReaper();
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

TEST_F(ServiceTest, ContainerLifecycle) {
  const std::string bundle = Bundle("b1");
  auto created = Create("c1", bundle);
  ASSERT_TRUE(created.ok()) << created.status();
  const uint32_t pid = static_cast<uint32_t>(fake_.ContainerPid("c1"));
  EXPECT_EQ(created->pid(), pid);
  EXPECT_EQ(service_->ContainerCount(), 1u);

  // runsc is set up from the config file: root per namespace, log in the bundle; the settings are kept in the
  // bundle for a later `delete` after a crash.
  ASSERT_EQ(globals_.size(), 1u);
  EXPECT_EQ(globals_[0].root, dir_ + "/runsc-root/testns");
  EXPECT_EQ(globals_[0].log_path, bundle + "/runsc.log");
  EXPECT_FALSE(globals_[0].oci_seccomp);
  auto info = ReadDeleteInfo(bundle);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->root, dir_ + "/runsc-root/testns");

  ASSERT_THAT(events_.Types(), ElementsAre(kTaskCreate));
  auto ce = events_.Events()[0].As<containerd::events::TaskCreate>();
  EXPECT_EQ(ce.container_id(), "c1");
  EXPECT_EQ(ce.bundle(), bundle);
  EXPECT_EQ(ce.pid(), pid);

  auto st = State("c1");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->id(), "c1");
  EXPECT_EQ(st->bundle(), bundle);
  EXPECT_EQ(st->pid(), pid);
  EXPECT_EQ(st->status(), containerd::v1::types::CREATED);

  auto started = Start("c1");
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_EQ(*started, pid);
  EXPECT_EQ(State("c1")->status(), containerd::v1::types::RUNNING);
  EXPECT_THAT(events_.Types(), ElementsAre(kTaskCreate, kTaskStart));

  // Delete of a running task is refused.
  EXPECT_EQ(Delete("c1").status().code(), absl::StatusCode::kFailedPrecondition);

  ASSERT_TRUE(fake_.ExitInit("c1", 3).ok());
  auto w = Wait("c1");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->exit_status(), 3u);
  EXPECT_GT(w->exited_at().seconds(), 0);
  st = State("c1");
  EXPECT_EQ(st->status(), containerd::v1::types::STOPPED);
  EXPECT_EQ(st->exit_status(), 3u);

  auto del = Delete("c1");
  ASSERT_TRUE(del.ok()) << del.status();
  EXPECT_EQ(del->exit_status(), 3u);
  EXPECT_EQ(del->pid(), pid);
  EXPECT_EQ(service_->ContainerCount(), 0u);
  EXPECT_THAT(events_.Types(), ElementsAre(kTaskCreate, kTaskStart, kTaskExit, kTaskDelete));
  auto de = events_.Events()[3].As<containerd::events::TaskDelete>();
  EXPECT_EQ(de.container_id(), "c1");
  EXPECT_EQ(de.id(), "c1");
  EXPECT_EQ(de.exit_status(), 3u);
  EXPECT_EQ(de.pid(), pid);
  EXPECT_EQ(State("c1").status().code(), absl::StatusCode::kNotFound);
  auto deletes = fake_.CallsOf("Delete");
  ASSERT_EQ(deletes.size(), 1u);
  EXPECT_TRUE(deletes[0].force);
}

TEST_F(ServiceTest, ConfigThatDoesNotParseViaRuntimeOptions) {
  const std::string bad = dir_ + "/bad.toml";
  std::ofstream(bad) << "[runsc]\nroot = \n";
  runtimeoptions::v1::Options opts;
  opts.set_config_path(bad);
  tv2::CreateTaskRequest req = CreateReq("c1", Bundle("b1"));
  req.mutable_options()->set_type_url("runtimeoptions.v1.Options");
  req.mutable_options()->set_value(opts.SerializeAsString());
  auto r = Call<tv2::CreateTaskResponse>("Create", req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr(bad + ":2"));
  EXPECT_THAT(fake_.Calls(), IsEmpty());
  EXPECT_EQ(service_->ContainerCount(), 0u);
  EXPECT_THAT(events_.Types(), IsEmpty());
}

TEST_F(ServiceTest, RuntimeOptionsWithTypeUrlPrefixAreHonoured) {
  const std::string bad = dir_ + "/bad.toml";
  std::ofstream(bad) << "# comment\n\n[runsc]\nnot_a_key = 1\n";
  runtimeoptions::v1::Options opts;
  opts.set_config_path(bad);
  tv2::CreateTaskRequest req = CreateReq("c1", Bundle("b1"));
  req.mutable_options()->set_type_url("type.googleapis.com/runtimeoptions.v1.Options");
  req.mutable_options()->set_value(opts.SerializeAsString());
  auto r = Call<tv2::CreateTaskResponse>("Create", req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr(bad + ":4"));
  EXPECT_THAT(r.status().message(), HasSubstr("runsc.not_a_key"));
}

TEST_F(ServiceTest, RuntimeOptionsThatDoNotDecodeAreInvalid) {
  tv2::CreateTaskRequest req = CreateReq("c1", Bundle("b1"));
  req.mutable_options()->set_type_url("runtimeoptions.v1.Options");
  req.mutable_options()->set_value("\xff\xff\xff");
  auto r = Call<tv2::CreateTaskResponse>("Create", req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_THAT(fake_.Calls(), IsEmpty());
}

TEST_F(ServiceTest, ConfigThatDoesNotParseViaEnvironment) {
  NewService("");
  const std::string bad = dir_ + "/env.toml";
  std::ofstream(bad) << "[shim]\nlog_level = \"loud\"\n";
  ::setenv("GVSHIM_CONFIG", bad.c_str(), 1);
  auto r = Create("c1", Bundle("b1"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr(bad + ":2"));
  EXPECT_THAT(fake_.Calls(), IsEmpty());
}

TEST_F(ServiceTest, MissingExplicitConfigIsInvalid) {
  NewService(dir_ + "/missing.toml");
  auto r = Create("c1", Bundle("b1"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("missing.toml"));
}

TEST_F(ServiceTest, GarbagePayloadIsInvalidArgument) {
  // A truncated length-delimited field does not parse as any message.
  const std::string garbage("\x0a\xff\xff\xff\x0f", 5);
  for (const char* m : {"Create", "Start", "Delete", "Exec", "State", "Kill", "Wait", "Pids", "Pause",
                        "Resume", "ResizePty", "CloseIO", "Update", "Stats", "Connect", "Shutdown"}) {
    SCOPED_TRACE(m);
    auto r = service_->Call(m, garbage);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr(m));
  }
  EXPECT_EQ(shutdowns_.load(), 0);
}

TEST_F(ServiceTest, UnknownMethodAndCheckpointAreUnimplemented) {
  auto r = service_->Call("Frobnicate", "");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(r.status().message(), HasSubstr("Frobnicate"));
  EXPECT_EQ(service_->Call("Checkpoint", "").status().code(), absl::StatusCode::kUnimplemented);

  tv2::CreateTaskRequest req = CreateReq("c1", Bundle("b1"));
  req.set_checkpoint("/some/checkpoint");
  EXPECT_EQ(Call<tv2::CreateTaskResponse>("Create", req).status().code(), absl::StatusCode::kUnimplemented);
}

TEST_F(ServiceTest, UpdateKeepsLimitsThatStatsReport) {
  ASSERT_TRUE(Create("c1", Bundle("b1", nlohmann::json::object(),
                                  {{"resources", {{"memory", {{"limit", 1 << 20}}}}}}))
                  .ok());
  ASSERT_TRUE(Start("c1").ok());
  runsc::Stats s;
  s.memory_usage = 4096;
  fake_.SetStats(s);
  tv2::StatsRequest sreq;
  sreq.set_id("c1");
  auto limit = [&]() -> uint64_t {
    auto r = Call<tv2::StatsResponse>("Stats", sreq);
    EXPECT_TRUE(r.ok()) << r.status();
    io::containerd::cgroups::v1::Metrics m;
    EXPECT_TRUE(m.ParseFromString(r->stats().value()));
    return m.memory().usage().limit();
  };
  EXPECT_EQ(limit(), 1u << 20);  // the spec's limit, not runsc's 0 (containerd would compute 0 - usage)

  tv2::UpdateTaskRequest r;
  r.set_id("c1");
  r.mutable_resources()->set_type_url("types.containerd.io/opencontainers/runtime-spec/1/LinuxResources");
  r.mutable_resources()->set_value(R"({"memory":{"limit":3145728},"cpu":{"quota":50000,"period":100000}})");
  ASSERT_TRUE(CallEmpty("Update", r).ok());
  EXPECT_EQ(limit(), 3u << 20);
  r.mutable_resources()->set_value(R"({"memory":{"limit":-1}})");
  ASSERT_TRUE(CallEmpty("Update", r).ok());
  EXPECT_EQ(limit(), std::numeric_limits<uint64_t>::max());  // unlimited, as containerd reads it

  // Bad input is INVALID_ARGUMENT naming the field; the old limits stay.
  r.mutable_resources()->set_value(R"({"memory":{"limit":-5}})");
  auto st = CallEmpty("Update", r);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("memory.limit"));
  r.mutable_resources()->set_value("{not json");
  EXPECT_EQ(CallEmpty("Update", r).code(), absl::StatusCode::kInvalidArgument);
  r.set_id("nope");
  EXPECT_EQ(CallEmpty("Update", r).code(), absl::StatusCode::kNotFound);
}

TEST_F(ServiceTest, ContainerOverItsMemoryLimitIsOomKilled) {
  std::ofstream(config_path_, std::ios::app) << "[shim]\nmemory_check_ms = 20\n";
  ASSERT_TRUE(
      Create("c1", Bundle("b1", nlohmann::json::object(), {{"resources", {{"memory", {{"limit", 8192}}}}}}))
          .ok());
  ASSERT_TRUE(Start("c1").ok());
  runsc::Stats s;
  s.memory_usage = 4096;
  fake_.SetStats(s);
  // Under the limit: checked, not killed.
  ASSERT_TRUE(events_.WaitFor(kTaskStart, kTimeout).has_value());
  absl::SleepFor(absl::Milliseconds(100));  // several check intervals
  EXPECT_FALSE(events_.Find(kTaskOOM).has_value());
  s.memory_usage = 8193;
  fake_.SetStats(s);
  auto oom = events_.WaitFor(kTaskOOM, kTimeout);
  ASSERT_TRUE(oom.has_value()) << "no TaskOOM for a container over its limit";
  size_t exit = WaitExit("c1");
  EXPECT_LT(*oom, exit) << "TaskOOM must precede the TaskExit (the CRI then reports OOMKilled)";
  auto w = Wait("c1");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->exit_status(), 137u);
  EXPECT_EQ(events_.Count(kTaskOOM), 1u);
}

TEST_F(ServiceTest, UnknownIdIsNotFound) {
  EXPECT_EQ(State("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Kill("nope", SIGKILL).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Delete("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Start("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Wait("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Exec("nope", "e1", R"({"args":["true"]})").code(), absl::StatusCode::kNotFound);
  tv2::PidsRequest pids;
  pids.set_id("nope");
  EXPECT_EQ(Call<tv2::PidsResponse>("Pids", pids).status().code(), absl::StatusCode::kNotFound);
  tv2::StatsRequest stats;
  stats.set_id("nope");
  EXPECT_EQ(Call<tv2::StatsResponse>("Stats", stats).status().code(), absl::StatusCode::kNotFound);
  tv2::PauseRequest pause;
  pause.set_id("nope");
  EXPECT_EQ(CallEmpty("Pause", pause).code(), absl::StatusCode::kNotFound);
  tv2::ResumeRequest resume;
  resume.set_id("nope");
  EXPECT_EQ(CallEmpty("Resume", resume).code(), absl::StatusCode::kNotFound);
  tv2::CloseIORequest close;
  close.set_id("nope");
  close.set_stdin(true);
  EXPECT_EQ(CallEmpty("CloseIO", close).code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(fake_.Calls(), IsEmpty());
}

TEST_F(ServiceTest, UnknownExecIsNotFound) {
  ASSERT_TRUE(Create("c1", Bundle("b1")).ok());
  EXPECT_EQ(State("c1", "nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Kill("c1", SIGKILL, "nope").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Delete("c1", "nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(service_->ContainerCount(), 1u);  // a failed exec delete does not drop the container
}

TEST_F(ServiceTest, CreateRequestChecks) {
  EXPECT_EQ(Create("", Bundle("b1")).status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(Create("c1", Bundle("b1")).ok());
  EXPECT_EQ(Create("c1", Bundle("b2")).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(fake_.CallsOf("Create").size(), 1u);
  EXPECT_EQ(events_.Count(kTaskCreate), 1u);
}

TEST_F(ServiceTest, CreateWithoutSpecNamesTheFile) {
  const std::string bundle = dir_ + "/empty-bundle";
  std::filesystem::create_directories(bundle);
  auto r = Create("c1", bundle);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr(bundle + "/config.json"));
  EXPECT_THAT(fake_.Calls(), IsEmpty());

  std::ofstream(bundle + "/config.json") << "{not json";
  r = Create("c1", bundle);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr(bundle + "/config.json"));
  EXPECT_EQ(service_->ContainerCount(), 0u);
}

TEST_F(ServiceTest, RunscCreateFailureRegistersNothing) {
  fake_.SetError("Create", absl::UnknownError("runsc create c1: exit 1: no sandbox for you"));
  auto r = Create("c1", Bundle("b1"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnknown);
  EXPECT_THAT(r.status().message(), HasSubstr("no sandbox for you"));
  EXPECT_EQ(service_->ContainerCount(), 0u);
  EXPECT_THAT(events_.Types(), IsEmpty());
  ASSERT_EQ(fake_.CallsOf("Delete").size(), 1u);
  EXPECT_TRUE(fake_.CallsOf("Delete")[0].force);
  // The id can be used again.
  fake_.SetError("Create", absl::OkStatus());
  EXPECT_TRUE(Create("c1", Bundle("b1")).ok());
}

TEST_F(ServiceTest, ShutdownOnlyWhenNoContainerIsLeft) {
  ASSERT_TRUE(Create("c1", Bundle("b1")).ok());
  ASSERT_TRUE(Shutdown().ok());
  EXPECT_EQ(shutdowns_.load(), 0);
  ASSERT_TRUE(Kill("c1", SIGKILL).ok());
  WaitExit("c1");
  ASSERT_TRUE(Delete("c1").ok());
  ASSERT_TRUE(Shutdown().ok());
  EXPECT_EQ(shutdowns_.load(), 1);
}

// A long `runsc create` of one container (here held by the fake) must not block the Create of another
// container of the pod; a second Create of the id being created is refused; the shim does not shut down
// under a Create in progress.
TEST_F(ServiceTest, CreatesOfDifferentContainersDoNotWaitForEachOther) {
  const std::string b1 = Bundle("b1"), b2 = Bundle("b2"), b3 = Bundle("b3");
  fake_.Block("Create");
  absl::StatusOr<tv2::CreateTaskResponse> slow = absl::UnknownError("not returned");
  std::thread t([&] { slow = Create("slow", b1); });
  ASSERT_TRUE(fake_.WaitBlocked("Create", 1, kTimeout));
  // The duplicate is refused at once, without reaching runsc.
  absl::StatusOr<tv2::CreateTaskResponse> dup = absl::UnknownError("not returned");
  absl::Notification dup_done;
  std::thread t3([&] {
    dup = Create("slow", b3);
    dup_done.Notify();
  });
  const bool dup_returned = dup_done.WaitForNotificationWithTimeout(kTimeout);
  // Another container's Create reaches runsc while the first is still held there.
  absl::StatusOr<tv2::CreateTaskResponse> fast = absl::UnknownError("not returned");
  std::thread t2([&] { fast = Create("fast", b2); });
  const bool reached = fake_.WaitBlocked("Create", 2, kTimeout);
  ASSERT_TRUE(Shutdown().ok());
  const int shutdowns_during_create = shutdowns_.load();
  fake_.Unblock("Create");
  t.join();
  t2.join();
  t3.join();
  EXPECT_TRUE(dup_returned) << "the duplicate Create waited for the first one's runsc create";
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists) << dup.status();
  EXPECT_TRUE(reached) << "the second Create waited for the first one's runsc create";
  EXPECT_EQ(shutdowns_during_create, 0);
  ASSERT_TRUE(slow.ok()) << slow.status();
  ASSERT_TRUE(fast.ok()) << fast.status();
  EXPECT_EQ(service_->ContainerCount(), 2u);
  EXPECT_EQ(fake_.CallsOf("Create").size(), 2u);
}

TEST_F(ServiceTest, ShutdownNowAlwaysShutsDown) {
  ASSERT_TRUE(Create("c1", Bundle("b1")).ok());
  ASSERT_TRUE(Shutdown(/*now=*/true).ok());
  EXPECT_EQ(shutdowns_.load(), 1);
}

TEST_F(ServiceTest, KillCreatedTaskReportsSignalStatus) {
  ASSERT_TRUE(Create("c1", Bundle("b1")).ok());
  ASSERT_TRUE(Kill("c1", SIGKILL).ok());
  auto w = Wait("c1");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->exit_status(), 128u + SIGKILL);
  EXPECT_EQ(Kill("c1", SIGKILL).code(), absl::StatusCode::kNotFound);  // already stopped
}

TEST_F(ServiceTest, KillWithInvalidSignal) {
  ASSERT_TRUE(Create("c1", Bundle("b1")).ok());
  EXPECT_EQ(Kill("c1", 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Kill("c1", 65).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(fake_.CallsOf("Delete"), IsEmpty());
  EXPECT_THAT(fake_.CallsOf("Kill"), IsEmpty());
}

TEST_F(ServiceTest, ExecWithSpecThatIsNotJson) {
  ASSERT_TRUE(Create("c1", Bundle("b1")).ok());
  ASSERT_TRUE(Start("c1").ok());
  absl::Status st = Exec("c1", "e1", "args: [sh]");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(st.message(), HasSubstr("e1"));
  EXPECT_EQ(events_.Count(kExecAdded), 0u);
  EXPECT_EQ(State("c1", "e1").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ServiceTest, ExecLifecycle) {
  ASSERT_TRUE(Create("c1", Bundle("b1")).ok());
  ASSERT_TRUE(Start("c1").ok());
  const std::string out = dir_ + "/exec.out";
  tv2::ExecProcessRequest req;
  req.set_id("c1");
  req.set_exec_id("e1");
  req.set_stdout("file://" + out);
  req.mutable_spec()->set_value(R"({"args":["/bin/sh","-c","echo hi; exit 6"],"cwd":"/"})");
  ASSERT_TRUE(CallEmpty("Exec", req).ok());
  auto st = State("c1", "e1");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->status(), containerd::v1::types::CREATED);
  EXPECT_EQ(st->id(), "e1");
  EXPECT_EQ(st->exec_id(), "e1");
  EXPECT_EQ(st->stdout(), "file://" + out);

  auto pid = Start("c1", "e1");
  ASSERT_TRUE(pid.ok()) << pid.status();
  auto w = Wait("c1", "e1");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->exit_status(), 6u);
  EXPECT_EQ(ReadFile(out), "hi\n");
  EXPECT_EQ(State("c1", "e1")->status(), containerd::v1::types::STOPPED);

  auto del = Delete("c1", "e1");
  ASSERT_TRUE(del.ok()) << del.status();
  EXPECT_EQ(del->exit_status(), 6u);
  EXPECT_EQ(del->pid(), *pid);
  // An exec's delete publishes no TaskDelete and keeps the container.
  EXPECT_EQ(events_.Count(kTaskDelete), 0u);
  EXPECT_EQ(service_->ContainerCount(), 1u);
  EXPECT_THAT(events_.Types(), ElementsAre(kTaskCreate, kTaskStart, kExecAdded, kExecStarted, kTaskExit));
}

TEST_F(ServiceTest, CriContainerJoinsTheSandbox) {
  const std::string out = dir_ + "/c2.out";
  const std::string bundle = Bundle(
      "b2", {{"io.kubernetes.cri.container-type", "container"}, {"io.kubernetes.cri.sandbox-id", "sb1"}});
  tv2::CreateTaskRequest req = CreateReq("c2", bundle);
  req.set_stdout("file://" + out);
  ASSERT_TRUE(Call<tv2::CreateTaskResponse>("Create", req).ok());
  auto creates = fake_.CallsOf("Create");
  ASSERT_EQ(creates.size(), 1u);
  EXPECT_EQ(creates[0].stdio.out, -1);  // not the sandbox: no stdio at create

  ASSERT_TRUE(Start("c2").ok());
  auto starts = fake_.CallsOf("Start");
  ASSERT_EQ(starts.size(), 1u);
  EXPECT_GE(starts[0].stdio.out, 0);  // stdio at start
  ASSERT_TRUE(fake_.ExitInit("c2", 12).ok());
  auto w = Wait("c2");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->exit_status(), 12u);
  // The exit came from `runsc wait`.
  EXPECT_EQ(fake_.CallsOf("Wait").size(), 1u);
  EXPECT_EQ(ReadFile(out), "started c2\n");
}

TEST_F(ServiceTest, CriSandboxContainerOwnsTheSandbox) {
  const std::string out = dir_ + "/sb.out";
  const std::string bundle = Bundle("sb", {{"io.kubernetes.cri.container-type", "sandbox"}});
  tv2::CreateTaskRequest req = CreateReq("sb1", bundle);
  req.set_stdout("file://" + out);
  ASSERT_TRUE(Call<tv2::CreateTaskResponse>("Create", req).ok());
  EXPECT_GE(fake_.CallsOf("Create")[0].stdio.out, 0);
  ASSERT_TRUE(Start("sb1").ok());
  EXPECT_EQ(fake_.CallsOf("Start")[0].stdio.out, -1);
  ASSERT_TRUE(fake_.ExitInit("sb1", 0).ok());
  ASSERT_TRUE(Wait("sb1").ok());
  EXPECT_THAT(fake_.CallsOf("Wait"), IsEmpty());
}

TEST_F(ServiceTest, SeccompInSpecTurnsOnOciSeccomp) {
  ASSERT_TRUE(Create("c1", Bundle("b1", nlohmann::json::object(),
                                  {{"seccomp", {{"defaultAction", "SCMP_ACT_ERRNO"}}}}))
                  .ok());
  ASSERT_EQ(globals_.size(), 1u);
  EXPECT_TRUE(globals_[0].oci_seccomp);
}

TEST_F(ServiceTest, StatsAreCgroupV1Metrics) {
  ASSERT_TRUE(Create("c1", Bundle("b1")).ok());
  ASSERT_TRUE(Start("c1").ok());
  runsc::Stats s;
  s.cpu_total_ns = 1000;
  s.cpu_user_ns = 600;
  s.cpu_kernel_ns = 400;
  s.cpu_per_cpu_ns = {700, 300};
  s.memory_usage = 4096;
  s.memory_max = 8192;
  s.memory_limit = 1 << 20;
  s.memory_failcnt = 2;
  s.swap_usage = 11;
  s.swap_limit = 22;
  s.kernel_usage = 33;
  s.memory_cache = 44;
  s.memory_rss = 55;
  s.pids_current = 3;
  s.pids_limit = 100;
  fake_.SetStats(s);
  tv2::StatsRequest req;
  req.set_id("c1");
  auto r = Call<tv2::StatsResponse>("Stats", req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stats().type_url(), "io.containerd.cgroups.v1.Metrics");
  io::containerd::cgroups::v1::Metrics m;
  ASSERT_TRUE(m.ParseFromString(r->stats().value()));
  EXPECT_EQ(m.cpu().usage().total(), 1000u);
  EXPECT_EQ(m.cpu().usage().user(), 600u);
  EXPECT_EQ(m.cpu().usage().kernel(), 400u);
  EXPECT_THAT(m.cpu().usage().per_cpu(), ElementsAre(700u, 300u));
  EXPECT_EQ(m.memory().usage().usage(), 4096u);
  EXPECT_EQ(m.memory().usage().max(), 8192u);
  EXPECT_EQ(m.memory().usage().limit(), 1u << 20);
  EXPECT_EQ(m.memory().usage().failcnt(), 2u);
  EXPECT_EQ(m.memory().swap().usage(), 11u);
  EXPECT_EQ(m.memory().swap().limit(), 22u);
  EXPECT_EQ(m.memory().kernel().usage(), 33u);
  EXPECT_EQ(m.memory().cache(), 44u);
  EXPECT_EQ(m.memory().rss(), 55u);
  EXPECT_EQ(m.pids().current(), 3u);
  EXPECT_EQ(m.pids().limit(), 100u);

  fake_.SetError("GetStats", absl::UnknownError("runsc events c1: exit 1: boom"));
  EXPECT_EQ(Call<tv2::StatsResponse>("Stats", req).status().code(), absl::StatusCode::kUnknown);
}

TEST_F(ServiceTest, PauseResumeAndPids) {
  ASSERT_TRUE(Create("c1", Bundle("b1")).ok());
  ASSERT_TRUE(Start("c1").ok());
  tv2::PauseRequest pause;
  pause.set_id("c1");
  ASSERT_TRUE(CallEmpty("Pause", pause).ok());
  EXPECT_EQ(State("c1")->status(), containerd::v1::types::PAUSED);
  tv2::ResumeRequest resume;
  resume.set_id("c1");
  ASSERT_TRUE(CallEmpty("Resume", resume).ok());
  EXPECT_EQ(State("c1")->status(), containerd::v1::types::RUNNING);

  tv2::PidsRequest pids;
  pids.set_id("c1");
  auto r = Call<tv2::PidsResponse>("Pids", pids);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->processes_size(), 1);
  EXPECT_EQ(r->processes(0).pid(), 1u);
}

TEST_F(ServiceTest, ConnectReportsShimAndTaskPid) {
  ASSERT_TRUE(Create("c1", Bundle("b1")).ok());
  tv2::ConnectRequest req;
  req.set_id("c1");
  auto r = Call<tv2::ConnectResponse>("Connect", req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->shim_pid(), static_cast<uint32_t>(::getpid()));
  EXPECT_EQ(r->task_pid(), static_cast<uint32_t>(fake_.ContainerPid("c1")));
  EXPECT_EQ(r->version(), kVersion);
  req.set_id("nope");  // Connect does not fail for an unknown task
  r = Call<tv2::ConnectResponse>("Connect", req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->task_pid(), 0u);
}

// Deleting a task that was never started force-deletes its sandbox; whatever the shim does with the sandbox's
// exit, containerd must not get a TaskExit after the TaskDelete (containerd's runc shim drops that exit).
TEST_F(ServiceTest, DeleteOfCreatedTaskPublishesNoExitAfterDelete) {
  ASSERT_TRUE(Create("c1", Bundle("b1")).ok());
  auto del = Delete("c1");
  ASSERT_TRUE(del.ok()) << del.status();
  ASSERT_TRUE(fake_.WaitContainerExit("c1", kTimeout));
  // The container object is gone once Delete returned; anything it was going to publish has been published.
  auto del_index = events_.Find(kTaskDelete);
  ASSERT_TRUE(del_index.has_value());
  auto exit_index = events_.Find(kTaskExit);
  if (exit_index.has_value()) {
    EXPECT_LT(*exit_index, *del_index);
  }
}

TEST_F(ServiceTest, TwoContainersAreIndependent) {
  ASSERT_TRUE(Create("c1", Bundle("b1")).ok());
  ASSERT_TRUE(Create("c2", Bundle("b2", {{"io.kubernetes.cri.container-type", "container"}})).ok());
  ASSERT_TRUE(Start("c1").ok());
  ASSERT_TRUE(Start("c2").ok());
  ASSERT_TRUE(fake_.ExitInit("c2", 1).ok());
  EXPECT_EQ(Wait("c2")->exit_status(), 1u);
  EXPECT_EQ(State("c1")->status(), containerd::v1::types::RUNNING);
  ASSERT_TRUE(Delete("c2").ok());
  EXPECT_EQ(service_->ContainerCount(), 1u);
  ASSERT_TRUE(Shutdown().ok());
  EXPECT_EQ(shutdowns_.load(), 0);
}

}  // namespace
}  // namespace gvshim::task
