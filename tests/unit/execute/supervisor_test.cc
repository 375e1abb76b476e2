// The shim's supervisor of Execute server processes, with a fake server: a shell script that records its argv
// and every input line, and exits at end of input (or misbehaves when told to by marker files).
#include "shim/execute/supervisor/supervisor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "shim/config/config.h"
#include "shim/execute/common/helpers.h"
#include "tests/unit/fakes/fake_runsc.h"
#include "tests/unit/fakes/test_util.h"

namespace gvshim::execute {
namespace {

using ::gvshim::testing::ReadFile;
using ::gvshim::testing::WaitFor;

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Kill(pid, 0) fails once the reaper collected the process.
bool Gone(pid_t pid) { return ::kill(pid, 0) != 0; }

class SupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gvsup-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    server_ = dir_ + "/fake-server";
    std::ofstream(server_)
        << "#!/bin/sh\n"
        << "d=" << dir_ << "\n"
        << "echo \"$*\" >>\"$d/argv.$$\"\n"
        << "if [ -e \"$d/ignore-eof\" ]; then trap '' TERM; while :; do sleep 0.05; done; fi\n"
        << "if [ -e \"$d/no-read\" ]; then : >\"$d/not-reading.$$\"; while :; do sleep 0.05; done; fi\n"
        << "while IFS= read -r line; do\n"
        << "  echo \"$line\" >>\"$d/in.$$\"\n"
        << "  case $line in *'\"op\":\"start\"'*)\n"
        << "    id=$(echo \"$line\" | sed 's/.*\"exec_container\":\"\\([^\"/]*\\)\\/execute\".*/\\1/')\n"
        << "    while [ -e \"$d/hold-warm\" ]; do sleep 0.02; done\n"
        << "    [ -e \"$d/no-warm\" ] || echo \"{\\\"op\\\":\\\"warm\\\",\\\"id\\\":\\\"$id\\\"}\" ;;\n"
        << "  esac\n"
        << "  if [ -e \"$d/crash\" ]; then rm -f \"$d/crash\"; exit 7; fi\n"
        << "  if [ -e \"$d/crash-always\" ]; then exit 7; fi\n"
        << "done\n"
        << "echo EOF >>\"$d/in.$$\"\n";
    fs::permissions(server_, fs::perms::owner_all);
    fs::create_directories(dir_ + "/helpers");
    for (const char* h : {kLauncherName, kPyIsolateName}) std::ofstream(dir_ + "/helpers/" + h) << "";
  }
  void TearDown() override {
    sup_.reset();
    fs::remove_all(dir_);
  }

  void Make(const std::string& extra = "", absl::Duration stop_timeout = absl::Seconds(5),
            absl::Duration eager_wait = absl::Seconds(15)) {
    auto cfg = config::Parse(absl::StrCat("[execute]\nenabled = true\nsocket_dir = \"", dir_,
                                          "/s\"\nserver = \"", server_, "\"\n", extra),
                             "g.toml");
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    config_ = std::make_shared<const config::Config>(*cfg);
    Supervisor::Options o;
    o.reaper = &testing::TestReaper();
    o.default_server = "/nonexistent/gvshim";
    o.stop_timeout = stop_timeout;
    o.restart_delay = absl::Milliseconds(20);
    o.runsc_factory = [this](const runsc::GlobalOptions&) {
      return std::make_unique<testing::FakeRunscView>(&runsc_);
    };
    o.default_helpers_dir = dir_ + "/helpers";
    o.eager_wait = eager_wait;
    o.server_pipe_bytes = pipe_bytes_;
    sup_ = std::make_unique<Supervisor>(o);
  }

  int pipe_bytes_ = 1 << 20;

  task::ContainerLifecycle Info(const std::string& id, bool opt_in) {
    task::ContainerLifecycle info;
    info.id = id;
    info.ns = "t";
    info.sandbox_id = "sbx";
    info.bundle = dir_ + "/" + id;
    info.rootfs = dir_ + "/" + id + "/rootfs";
    fs::create_directories(info.rootfs);
    std::ofstream(info.bundle + "/config.json")
        << R"({"ociVersion":"1.0.2","hostname":"pod-host","process":{"args":["sh"],"cwd":"/",)"
        << R"("env":["PATH=/opt/bin:/bin"]},"root":{"path":"rootfs"}})";
    if (opt_in) info.annotations["dev.gvshim.execute"] = "true";
    info.runsc.root = "/run/runsc-test";
    info.config = config_;
    return info;
  }

  // The JSON lines server `pid` has read so far ("EOF" once its input closed).
  std::vector<std::string> Input(pid_t pid) {
    std::vector<std::string> lines =
        absl::StrSplit(ReadFile(absl::StrCat(dir_, "/in.", pid)), '\n', absl::SkipEmpty());
    return lines;
  }
  // The pids of every server started so far (each writes argv.<pid> first), in no particular order.
  std::vector<pid_t> ServerPids() {
    std::vector<pid_t> pids;
    for (const auto& e : fs::directory_iterator(dir_)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("argv.", 0) == 0) pids.push_back(std::stoi(name.substr(5)));
    }
    return pids;
  }
  std::vector<std::string> Ops(pid_t pid) {
    std::vector<std::string> ops;
    for (const auto& l : Input(pid)) {
      if (l == "EOF") {
        ops.push_back("EOF");
        continue;
      }
      auto j = nlohmann::json::parse(l);
      std::string op = j["op"];
      if (op == "start") op += " " + j["container"]["id"].get<std::string>();
      if (op == "delete") op += " " + j["id"].get<std::string>();
      ops.push_back(op);
    }
    return ops;
  }

  std::string dir_, server_;
  testing::FakeRunsc runsc_;
  std::shared_ptr<const config::Config> config_;
  std::unique_ptr<Supervisor> sup_;
};

TEST_F(SupervisorTest, NoServerUntilThePodOptsInThenTheWholePodIsSent) {
  Make();
  sup_->OnContainerStarted(Info("sbx", false));
  EXPECT_EQ(sup_->ServerPid("t", "sbx"), 0);
  sup_->OnContainerStarted(Info("app", true));
  const pid_t pid = sup_->ServerPid("t", "sbx");
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(WaitFor([&] { return Ops(pid).size() >= 3; }));
  EXPECT_THAT(Ops(pid), ElementsAre("sandbox", "start sbx", "start app"));
  EXPECT_EQ(ReadFile(absl::StrCat(dir_, "/argv.", pid)), "execute-server\n");
  auto hello = nlohmann::json::parse(Input(pid)[0]);
  EXPECT_EQ(hello["ns"], "t");
  EXPECT_EQ(hello["sandbox_id"], "sbx");
  EXPECT_EQ(hello["shim_pid"], ::getpid());
  EXPECT_EQ(hello["config"]["socket_dir"], dir_ + "/s");
  auto start = nlohmann::json::parse(Input(pid)[2]);
  EXPECT_EQ(start["container"]["rootfs"], dir_ + "/app/rootfs");
  EXPECT_EQ(start["container"]["runsc"]["root"], "/run/runsc-test");
}

// CRI passes every pod annotation, of any size; only the ones the server reads travel, so a huge one neither
// fills the pipe nor costs the pod its server.
TEST_F(SupervisorTest, OnlyTheAnnotationsTheServerReadsAreSentWithinBounds) {
  Make();
  auto info = Info("sbx", true);
  info.annotations["kubectl.kubernetes.io/last-applied-configuration"] = std::string(300 << 10, 'x');
  info.annotations["io.kubernetes.cri.sandbox-name"] = "pod-a";
  info.annotations["dev.gvshim.pool"] = "agents";                     // dev.gvshim.* travel, within bounds
  info.annotations["dev.gvshim.huge"] = std::string(300 << 10, 'x');  // too large to travel
  for (int i = 0; i < 40; ++i)
    info.annotations[absl::StrCat("dev.gvshim.z", i)] = "v";  // past the count limit
  sup_->OnContainerStarted(info);
  const pid_t pid = sup_->ServerPid("t", "sbx");
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(WaitFor([&] { return Ops(pid).size() >= 2; }));
  auto start = nlohmann::json::parse(Input(pid)[1]);
  auto got = start["container"]["annotations"];
  EXPECT_EQ(got.size(), kMaxForwardedAnnotations);
  EXPECT_EQ(got["dev.gvshim.execute"], "true");
  EXPECT_EQ(got["io.kubernetes.cri.sandbox-name"], "pod-a");
  EXPECT_EQ(got["dev.gvshim.pool"], "agents");
  EXPECT_FALSE(got.contains("dev.gvshim.huge"));
  EXPECT_FALSE(got.contains("kubectl.kubernetes.io/last-applied-configuration"));
  EXPECT_FALSE(Gone(pid));
  EXPECT_EQ(sup_->ServerPid("t", "sbx"), pid);
}

TEST_F(SupervisorTest, DisabledOrAbsentConfigStartsNothing) {
  Make("require_annotation = false\n");
  auto info = Info("sbx", true);
  info.config =
      std::make_shared<const config::Config>(*config::Parse("[execute]\nenabled = false\n", "g.toml"));
  sup_->OnContainerStarted(info);
  info.config = std::make_shared<const config::Config>(*config::Parse("", "g.toml"));
  sup_->OnContainerStarted(info);
  info.config = nullptr;
  sup_->OnContainerStarted(info);
  EXPECT_EQ(sup_->ServerPid("t", "sbx"), 0);
  EXPECT_FALSE(fs::exists(dir_ + "/argv." + std::to_string(0)));
  for (const auto& e : fs::directory_iterator(dir_))
    EXPECT_THAT(e.path().string(), ::testing::Not(HasSubstr("argv.")));
}

TEST_F(SupervisorTest, RequireAnnotationFalseServesEveryPod) {
  Make("require_annotation = false\n");
  sup_->OnContainerStarted(Info("sbx", false));
  EXPECT_GT(sup_->ServerPid("t", "sbx"), 0);
}

TEST_F(SupervisorTest, DeletesAreForwardedAndTheLastOneEndsTheServer) {
  Make();
  sup_->OnContainerStarted(Info("sbx", true));
  sup_->OnContainerStarted(Info("app", false));
  const pid_t pid = sup_->ServerPid("t", "sbx");
  ASSERT_GT(pid, 0);
  sup_->OnContainerDeleted("app");
  ASSERT_TRUE(WaitFor([&] { return Ops(pid).size() >= 4; }));
  EXPECT_THAT(Ops(pid), ElementsAre("sandbox", "start sbx", "start app", "delete app"));
  EXPECT_FALSE(Gone(pid));
  // A stale socket left by the server is removed with it.
  fs::create_directories(dir_ + "/s");
  const std::string sock = absl::StrCat(dir_, "/s/", SocketKey("t", "sbx"), ".sock");
  std::ofstream(sock) << "";
  sup_->OnContainerDeleted("sbx");  // returns once the server has exited
  EXPECT_TRUE(Gone(pid));
  EXPECT_THAT(Ops(pid), ElementsAre("sandbox", "start sbx", "start app", "delete app", "EOF"));
  EXPECT_EQ(sup_->ServerPid("t", "sbx"), 0);
  EXPECT_FALSE(fs::exists(sock));
  sup_->OnContainerDeleted("sbx");  // unknown now: nothing happens
}

// The servers' pids come from the files they write, not from ServerPid() right after the start: on a slow
// machine the first server may have crashed and been replaced before the test looks.
TEST_F(SupervisorTest, ADeadServerIsStartedAgainWithThePod) {
  Make();
  std::ofstream(dir_ + "/crash") << "";
  sup_->OnContainerStarted(Info("sbx", true));
  ASSERT_TRUE(WaitFor([&] { return ServerPids().size() == 2; })) << "the dead server was not replaced";
  const std::vector<pid_t> pids = ServerPids();
  const pid_t live = sup_->ServerPid("t", "sbx");
  ASSERT_THAT(pids, ::testing::Contains(live));
  const pid_t dead = pids[0] == live ? pids[1] : pids[0];
  EXPECT_TRUE(WaitFor([&] { return Gone(dead); }));
  EXPECT_THAT(Ops(dead), ElementsAre("sandbox"));  // it crashed on its first line
  ASSERT_TRUE(WaitFor([&] { return Ops(live).size() >= 2; }));
  EXPECT_THAT(Ops(live), ElementsAre("sandbox", "start sbx"));  // the new one is given the whole pod
  EXPECT_FALSE(Gone(live));
}

// A server that keeps dying right after its start is restarted kMaxRestarts times, then the pod goes without.
TEST_F(SupervisorTest, ACrashLoopingServerIsGivenUpAfterFiveRestarts) {
  Make();
  std::ofstream(dir_ + "/crash-always") << "";
  sup_->OnContainerStarted(Info("sbx", true));
  auto servers = [&] { return static_cast<int>(ServerPids().size()); };
  ASSERT_TRUE(WaitFor([&] { return servers() == Supervisor::kMaxRestarts + 1; }, absl::Seconds(20)));
  // No further start: wait for the restart delay many times over, then count again.
  ASSERT_TRUE(WaitFor([&] { return sup_->ServerPid("t", "sbx") == 0; }));
  absl::SleepFor(absl::Milliseconds(500));  // 25 restart delays: a sixth restart would have happened
  EXPECT_EQ(servers(), Supervisor::kMaxRestarts + 1);
  EXPECT_EQ(sup_->ServerPid("t", "sbx"), 0);
}

// A server that stops reading its input holds up its own pod's container operations (for kSendTimeout, then
// it is killed), never another pod's: the supervisor's lock is not held while it waits on one pod's pipe.
TEST_F(SupervisorTest, AServerThatDoesNotReadHoldsUpOnlyItsOwnPod) {
  pipe_bytes_ = 4096;
  Make("", absl::Milliseconds(200));
  std::ofstream(dir_ + "/no-read") << "";
  auto big = Info("a0", true);
  big.annotations[kPodNameAnnotation] = std::string(64 << 10, 'x');  // one line larger than the pipe
  std::atomic<bool> a_done = false;
  std::thread a([&] {
    sup_->OnContainerStarted(big);
    a_done = true;
  });
  auto not_reading = [&] {
    for (const auto& e : fs::directory_iterator(dir_))
      if (e.path().filename().string().rfind("not-reading.", 0) == 0) return true;
    return false;
  };
  ASSERT_TRUE(WaitFor(not_reading));
  const pid_t stuck = sup_->ServerPid("t", "sbx");
  ASSERT_GT(stuck, 0);
  fs::remove(dir_ + "/no-read");
  auto other = Info("b0", true);
  other.sandbox_id = "p2";
  sup_->OnContainerStarted(other);
  EXPECT_FALSE(a_done) << "another pod's container start waited for the pod whose server does not read";
  EXPECT_GT(sup_->ServerPid("t", "p2"), 0);
  a.join();
  // The server that did not read was killed (and a new one gets the whole pod).
  EXPECT_TRUE(WaitFor([&] { return Gone(stuck); }));
}

TEST_F(SupervisorTest, AServerThatIgnoresEndOfInputIsKilled) {
  Make("", absl::Milliseconds(200));
  std::ofstream(dir_ + "/ignore-eof") << "";
  sup_->OnContainerStarted(Info("sbx", true));
  const pid_t pid = sup_->ServerPid("t", "sbx");
  ASSERT_GT(pid, 0);
  const absl::Time t0 = absl::Now();
  sup_->OnContainerDeleted("sbx");
  EXPECT_TRUE(Gone(pid));
  EXPECT_LT(absl::Now() - t0, absl::Seconds(5));
}

TEST_F(SupervisorTest, ShutdownStopsEveryServer) {
  Make();
  sup_->OnContainerStarted(Info("sbx", true));
  auto other = Info("p2", true);
  other.sandbox_id = "p2";
  sup_->OnContainerStarted(other);
  const pid_t a = sup_->ServerPid("t", "sbx"), b = sup_->ServerPid("t", "p2");
  ASSERT_GT(a, 0);
  ASSERT_GT(b, 0);
  ASSERT_NE(a, b);
  sup_->Shutdown();
  EXPECT_TRUE(Gone(a));
  EXPECT_TRUE(Gone(b));
  sup_->OnContainerStarted(Info("late", true));  // after shutdown: ignored
  EXPECT_EQ(sup_->ServerPid("t", "sbx"), 0);
}

TEST_F(SupervisorTest, AnOptedInContainerGetsAnExecuteContainerThatGoesWithIt) {
  Make();
  sup_->OnContainerStarted(Info("app", true));
  const std::string exec = ExecContainerId("app");
  auto creates = runsc_.CallsOf("Create");
  ASSERT_EQ(creates.size(), 1u);
  EXPECT_EQ(creates[0].id, exec);
  EXPECT_EQ(creates[0].bundle, dir_ + "/app/gvshim-execute");
  ASSERT_EQ(runsc_.CallsOf("Start").size(), 1u);
  auto spec = nlohmann::json::parse(ReadFile(dir_ + "/app/gvshim-execute/config.json"));
  EXPECT_EQ(spec["root"]["path"], dir_ + "/app/rootfs");
  EXPECT_EQ(spec["root"]["readonly"], true);
  EXPECT_EQ(spec["hostname"], "pod-host");
  EXPECT_EQ(spec["annotations"]["io.kubernetes.cri.sandbox-id"],
            runsc::ContainerId("/run/runsc-test", "sbx"));
  EXPECT_EQ(spec["annotations"]["io.kubernetes.cri.container-type"], "container");
  // The server learns where to run the container's runners.
  const pid_t pid = sup_->ServerPid("t", "sbx");
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(WaitFor([&] { return Ops(pid).size() >= 2; }));
  auto start = nlohmann::json::parse(Input(pid)[1]);
  EXPECT_EQ(start["container"]["exec_container"], exec);
  EXPECT_EQ(start["container"]["exec_error"], "");
  sup_->OnContainerDeleted("app");
  auto deletes = runsc_.CallsOf("Delete");
  ASSERT_EQ(deletes.size(), 1u);
  EXPECT_EQ(deletes[0].id, exec);
  EXPECT_FALSE(fs::exists(dir_ + "/app/gvshim-execute"));
  EXPECT_TRUE(Gone(pid));
}

TEST_F(SupervisorTest, NoExecuteContainerForAPodSandboxOrAPodThatDidNotOptIn) {
  Make();
  auto pause = Info("sbx", true);
  pause.annotations["io.kubernetes.cri.container-type"] = "sandbox";
  sup_->OnContainerStarted(pause);
  sup_->OnContainerStarted(Info("other", false));  // same pod, opted in through the sandbox: gets one
  auto lone = Info("lone", false);
  lone.sandbox_id = "lone";
  sup_->OnContainerStarted(lone);  // a pod of its own that did not opt in
  auto creates = runsc_.CallsOf("Create");
  ASSERT_EQ(creates.size(), 1u);
  EXPECT_EQ(creates[0].id, ExecContainerId("other"));
}

TEST_F(SupervisorTest, AFailedExecuteContainerIsReportedToTheServerAndLeavesNothing) {
  Make();
  runsc_.SetError("Start", absl::InternalError("runsc start: boom"));
  sup_->OnContainerStarted(Info("app", true));
  EXPECT_EQ(runsc_.CallsOf("Delete").size(), 1u);  // the half-made container is removed again
  EXPECT_FALSE(fs::exists(dir_ + "/app/gvshim-execute"));
  const pid_t pid = sup_->ServerPid("t", "sbx");
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(WaitFor([&] { return Ops(pid).size() >= 2; }));
  auto start = nlohmann::json::parse(Input(pid)[1]);
  EXPECT_EQ(start["container"]["exec_container"], "");
  EXPECT_THAT(start["container"]["exec_error"].get<std::string>(), HasSubstr("boom"));
}

TEST_F(SupervisorTest, MissingHelpersAreNamed) {
  Make();
  fs::remove(dir_ + "/helpers/" + kLauncherName);
  sup_->OnContainerStarted(Info("app", true));
  EXPECT_TRUE(runsc_.CallsOf("Create").empty());
  const pid_t pid = sup_->ServerPid("t", "sbx");
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(WaitFor([&] { return Ops(pid).size() >= 2; }));
  auto start = nlohmann::json::parse(Input(pid)[1]);
  EXPECT_THAT(start["container"]["exec_error"].get<std::string>(), HasSubstr(kLauncherName));
}

// Eager start: Start (OnContainerStarted) returns once the server says the container's runners are ready.
TEST_F(SupervisorTest, AnEagerContainerIsReportedStartedOnceItsRunnersAreWarm) {
  Make("start = \"eager\"\n");
  std::ofstream(dir_ + "/hold-warm") << "";
  absl::Notification returned;
  std::thread t([&] {
    sup_->OnContainerStarted(Info("app", true));
    returned.Notify();
  });
  ASSERT_TRUE(WaitFor(
      [&] { return sup_->ServerPid("t", "sbx") > 0 && Ops(sup_->ServerPid("t", "sbx")).size() >= 2; }));
  EXPECT_FALSE(returned.WaitForNotificationWithTimeout(absl::Milliseconds(300)));  // still waiting for "warm"
  fs::remove(dir_ + "/hold-warm");
  EXPECT_TRUE(returned.WaitForNotificationWithTimeout(absl::Seconds(10)));
  t.join();
}

TEST_F(SupervisorTest, AnEagerContainerWhoseRunnersNeverWarmStillStartsAfterTheWait) {
  Make("start = \"eager\"\n", absl::Seconds(5), absl::Milliseconds(300));
  std::ofstream(dir_ + "/no-warm") << "";
  const absl::Time t0 = absl::Now();
  sup_->OnContainerStarted(Info("app", true));
  EXPECT_GE(absl::Now() - t0, absl::Milliseconds(300));
  EXPECT_LT(absl::Now() - t0, absl::Seconds(10));
}

TEST_F(SupervisorTest, AMissingServerProgramIsLoggedAndNothingBreaks) {
  Make();
  auto info = Info("sbx", true);
  info.config = std::make_shared<const config::Config>(
      *config::Parse(absl::StrCat("[execute]\nenabled = true\nsocket_dir = \"", dir_, "/s\"\n"), "g.toml"));
  sup_->OnContainerStarted(info);  // default_server is /nonexistent/gvshim
  EXPECT_EQ(sup_->ServerPid("t", "sbx"), 0);
  sup_->OnContainerDeleted("sbx");
}

}  // namespace
}  // namespace gvshim::execute
