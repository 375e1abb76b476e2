// task::Service: the container lifecycle through the Task API, configuration, limits, unknown ids, request
// checks, creates in parallel and shutdown.
#include "tests/unit/task/service_test_fixture.h"

namespace gvshim::task {
namespace {

namespace tv2 = containerd::task::v2;
using ::gvshim::testing::FakeRunscView;
using ::gvshim::testing::ReadFile;
using ::gvshim::testing::RecordedEvent;
using namespace ::gvshim::testing::event_types;  // NOLINT
using ::testing::ElementsAre;
using testing::ExitOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::kTimeout;
using testing::ServiceTest;

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

}  // namespace
}  // namespace gvshim::task
