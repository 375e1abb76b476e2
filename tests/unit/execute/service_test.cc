// The Execute service end to end inside one process: Manager → gRPC server on a real Unix socket → Runner →
// the real (bundled) runners, started by a fake runsc that runs the process JSON's argv on the host, with
// this build's helpers (GVSHIM_TEST_HELPERS_DIR). As root, the runners' namespaces, mounts and setuid work on
// the host as they do in a sandbox; the snippets' working directory is a directory under /run (not under
// /tmp, which each snippet gets a fresh tmpfs of).
#include "shim/execute/server/service.h"

#include <dirent.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gvshim/execute/v1/execute.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "shim/config/config.h"
#include "shim/execute/common/helpers.h"
#include "shim/execute/server/manager.h"
#include "tests/unit/fakes/fake_runsc.h"
#include "tests/unit/fakes/test_util.h"

namespace gvshim::execute {
namespace {

using ::gvshim::testing::ReadFile;
using ::gvshim::testing::WaitFor;

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class IgnoreSigpipe : public ::testing::Environment {
 public:
  void SetUp() override { ::signal(SIGPIPE, SIG_IGN); }  // as the shim's main does
};
::testing::Environment* const kEnv = ::testing::AddGlobalTestEnvironment(new IgnoreSigpipe);

// Polls an observable condition (not a fixed sleep).
int ThreadCount() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/task");
  while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
  ::closedir(d);
  return n;
}

class ExecuteServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (the runners unshare namespaces and setuid)";
    if (::access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "needs /usr/bin/python3";
    char tmpl[] = "/tmp/gvx-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ + "/b");
    ::chmod(dir_.c_str(), 0711);  // the Node runner enters a job dir below it as the job's uid
    char ws[] = "/run/gvx-ws-XXXXXX";
    ASSERT_NE(::mkdtemp(ws), nullptr);
    ws_ = ws;
  }
  void TearDown() override {
    manager_.reset();
    fake_.KillAll();
    if (!dir_.empty()) fs::remove_all(dir_);
    if (!ws_.empty()) ::rmdir(ws_.c_str());
  }

  // Starts a Manager whose config has `extra` lines in [execute]; `workspace` overrides the snippets' working
  // directory mount point.
  void Start(const std::string& extra = "", bool opt_in = true,
             const std::string& python = "/usr/bin/python3", const std::string& node = "/usr/bin/node",
             const std::string& workspace = "") {
    std::string toml = absl::StrCat(
        "[execute]\nenabled = true\nsocket_dir = \"", dir_, "/s\"\npython = \"", python, "\"\nnode = \"",
        node, "\"\nrunner_args = [\"--helpers\", \"", GVSHIM_TEST_HELPERS_DIR, "\", \"--workspace\", \"",
        workspace.empty() ? ws_ : workspace, "\", \"--weak-dir\", \"", dir_, "\"]\n", extra);
    auto cfg = config::Parse(toml, "test.toml");
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    auto ecfg = ParseExecuteTable(cfg->execute.get(), "test.toml");
    ASSERT_TRUE(ecfg.ok()) << ecfg.status();
    ecfg_ = *ecfg;
    manager_ = std::make_unique<Manager>(
        [this](const runsc::GlobalOptions&) { return std::make_unique<testing::FakeRunscView>(&fake_); },
        &testing::TestReaper());
    AddContainer("sbx", opt_in);
    if (!opt_in) return;
    auto path = manager_->SocketPath("t", "sbx");
    ASSERT_TRUE(path.has_value());
    socket_ = *path;
    stub_ = pb::Execute::NewStub(grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials()));
  }

  ContainerInfo Info(const std::string& id, bool opt_in) {
    ContainerInfo info;
    info.id = id;
    info.ns = "t";
    info.bundle = dir_ + "/b";
    info.rootfs = "/";  // the host's interpreters: the fake runsc runs the runner on the host
    info.sandbox_id = "sbx";
    info.exec_container = ExecContainerId(id);
    if (opt_in) info.annotations["dev.gvshim.execute"] = "true";
    info.annotations["dev.gvshim.pool"] = "agents";
    info.annotations["io.kubernetes.cri.sandbox-namespace"] = "default";
    info.annotations["io.kubernetes.cri.sandbox-name"] = "pod-a";
    return info;
  }

  void AddContainer(const std::string& id, bool opt_in = true) {
    runsc::CreateOptions co;
    co.bundle = dir_ + "/b";
    co.pid_file = absl::StrCat(dir_, "/b/", id, ".pid");
    ASSERT_TRUE(fake_.Create(id, co).ok());
    co.pid_file = absl::StrCat(dir_, "/b/", id, "-exec.pid");
    ASSERT_TRUE(fake_.Create(ExecContainerId(id), co).ok());
    manager_->OnContainerStarted(Info(id, opt_in), ecfg_);
  }

  pb::ExecuteRequest Py(const std::string& code, const std::string& args = "") {
    pb::ExecuteRequest r;
    r.set_language(pb::LANGUAGE_PYTHON);
    r.set_code(code);
    r.set_arguments_json(args);
    return r;
  }

  grpc::Status Call(const pb::ExecuteRequest& req, pb::ExecuteResponse* resp,
                    absl::Duration timeout = absl::Seconds(60)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoSeconds(timeout));
    return stub_->Execute(&ctx, req, resp);
  }

  pb::HealthResponse Health() {
    grpc::ClientContext ctx;
    pb::HealthResponse h;
    EXPECT_TRUE(stub_->Health(&ctx, pb::HealthRequest(), &h).ok());
    return h;
  }

  bool PythonReady() {
    grpc::ClientContext ctx;
    pb::ListRuntimesResponse lr;
    if (!stub_->ListRuntimes(&ctx, pb::ListRuntimesRequest(), &lr).ok()) return false;
    for (const auto& r : lr.runtimes()) {
      if (r.language() == pb::LANGUAGE_PYTHON) return r.ready();
    }
    return false;
  }

  // The host pid of the latest runner the fake started (it writes the internal pid file, as runsc does).
  pid_t LastRunnerPid() {
    auto calls = fake_.CallsOf("StartExec");
    if (calls.empty()) return 0;
    return std::atoi(ReadFile(calls.back().pid_file).c_str());
  }

  std::string dir_, ws_;
  testing::FakeRunsc fake_;
  ExecuteConfig ecfg_;
  std::unique_ptr<Manager> manager_;
  std::string socket_;
  std::unique_ptr<pb::Execute::Stub> stub_;
};

TEST_F(ExecuteServiceTest, PythonMainReturnsJson) {
  Start();
  pb::ExecuteResponse resp;
  grpc::Status st =
      Call(Py("def main(a, b):\n    print('hi')\n    return {'sum': a + b}\n", R"({"a": 1, "b": 2})"), &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.status(), pb::STATUS_SUCCESS) << resp.error() << resp.stderr();
  EXPECT_EQ(nlohmann::json::parse(resp.result_json()), nlohmann::json({{"sum", 3}}));
  EXPECT_EQ(resp.stdout(), "hi\n");
  EXPECT_EQ(resp.exit_code(), 0);
  EXPECT_EQ(resp.signal(), 0);
  EXPECT_GT(resp.duration_ms(), 0);
  // The runner ran as the process JSON said: root, cwd /, the runner source as the -c argument.
  auto calls = fake_.CallsOf("StartExec");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].id, ExecContainerId("sbx"));  // the execute container, not the pod's container
  auto spec = nlohmann::json::parse(ReadFile(calls[0].process_json));
  EXPECT_EQ(spec["args"][0], "/usr/bin/python3");
  EXPECT_EQ(spec["args"][1], "-I");
  EXPECT_THAT(spec["args"][3].get<std::string>(), HasSubstr("gvshim Python runner"));
  EXPECT_EQ(spec["user"]["uid"], 0);
  EXPECT_EQ(spec["cwd"], "/");
}

TEST_F(ExecuteServiceTest, JavaScriptMain) {
  if (::access("/usr/bin/node", X_OK) != 0) GTEST_SKIP() << "needs /usr/bin/node";
  Start();
  pb::ExecuteRequest req;
  req.set_language(pb::LANGUAGE_JAVASCRIPT);
  req.set_code("function main(args) { console.log('js'); return {n: args.x * 2}; }\n");
  req.set_arguments_json(R"({"x": 21})");
  pb::ExecuteResponse resp;
  grpc::Status st = Call(req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.status(), pb::STATUS_SUCCESS) << resp.error() << resp.stderr();
  EXPECT_EQ(nlohmann::json::parse(resp.result_json()), nlohmann::json({{"n", 42}}));
  EXPECT_EQ(resp.stdout(), "js\n");
}

TEST_F(ExecuteServiceTest, SyntaxErrorIsProgramError) {
  Start();
  pb::ExecuteResponse resp;
  ASSERT_TRUE(Call(Py("def main(:\n  pass\n"), &resp).ok());
  EXPECT_EQ(resp.status(), pb::STATUS_PROGRAM_ERROR);
  EXPECT_THAT(resp.stderr(), HasSubstr("SyntaxError"));
  EXPECT_NE(resp.exit_code(), 0);
}

TEST_F(ExecuteServiceTest, WallTimeout) {
  Start();
  pb::ExecuteRequest req = Py("import time\ntime.sleep(30)\n");
  req.mutable_limits()->set_wall_timeout_ms(500);
  pb::ExecuteResponse resp;
  const absl::Time t0 = absl::Now();
  ASSERT_TRUE(Call(req, &resp).ok());
  EXPECT_EQ(resp.status(), pb::STATUS_TIMEOUT) << resp.error();
  EXPECT_EQ(resp.exit_code(), -1);
  EXPECT_EQ(resp.signal(), SIGKILL);
  EXPECT_LT(absl::Now() - t0, absl::Seconds(15));
}

TEST_F(ExecuteServiceTest, BadRequestsAreInvalidArgumentAndTheServiceKeepsServing) {
  Start("max_code_bytes = 4096\n");
  struct Case {
    pb::ExecuteRequest req;
    grpc::StatusCode code;
    std::string want;
  };
  std::vector<Case> cases;
  {
    pb::ExecuteRequest r = Py("print(1)");
    r.set_language(pb::LANGUAGE_UNSPECIFIED);
    cases.push_back({r, grpc::StatusCode::INVALID_ARGUMENT, "language must be"});
    r.set_language(static_cast<pb::Language>(7));
    cases.push_back({r, grpc::StatusCode::INVALID_ARGUMENT, "got 7"});
  }
  cases.push_back({Py(std::string(5000, '#')), grpc::StatusCode::INVALID_ARGUMENT,
                   "code is 5000 bytes; the limit is 4096 bytes"});
  cases.push_back({Py(""), grpc::StatusCode::INVALID_ARGUMENT, "code is empty"});
  cases.push_back(
      {Py("print(1)", "{bad"), grpc::StatusCode::INVALID_ARGUMENT, "arguments_json is not valid JSON"});
  cases.push_back(
      {Py("print(1)", "3"), grpc::StatusCode::INVALID_ARGUMENT, "must be a JSON object or array"});
  {
    pb::ExecuteRequest r = Py("print(1)");
    (*r.mutable_env())["A=B"] = "x";
    cases.push_back({r, grpc::StatusCode::INVALID_ARGUMENT, "env: invalid variable name"});
  }
  {
    pb::ExecuteRequest r = Py("print(1)");
    r.mutable_limits()->set_memory_bytes(static_cast<uint64_t>(-1));
    cases.push_back({r, grpc::StatusCode::INVALID_ARGUMENT, "limits.memory_bytes is negative"});
  }
  {
    pb::ExecuteRequest r = Py("print(1)");
    r.set_target_container("nope");
    cases.push_back({r, grpc::StatusCode::NOT_FOUND, "target_container nope"});
  }
  for (const Case& c : cases) {
    pb::ExecuteResponse resp;
    grpc::Status st = Call(c.req, &resp);
    EXPECT_EQ(st.error_code(), c.code) << c.want << ": " << st.error_message();
    EXPECT_THAT(st.error_message(), HasSubstr(c.want));
  }
  EXPECT_TRUE(fake_.CallsOf("StartExec").empty()) << "a rejected request must not start a runner";
  pb::ExecuteResponse resp;
  ASSERT_TRUE(Call(Py("print(6 * 7)"), &resp).ok());
  EXPECT_EQ(resp.status(), pb::STATUS_SUCCESS) << resp.error();
  EXPECT_EQ(resp.stdout(), "42\n");
}

TEST_F(ExecuteServiceTest, QueueFullIsResourceExhausted) {
  Start("max_concurrent = 1\nmax_queue = 0\n");
  grpc::ClientContext slow_ctx;
  pb::ExecuteResponse slow_resp;
  grpc::Status slow_st;
  std::thread slow(
      [&] { slow_st = stub_->Execute(&slow_ctx, Py("import time\ntime.sleep(60)\n"), &slow_resp); });
  ASSERT_TRUE(WaitFor([&] { return Health().active() == 1; }));
  pb::ExecuteResponse resp;
  grpc::Status st = Call(Py("print(1)"), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(st.error_message(), "execute queue full (0 waiting, 1 running)");
  slow_ctx.TryCancel();
  slow.join();
  EXPECT_EQ(slow_st.error_code(), grpc::StatusCode::CANCELLED);
  // The cancelled snippet is killed, its slot comes back, and the next request runs.
  ASSERT_TRUE(WaitFor([&] { return Health().active() == 0; }, absl::Seconds(20)));
  ASSERT_TRUE(Call(Py("print(2)"), &resp).ok());
  EXPECT_EQ(resp.stdout(), "2\n");
}

// max_concurrent = 1: a second request waits in the queue (Health counts it) and runs only after the first
// finished, although it is much shorter.
TEST_F(ExecuteServiceTest, QueuedRequestRunsWhenASlotFrees) {
  Start("max_concurrent = 1\nmax_queue = 4\n");
  pb::ExecuteResponse r1, r2;
  grpc::Status s1, s2;
  // Each snippet prints the sandbox's clock: when the first ends and when the second starts. (Timestamps
  // taken by the client threads after their calls return could come in either order.)
  std::thread a([&] { s1 = Call(Py("import time\ntime.sleep(1.5)\nprint(repr(time.time()))"), &r1); });
  ASSERT_TRUE(WaitFor([&] { return Health().active() == 1; }));
  std::thread b([&] { s2 = Call(Py("import time\nprint(repr(time.time()))"), &r2); });
  EXPECT_TRUE(WaitFor([&] { return Health().queued() == 1; }));
  a.join();
  b.join();
  ASSERT_TRUE(s1.ok() && s2.ok()) << s1.error_message() << s2.error_message();
  double a_end = 0, b_start = 0;
  ASSERT_TRUE(absl::SimpleAtod(absl::StripAsciiWhitespace(r1.stdout()), &a_end)) << r1.stdout();
  ASSERT_TRUE(absl::SimpleAtod(absl::StripAsciiWhitespace(r2.stdout()), &b_start)) << r2.stdout();
  EXPECT_GE(b_start, a_end) << "the queued snippet ran while the only slot was taken";
}

TEST_F(ExecuteServiceTest, QueueTimeoutIsResourceExhausted) {
  Start("max_concurrent = 1\nmax_queue = 4\nqueue_timeout_ms = 300\n");
  pb::ExecuteResponse r1;
  grpc::Status s1;
  std::thread a([&] { s1 = Call(Py("import time\ntime.sleep(5)\nprint('a')"), &r1); });
  ASSERT_TRUE(WaitFor([&] { return Health().active() == 1; }));
  pb::ExecuteResponse r2;
  grpc::Status s2 = Call(Py("print('b')"), &r2);
  EXPECT_EQ(s2.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s2.error_message(), HasSubstr("queue timeout of 300 ms"));
  a.join();
  EXPECT_TRUE(s1.ok()) << s1.error_message();
  EXPECT_EQ(r1.stdout(), "a\n");
}

TEST_F(ExecuteServiceTest, KilledRunnerIsReplaced) {
  Start();
  pb::ExecuteResponse resp;
  ASSERT_TRUE(Call(Py("print('first')"), &resp).ok());
  ASSERT_EQ(resp.status(), pb::STATUS_SUCCESS);
  pid_t pid = LastRunnerPid();
  ASSERT_GT(pid, 0);

  // A snippet that is running when its runner dies is answered internal_error.
  pb::ExecuteResponse lost;
  grpc::Status lost_st;
  std::thread t([&] { lost_st = Call(Py("import time\ntime.sleep(60)\n"), &lost); });
  ASSERT_TRUE(WaitFor([&] { return Health().active() == 1; }));
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  t.join();
  ASSERT_TRUE(lost_st.ok()) << lost_st.error_message();
  EXPECT_EQ(lost.status(), pb::STATUS_INTERNAL_ERROR);
  EXPECT_THAT(lost.error(), HasSubstr("was killed by signal 9"));

  ASSERT_TRUE(Call(Py("print('second')"), &resp).ok());
  EXPECT_EQ(resp.status(), pb::STATUS_SUCCESS) << resp.error();
  EXPECT_EQ(resp.stdout(), "second\n");
  EXPECT_EQ(fake_.CallsOf("StartExec").size(), 2u);
  EXPECT_NE(LastRunnerPid(), pid);
}

TEST_F(ExecuteServiceTest, CancellationKillsTheSnippet) {
  Start("max_concurrent = 1\n");
  grpc::ClientContext ctx;
  pb::ExecuteRequest req = Py("import time\nprint('started', flush=True)\ntime.sleep(60)\n");
  auto reader = stub_->ExecuteStream(&ctx, req);
  pb::ExecuteEvent ev;
  ASSERT_TRUE(reader->Read(&ev));
  EXPECT_EQ(ev.stdout(), "started\n");
  const absl::Time t0 = absl::Now();
  ctx.TryCancel();
  while (reader->Read(&ev)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The slot is held until the runner reports the job over: it frees long before the 60 s sleep would end.
  ASSERT_TRUE(WaitFor([&] { return Health().active() == 0; }, absl::Seconds(20)));
  EXPECT_LT(absl::Now() - t0, absl::Seconds(20));
}

TEST_F(ExecuteServiceTest, StreamSendsChunksThenTheResult) {
  Start();
  grpc::ClientContext ctx;
  auto reader = stub_->ExecuteStream(&ctx, Py("import sys\nprint('out')\nprint('err', file=sys.stderr)\n"));
  std::string out, err;
  pb::ExecuteEvent ev;
  std::optional<pb::ExecuteResponse> result;
  while (reader->Read(&ev)) {
    if (ev.has_result()) {
      result = ev.result();
    } else if (ev.event_case() == pb::ExecuteEvent::kStdout) {
      out += ev.stdout();
    } else {
      err += ev.stderr();
    }
  }
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->status(), pb::STATUS_SUCCESS);
  EXPECT_TRUE(result->stdout().empty());
  EXPECT_EQ(out, "out\n");
  EXPECT_EQ(err, "err\n");
}

TEST_F(ExecuteServiceTest, ListRuntimesAndHealth) {
  Start();
  grpc::ClientContext ctx;
  pb::ListRuntimesResponse lr;
  ASSERT_TRUE(stub_->ListRuntimes(&ctx, pb::ListRuntimesRequest(), &lr).ok());
  ASSERT_GE(lr.runtimes_size(), 1);
  EXPECT_EQ(lr.runtimes(0).language(), pb::LANGUAGE_PYTHON);
  EXPECT_EQ(lr.runtimes(0).container(), "sbx");
  // Lazy start, but ListRuntimes starts the runner to learn what it can isolate.
  EXPECT_TRUE(lr.runtimes(0).ready()) << lr.runtimes(0).error();
  EXPECT_EQ(lr.runtimes(0).isolation_mode(), "isolated");
  EXPECT_EQ(lr.runtimes(0).isolation_missing_size(), 0);
  EXPECT_THAT(lr.runtimes(0).isolation(), ::testing::IsSupersetOf({"pid_ns", "mount_ns", "proc", "tmpfs"}));
  EXPECT_EQ(lr.runtimes(0).error(), "");
  EXPECT_EQ(lr.default_limits().wall_timeout_ms(), 10000u);
  EXPECT_EQ(Health().status(), pb::HealthResponse::SERVING);

  pb::ExecuteResponse resp;
  ASSERT_TRUE(Call(Py("pass"), &resp).ok());
  ASSERT_TRUE(PythonReady());
  grpc::ClientContext ctx2;
  ASSERT_TRUE(stub_->ListRuntimes(&ctx2, pb::ListRuntimesRequest(), &lr).ok());
  EXPECT_FALSE(lr.runtimes(0).version().empty());
  EXPECT_THAT(Health().message(), HasSubstr("python@sbx: ready"));
}

// Where the sandbox cannot give a snippet its own mounts (here: the working directory's mount point does not
// exist, so the probe's full set-up fails), Execute refuses and says what is missing, unless the node allows
// weak isolation.
TEST_F(ExecuteServiceTest, IncompleteIsolationIsRefusedByDefault) {
  Start("", true, "/usr/bin/python3", "/usr/bin/node", "/nonexistent-gvshim-workspace");
  pb::ExecuteResponse resp;
  grpc::Status st = Call(Py("print('should not run')"), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << resp.DebugString();
  EXPECT_THAT(st.error_message(), HasSubstr("missing: proc, tmpfs"));
  EXPECT_THAT(st.error_message(), HasSubstr("allow_weak_isolation"));
  grpc::ClientContext ctx;
  pb::ListRuntimesResponse lr;
  ASSERT_TRUE(stub_->ListRuntimes(&ctx, pb::ListRuntimesRequest(), &lr).ok());
  ASSERT_GE(lr.runtimes_size(), 1);
  EXPECT_EQ(lr.runtimes(0).isolation_mode(), "weak");
  EXPECT_THAT(lr.runtimes(0).isolation_missing(), ::testing::IsSupersetOf({"proc", "tmpfs"}));
}

TEST_F(ExecuteServiceTest, WeakIsolationRunsWhenTheNodeAllowsIt) {
  Start("allow_weak_isolation = true\n", true, "/usr/bin/python3", "/usr/bin/node",
        "/nonexistent-gvshim-workspace");
  pb::ExecuteResponse resp;
  grpc::Status st =
      Call(Py("import os\nprint(os.getuid() >= 100000, os.getcwd().startswith('" + dir_ + "'))"), &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.status(), pb::STATUS_SUCCESS) << resp.error() << resp.stderr();
  EXPECT_EQ(resp.stdout(), "True True\n");
}

TEST_F(ExecuteServiceTest, SocketAndDiscoveryFileFollowTheSandbox) {
  Start();
  struct stat st;
  ASSERT_EQ(::stat(socket_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600);
  ASSERT_EQ(::stat((dir_ + "/s").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700);
  EXPECT_EQ(socket_, absl::StrCat(dir_, "/s/", SocketKey("t", "sbx"), ".sock"));
  EXPECT_EQ(SocketKey("t", "sbx").size(), 16u);
  const std::string json_path = absl::StrCat(dir_, "/s/", SocketKey("t", "sbx"), ".json");

  AddContainer("app");
  auto j = nlohmann::json::parse(ReadFile(json_path));
  EXPECT_EQ(j["namespace"], "t");
  EXPECT_EQ(j["sandbox_id"], "sbx");
  EXPECT_EQ(j["pod_namespace"], "default");
  EXPECT_EQ(j["pod_name"], "pod-a");
  // The pod's dev.gvshim.* annotations (a gateway selects pool pods by them), no others.
  EXPECT_EQ(j["annotations"],
            nlohmann::json({{"dev.gvshim.execute", "true"}, {"dev.gvshim.pool", "agents"}}));
  EXPECT_EQ(j["socket"], socket_);
  EXPECT_EQ(j["shim_pid"], ::getpid());
  EXPECT_EQ(j["server_pid"], ::getpid());
  ASSERT_EQ(j["containers"].size(), 2u);
  EXPECT_EQ(j["containers"][1]["id"], "app");
  EXPECT_EQ(j["containers"][1]["python"], true);

  // A target container runs the snippet there.
  pb::ExecuteRequest req = Py("print('in app')");
  req.set_target_container("app");
  pb::ExecuteResponse resp;
  ASSERT_TRUE(Call(req, &resp).ok());
  EXPECT_EQ(resp.stdout(), "in app\n");
  EXPECT_EQ(fake_.CallsOf("StartExec").back().id, ExecContainerId("app"));

  manager_->OnContainerDeleted("app");
  j = nlohmann::json::parse(ReadFile(json_path));
  EXPECT_EQ(j["containers"].size(), 1u);
  EXPECT_EQ(manager_->ServingCount(), 1u);

  manager_->OnContainerDeleted("sbx");
  EXPECT_EQ(manager_->ServingCount(), 0u);
  EXPECT_NE(::access(socket_.c_str(), F_OK), 0);
  EXPECT_NE(::access(json_path.c_str(), F_OK), 0);
  manager_->Shutdown();  // idempotent with what is already gone
  manager_->Shutdown();
}

TEST_F(ExecuteServiceTest, EagerStartRunsTheRunnerBeforeAnyRequest) {
  Start("start = \"eager\"\n", true, "/usr/bin/python3", "/nonexistent/node");
  EXPECT_EQ(fake_.CallsOf("StartExec").size(), 1u);
  ASSERT_TRUE(WaitFor([&] { return PythonReady(); }));
  pb::ExecuteResponse resp;
  ASSERT_TRUE(Call(Py("print(1)"), &resp).ok());
  EXPECT_EQ(resp.status(), pb::STATUS_SUCCESS);
  EXPECT_EQ(fake_.CallsOf("StartExec").size(), 1u);
}

TEST_F(ExecuteServiceTest, DeletingTheSandboxEndsRunningSnippetsAndRemovesTheFiles) {
  Start();
  pb::ExecuteResponse resp;
  grpc::Status st;
  std::thread t([&] { st = Call(Py("import time\ntime.sleep(60)\n"), &resp); });
  ASSERT_TRUE(WaitFor([&] { return Health().active() == 1; }));
  const absl::Time t0 = absl::Now();
  manager_->OnContainerDeleted("sbx");
  t.join();
  EXPECT_LT(absl::Now() - t0, absl::Seconds(15));
  if (st.ok()) {
    EXPECT_EQ(resp.status(), pb::STATUS_INTERNAL_ERROR);
    EXPECT_THAT(resp.error(), HasSubstr("shutting down"));
  } else {
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  }
  EXPECT_NE(::access(socket_.c_str(), F_OK), 0);
  EXPECT_EQ(manager_->ServingCount(), 0u);
}

TEST_F(ExecuteServiceTest, NoServiceAndNoThreadsWithoutOptIn) {
  const int before = ThreadCount();
  Start("", /*opt_in=*/false);
  EXPECT_EQ(manager_->ServingCount(), 0u);
  EXPECT_FALSE(manager_->SocketPath("t", "sbx").has_value());
  EXPECT_FALSE(fs::exists(dir_ + "/s"));
  EXPECT_EQ(ThreadCount(), before);
  // A later container of the pod that opts in turns it on for the whole sandbox.
  AddContainer("app", /*opt_in=*/true);
  EXPECT_EQ(manager_->ServingCount(), 1u);
}

TEST_F(ExecuteServiceTest, DisabledConfigServesNothing) {
  ecfg_.enabled = false;
  ecfg_.socket_dir = dir_ + "/s";
  manager_ = std::make_unique<Manager>(
      [this](const runsc::GlobalOptions&) { return std::make_unique<testing::FakeRunscView>(&fake_); },
      &testing::TestReaper());
  manager_->OnContainerStarted(Info("sbx", true), ecfg_);
  EXPECT_EQ(manager_->ServingCount(), 0u);
  EXPECT_FALSE(fs::exists(dir_ + "/s"));
}

TEST_F(ExecuteServiceTest, NoInterpreterIsFailedPrecondition) {
  Start("", true, "/usr/bin/python3", "/nonexistent/node");
  pb::ExecuteRequest req;
  req.set_language(pb::LANGUAGE_JAVASCRIPT);
  req.set_code("console.log(1)");
  pb::ExecuteResponse resp;
  grpc::Status st = Call(req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(st.error_message(), "no container of this pod has /nonexistent/node");
}

TEST_F(ExecuteServiceTest, RunnerThatDiesAtStartupIsFailedPreconditionWithItsStderr) {
  const std::string bad = dir_ + "/badpy";
  std::ofstream(bad) << "#!/bin/sh\necho 'bad-interpreter: cannot start' >&2\nexit 3\n";
  ASSERT_EQ(::chmod(bad.c_str(), 0755), 0);
  Start("", true, bad, "/nonexistent/node");
  pb::ExecuteResponse resp;
  grpc::Status st = Call(Py("print(1)"), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();
  EXPECT_THAT(st.error_message(), HasSubstr("failed to start 3 times in a row"));
  EXPECT_THAT(st.error_message(), HasSubstr("exited with code 3 before it was ready"));
  EXPECT_THAT(st.error_message(), HasSubstr("bad-interpreter: cannot start"));
  EXPECT_EQ(fake_.CallsOf("StartExec").size(), 3u);
  // The service still answers, and Health says why it cannot run Python.
  pb::HealthResponse h = Health();
  EXPECT_EQ(h.status(), pb::HealthResponse::NOT_SERVING);
  EXPECT_THAT(h.message(), HasSubstr("bad-interpreter"));
}

}  // namespace
}  // namespace gvshim::execute
