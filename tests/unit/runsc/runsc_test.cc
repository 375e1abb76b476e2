// RunscCli against tests/testdata/fake-runsc: the exact argv of every method, output parsing, error mapping.
#include "shim/runsc/runsc.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shim/sys/fd.h"
#include "shim/sys/subprocess.h"
#include "tests/unit/fakes/test_reaper.h"
#include "tests/unit/fakes/test_util.h"

namespace gvshim::testing {

// This binary is not linked with test_main.cc: its reaper is started by ReaperEnvironment below.
sys::Reaper& TestReaper() {
  static sys::Reaper* const reaper = new sys::Reaper();  // never deleted: its thread runs until exit
  return *reaper;
}

}  // namespace gvshim::testing

namespace gvshim::runsc {
namespace {

using ::gvshim::testing::ReadFile;
using ::gvshim::testing::WaitFor;

CreateOptions WithBundle(const std::string& bundle, const std::string& pid_file = "") {
  CreateOptions o;
  o.bundle = bundle;
  o.pid_file = pid_file;
  return o;
}

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The shim runs the reaper from main; so does this binary (StartExec's exit arrives through it), as a
// subreaper for real_runsc_test.cc's sandboxes.
class ReaperEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { ASSERT_TRUE(testing::TestReaper().Start(/*subreaper=*/true).ok()); }
};
::testing::Environment* const kEnv = ::testing::AddGlobalTestEnvironment(new ReaperEnvironment);

std::string SourceDir() {
  if (const char* d = getenv("GVSHIM_SOURCE_DIR"); d != nullptr && *d != '\0') return d;
  std::string file = __FILE__;  // <src>/tests/unit/runsc/runsc_test.cc
  for (int i = 0; i < 4; ++i) file = file.substr(0, file.rfind('/'));
  return file;
}

constexpr const char* kFakeVars[] = {"FAKE_RUNSC_LOG",  "FAKE_RUNSC_STDOUT",    "FAKE_RUNSC_STDERR",
                                     "FAKE_RUNSC_EXIT", "FAKE_RUNSC_LOG_ERROR", "FAKE_RUNSC_STDIN_TO"};

class FakeRunscTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gvrf-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    calls_ = dir_ + "/calls";
    setenv("FAKE_RUNSC_LOG", calls_.c_str(), 1);
    opts_.binary = SourceDir() + "/tests/testdata/fake-runsc";
    opts_.root = dir_ + "/root";
    opts_.log_path = dir_ + "/runsc.log";
    opts_.map_ids = false;  // argv is checked literally; ContainerIdTest covers the mapping
    opts_.platform = "ptrace";
    prefix_ = absl::StrCat(opts_.binary, " --root ", opts_.root, " --log ", opts_.log_path,
                           " --log-format json --platform ptrace --network none ");
    cli_ = NewRunscCli(opts_, &testing::TestReaper());
  }
  void TearDown() override {
    for (const char* v : kFakeVars) unsetenv(v);
    sys::SpawnOptions rm;
    rm.argv = {"rm", "-rf", dir_};
    (void)sys::RunSubprocess(&testing::TestReaper(), rm, absl::Seconds(30));
  }

  // The calls made so far, each without the global flags ("create --bundle ... c1").
  std::vector<std::string> Calls() {
    std::vector<std::string> out;
    for (absl::string_view line : absl::StrSplit(ReadFile(calls_), '\n', absl::SkipEmpty())) {
      std::string l(line);
      std::string expected_prefix = prefix_.substr(opts_.binary.size() + 1);
      EXPECT_EQ(l.rfind(expected_prefix, 0), 0u) << "global flags missing in: " << l;
      out.push_back(l.substr(std::min(l.size(), expected_prefix.size())));
    }
    return out;
  }

  void Canned(const std::string& out, int exit_code = 0, const std::string& err = "") {
    setenv("FAKE_RUNSC_STDOUT", out.c_str(), 1);
    setenv("FAKE_RUNSC_STDERR", err.c_str(), 1);
    setenv("FAKE_RUNSC_EXIT", absl::StrCat(exit_code).c_str(), 1);
  }

  std::string dir_, calls_, prefix_;
  GlobalOptions opts_;
  std::unique_ptr<Runsc> cli_;
};

TEST(GlobalArgsTest, Defaults) {
  GlobalOptions o;
  o.root = "/run/gvshim/runsc/k8s.io";
  EXPECT_THAT(GlobalArgs(o), ElementsAre("--root", "/run/gvshim/runsc/k8s.io", "--network",
                                         "none"));  // runsc picks the platform
}

TEST(GlobalArgsTest, Everything) {
  GlobalOptions o;
  o.root = "/r";
  o.log_path = "/b/runsc.log";
  o.debug = true;
  o.debug_log = "/b/debug/";
  o.platform = "kvm";
  o.network = "sandbox";
  o.oci_seccomp = true;
  o.extra_flags = {"--overlay", "--cpu-num-from-quota"};
  EXPECT_THAT(GlobalArgs(o),
              ElementsAre("--root", "/r", "--log", "/b/runsc.log", "--log-format", "json", "--debug",
                          "--debug-log", "/b/debug/", "--platform", "kvm", "--network", "sandbox",
                          "--oci-seccomp", "--overlay", "--cpu-num-from-quota"));
}

TEST(ClassifyErrorTest, Table) {
  struct Case {
    const char* msg;
    absl::StatusCode code;
  } cases[] = {
      // runsc 0.0~20221219 and 0.0~20240729, as printed (recorded by hand from both).
      {"loading container: file does not exist", absl::StatusCode::kNotFound},
      {"loading container \"nope\": file does not exist", absl::StatusCode::kNotFound},
      {"loading sandbox: file does not exist", absl::StatusCode::kNotFound},
      {"container not found", absl::StatusCode::kNotFound},
      {"cannot signal container \"c1\" in state created", absl::StatusCode::kFailedPrecondition},
      {"resume failed: cannot resume container \"c1\" in state running",
       absl::StatusCode::kFailedPrecondition},
      {"pause failed: cannot pause container \"c1\" in state stopped", absl::StatusCode::kFailedPrecondition},
      {"starting container: cannot start container \"c1\" in state running",
       absl::StatusCode::kFailedPrecondition},
      {"executing processes for container: cannot execute in container \"c1\" in state stopped",
       absl::StatusCode::kFailedPrecondition},
      {"executing processes for container: executing command \"/bin/sh -c true\" in sandbox: container "
       "\"c1\" "
       "not started",
       absl::StatusCode::kFailedPrecondition},
      {"failed to signal pid 99: cannot signal a process inside container \"c1\" in state stopped",
       absl::StatusCode::kFailedPrecondition},
      {"waiting on container \"c1\": sandbox no longer running and its exit status is unavailable",
       absl::StatusCode::kFailedPrecondition},
      {"sandbox is not running", absl::StatusCode::kFailedPrecondition},
      {"cannot delete container that is not stopped without --force flag",
       absl::StatusCode::kFailedPrecondition},
      {"creating container: cannot lock container metadata file: container already exists",
       absl::StatusCode::kAlreadyExists},
      // With LastLogError's suffix.
      {"loading container: file does not exist (first error: x)", absl::StatusCode::kNotFound},
      {"creating container: cannot create sandbox: boom", absl::StatusCode::kUnknown},
      // Other text that merely contains the old keywords is not runsc's verdict on the container.
      {"starting container: starting root container: starting sandbox: failed to setup mounts: exec: "
       "\"python\": executable file not found in $PATH",
       absl::StatusCode::kUnknown},
      {"creating container: cannot create sandbox: mount point /proc already exists",
       absl::StatusCode::kUnknown},
      {"creating container: reading spec: open /b/seccomp.json: file does not exist",
       absl::StatusCode::kUnknown},
      {"gofer: process is not running anymore", absl::StatusCode::kUnknown},
      {"image \"busybox\" not found", absl::StatusCode::kUnknown},
      {"already started", absl::StatusCode::kUnknown},
      {"", absl::StatusCode::kUnknown},
  };
  for (const auto& c : cases) EXPECT_EQ(ClassifyError(c.msg), c.code) << c.msg;
}

TEST(ParseTest, LastLogErrorFromBackToBackRecords) {
  // runsc writes JSON records with no separator between them.
  std::string log =
      R"({"msg":"starting","level":"info","time":"t"}{"msg":"first \"bad\" {thing}","level":"error","time":"t"})"
      R"({"msg":"debug tail","level":"debug","time":"t"})";
  EXPECT_EQ(LastLogError(log), "first \"bad\" {thing}");
  EXPECT_EQ(LastLogError(R"({"msg":"root fs: no such file","level":"error"}{"msg":"x","level":"info"})"
                         R"({"msg":"cannot create sandbox: EOF","level":"error"})"),
            "cannot create sandbox: EOF (first error: root fs: no such file)");
  EXPECT_EQ(LastLogError(R"({"msg":"fine","level":"info"})"), std::nullopt);
  EXPECT_EQ(LastLogError("garbage"), std::nullopt);
}

TEST(ParseTest, PsTable) {
  std::string table =
      "UID       PID       PPID      C         TTY       STIME     TIME      CMD\n"
      "0         1         0         0         ?         19:27     0s        sleep\n"
      "65534     7         1         2         pts/0     19:28     1s        python3 -c x\n";
  auto ps = ParsePsTable(table);
  ASSERT_TRUE(ps.ok()) << ps.status();
  ASSERT_EQ(ps->size(), 2u);
  EXPECT_EQ((*ps)[0].pid, 1);
  EXPECT_EQ((*ps)[0].ppid, 0);
  EXPECT_EQ((*ps)[0].cmd, "sleep");
  EXPECT_EQ((*ps)[1].pid, 7);
  EXPECT_EQ((*ps)[1].ppid, 1);
  EXPECT_EQ((*ps)[1].uid, 65534);
  EXPECT_EQ((*ps)[1].tty, "pts/0");
  EXPECT_EQ((*ps)[1].time, "1s");
  EXPECT_EQ((*ps)[1].cmd, "python3 -c x");
  auto empty = ParsePsTable("UID       PID       PPID      C         TTY       STIME     TIME      CMD\n");
  ASSERT_TRUE(empty.ok());
  EXPECT_THAT(*empty, IsEmpty());
  EXPECT_FALSE(ParsePsTable("").ok());
  EXPECT_FALSE(ParsePsTable("UID PID\nx y\n").ok());
}

// Output of runsc 20221219 `events --stats` for a busybox container.
constexpr char kStatsJson[] =
    R"({"type":"stats","id":"c1","data":{"cpu":{"usage":{"total":78705310}},"memory":{"usage":{"limit":0,)"
    R"("usage":2027520,"failcnt":0},"swap":{"limit":0,"failcnt":0},"kernel":{"limit":0,"failcnt":0},)"
    R"("kernelTCP":{"limit":0,"failcnt":0}},"pids":{"current":1}}})";

TEST(ParseTest, Stats) {
  auto s = ParseStats(kStatsJson);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->cpu_total_ns, 78705310u);
  EXPECT_EQ(s->memory_usage, 2027520u);
  EXPECT_EQ(s->pids_current, 1u);
  EXPECT_EQ(s->pids_limit, 0u);
  EXPECT_EQ(s->raw["memory"]["usage"]["usage"], 2027520);

  auto full = ParseStats(
      R"({"type":"stats","id":"c","data":{"cpu":{"usage":{"total":10,"user":6,"kernel":4,"percpu":[3,7]}},)"
      R"("memory":{"cache":5,"usage":{"limit":100,"usage":50,"max":60,"failcnt":1},"swap":{"usage":2,"limit":9},)"
      R"("raw":{"rss":44}},"pids":{"current":3,"limit":10}}})");
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->cpu_user_ns, 6u);
  EXPECT_EQ(full->cpu_kernel_ns, 4u);
  EXPECT_THAT(full->cpu_per_cpu_ns, ElementsAre(3u, 7u));
  EXPECT_EQ(full->memory_cache, 5u);
  EXPECT_EQ(full->memory_limit, 100u);
  EXPECT_EQ(full->memory_max, 60u);
  EXPECT_EQ(full->memory_failcnt, 1u);
  EXPECT_EQ(full->swap_usage, 2u);
  EXPECT_EQ(full->memory_rss, 44u);
  EXPECT_EQ(full->pids_limit, 10u);
  EXPECT_FALSE(ParseStats("not json").ok());
}

TEST(ParseTest, StateListWait) {
  auto st = ParseState(R"({"ociVersion":"1.0.2-dev","id":"c1","status":"stopped","pid":-1,"bundle":"/b"})");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->status, "stopped");
  EXPECT_EQ(st->pid, -1);
  auto none = ParseList("null");
  ASSERT_TRUE(none.ok());
  EXPECT_THAT(*none, IsEmpty());
  EXPECT_FALSE(ParseList("{").ok());
  EXPECT_EQ(*ParseWait(R"({"id":"c1","exitStatus":137})"), 137);
  EXPECT_FALSE(ParseWait("{}").ok());
}

TEST(ContainerIdTest, FixedWidthAndStable) {
  // Pinned: `delete` after a shim upgrade must find containers made by the previous version.
  EXPECT_EQ(ContainerId("/run/gvshim/runsc/default", "web"), ContainerId("/run/gvshim/runsc/default", "web"));
  const std::string a = ContainerId("/r/ns", "web"), b = ContainerId("/r/ns", "web2");
  EXPECT_EQ(a.size(), 34u);
  EXPECT_EQ(b.size(), 34u);
  EXPECT_EQ(a.rfind("gv", 0), 0u);
  EXPECT_NE(a, b);
  EXPECT_NE(b.rfind(a, 0), 0u);  // neither is a prefix of the other: runsc 20240729 matches ids by prefix
  EXPECT_NE(ContainerId("/r/ns1", "web"), ContainerId("/r/ns2", "web"));  // namespaces (roots) differ
  EXPECT_NE(ContainerId("/r/a", "b/c"), ContainerId("/r/a/b", "c"));      // the separator is not a path char
}

TEST_F(FakeRunscTest, MappedIdsReachRunsc) {
  GlobalOptions g = opts_;
  g.map_ids = true;
  auto cli = NewRunscCli(g, &testing::TestReaper());
  ASSERT_TRUE(cli->Start("c1", Stdio{}).ok());
  ASSERT_TRUE(cli->Delete("c1", true).ok());
  const std::string rid = ContainerId(opts_.root, "c1");
  EXPECT_THAT(Calls(), ElementsAre("start " + rid, "delete --force " + rid));
  Canned("", 1, "loading container \"" + rid + "\": file does not exist");  // runsc's own wording
  absl::Status st = cli->Kill("c1", 9, false, 0);
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(st.message()), ::testing::StartsWith("runsc kill c1: "));  // the caller's id
}

TEST_F(FakeRunscTest, CreateArgvAndStdio) {
  auto out = sys::MakePipe();
  auto in = sys::MakePipe();
  ASSERT_TRUE(out.ok() && in.ok());
  std::string stdin_copy = dir_ + "/stdin";
  setenv("FAKE_RUNSC_STDIN_TO", stdin_copy.c_str(), 1);
  Canned("to-container-stdout");
  ASSERT_TRUE(sys::WriteAll(in->write.get(), "input", 5).ok());
  in->write.reset();
  CreateOptions o;
  o.bundle = "/b";
  o.pid_file = "/b/pid";
  o.console_socket = "/tmp/cs.sock";
  o.user_log = "/b/user.log";
  o.stdio = {in->read.get(), out->write.get(), -1};
  ASSERT_TRUE(cli_->Create("c1", o).ok());
  out->write.reset();
  EXPECT_EQ(*sys::ReadAll(out->read.get()), "to-container-stdout");
  EXPECT_EQ(ReadFile(stdin_copy), "input");

  ASSERT_TRUE(cli_->Create("c2", WithBundle("/b2")).ok());
  EXPECT_THAT(Calls(), ElementsAre("create --bundle /b --pid-file /b/pid --console-socket /tmp/cs.sock "
                                   "--user-log /b/user.log c1",
                                   "create --bundle /b2 c2"));
}

TEST_F(FakeRunscTest, CreateErrorComesFromLogWhenStderrIsTheSandboxs) {
  Canned("", 128, "this stderr belongs to the container");
  setenv("FAKE_RUNSC_LOG_ERROR", "creating container: cannot create sandbox: boom", 1);
  absl::Status st = cli_->Create("c1", WithBundle("/b"));
  EXPECT_EQ(st.code(), absl::StatusCode::kUnknown);
  EXPECT_EQ(st.message(), "runsc create c1: exit 128: creating container: cannot create sandbox: boom");
}

TEST_F(FakeRunscTest, StartPauseResume) {
  ASSERT_TRUE(cli_->Start("c1", Stdio{}).ok());
  ASSERT_TRUE(cli_->Pause("c1").ok());
  ASSERT_TRUE(cli_->Resume("c1").ok());
  EXPECT_THAT(Calls(), ElementsAre("start c1", "pause c1", "resume c1"));
}

TEST_F(FakeRunscTest, StartFailureWithoutLogMessage) {
  Canned("", 1);
  absl::Status st = cli_->Start("c1", Stdio{});
  EXPECT_EQ(st.message(), "runsc start c1: exit 1: (no message from runsc)");
}

TEST_F(FakeRunscTest, KillArgvAndErrors) {
  ASSERT_TRUE(cli_->Kill("c1", 9, false, 0).ok());
  ASSERT_TRUE(cli_->Kill("c1", 15, true, 0).ok());
  ASSERT_TRUE(cli_->Kill("c1", 2, false, 12).ok());
  EXPECT_THAT(Calls(), ElementsAre("kill c1 9", "kill --all c1 15", "kill --pid 12 c1 2"));

  Canned("", 128, "loading container: file does not exist\n");
  absl::Status st = cli_->Kill("gone", 9, false, 0);
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(st.message(), "runsc kill gone: exit 128: loading container: file does not exist");

  Canned("", 128, "cannot signal container \"c1\" in state created\n");
  EXPECT_EQ(cli_->Kill("c1", 9, false, 0).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(FakeRunscTest, DeleteArgvAndNotFound) {
  ASSERT_TRUE(cli_->Delete("c1", false).ok());
  ASSERT_TRUE(cli_->Delete("c1", true).ok());
  EXPECT_THAT(Calls(), ElementsAre("delete c1", "delete --force c1"));
  Canned("", 128, "loading container \"c1\": file does not exist\n");
  EXPECT_EQ(cli_->Delete("c1", false).code(), absl::StatusCode::kNotFound);
}

TEST_F(FakeRunscTest, State) {
  Canned(R"({"ociVersion": "1.0.2-dev", "id": "c1", "status": "running", "pid": 7465, "bundle": "/b"})");
  auto st = cli_->GetState("c1");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->id, "c1");
  EXPECT_EQ(st->status, "running");
  EXPECT_EQ(st->pid, 7465);
  EXPECT_EQ(st->bundle, "/b");
  EXPECT_THAT(Calls(), ElementsAre("state c1"));

  Canned("garbage");
  auto bad = cli_->GetState("c1");
  EXPECT_THAT(bad.status().message(), HasSubstr("runsc state c1: unexpected state output: garbage"));

  Canned("", 128, "loading container: file does not exist");
  EXPECT_EQ(cli_->GetState("c1").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(FakeRunscTest, PsStatsList) {
  Canned(
      "UID       PID       PPID      C         TTY       STIME     TIME      CMD\n"
      "0         1         0         0         ?         19:27     0s        sleep\n");
  auto ps = cli_->Ps("c1");
  ASSERT_TRUE(ps.ok()) << ps.status();
  ASSERT_EQ(ps->size(), 1u);
  EXPECT_EQ((*ps)[0].cmd, "sleep");

  Canned(kStatsJson);
  auto stats = cli_->GetStats("c1");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->pids_current, 1u);

  Canned(R"([{"ociVersion":"1.0.2-dev","id":"c1","status":"created","pid":7465,"bundle":"/tmp/rtx/b"}])");
  auto list = cli_->List();
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].status, "created");

  EXPECT_THAT(Calls(), ElementsAre("ps c1", "events --stats c1", "list --format json"));
}

TEST_F(FakeRunscTest, Wait) {
  Canned(R"({"id":"c1","exitStatus":137})");
  auto code = cli_->Wait("c1");
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 137);
  Canned("", 128,
         "waiting on container \"c1\": sandbox no longer running and its exit status is unavailable");
  EXPECT_EQ(cli_->Wait("c1").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Calls(), ElementsAre("wait c1", "wait c1"));
}

TEST_F(FakeRunscTest, StartExecExitComesThroughReaper) {
  auto out = sys::MakePipe();
  ASSERT_TRUE(out.ok());
  Canned("exec output", 7);
  ExecOptions o;
  o.process_json = "/b/p.json";
  o.pid_file = "/b/exec.pid";
  o.internal_pid_file = "/b/exec.ipid";
  o.console_socket = "/tmp/c.sock";
  o.stdio.out = out->write.get();
  auto pid = cli_->StartExec("c1", o);
  ASSERT_TRUE(pid.ok()) << pid.status();
  out->write.reset();
  absl::Notification done;
  int status = -1;
  testing::TestReaper().Watch(*pid, [&](int ws) {
    status = ws;
    done.Notify();
  });
  EXPECT_EQ(*sys::ReadAll(out->read.get()), "exec output");
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(sys::ExitCodeFromWaitStatus(status), 7);
  EXPECT_THAT(Calls(),
              ElementsAre("exec --process /b/p.json --console-socket /tmp/c.sock --pid-file /b/exec.pid "
                          "--internal-pid-file /b/exec.ipid c1"));
}

TEST_F(FakeRunscTest, MissingRootIsRefusedWithoutRunning) {
  opts_.root.clear();
  auto cli = NewRunscCli(opts_, &testing::TestReaper());
  absl::Status st = cli->Delete("c1", true);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("runsc delete c1"));
  EXPECT_FALSE(cli->StartExec("c1", ExecOptions{}).ok());
  EXPECT_THAT(Calls(), IsEmpty());
}

TEST_F(FakeRunscTest, MissingBinaryIsNamed) {
  opts_.binary = dir_ + "/no-runsc-here";
  auto st = NewRunscCli(opts_, &testing::TestReaper())->GetState("c1");
  EXPECT_THAT(st.status().message(), HasSubstr(absl::StrCat("runsc state c1: exec ", opts_.binary)));
}

TEST_F(FakeRunscTest, TimeoutKillsRunsc) {
  // A runsc that hangs is killed at the deadline.
  testing::PidReport hung(dir_);
  std::string script = dir_ + "/hang";
  {
    std::ofstream f(script);
    f << "#!/bin/sh\necho $$ > " << hung.fifo() << "\nexec sleep 60\n";
  }
  ASSERT_EQ(chmod(script.c_str(), 0755), 0);
  opts_.binary = script;
  opts_.timeout = absl::Seconds(1);
  absl::StatusOr<State> st = absl::UnknownError("not returned");
  std::thread t([&] { st = NewRunscCli(opts_, &testing::TestReaper())->GetState("c1"); });
  const bool reported = hung.Await();
  t.join();
  EXPECT_EQ(st.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(st.status().message(), HasSubstr("runsc state c1"));
  ASSERT_TRUE(reported) << "the hanging runsc never reported its pid";
  EXPECT_TRUE(hung.Exited()) << "runsc (pid " << hung.pid() << ") outlived the timeout";
}

}  // namespace
}  // namespace gvshim::runsc
