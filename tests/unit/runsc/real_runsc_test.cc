// RunscCli driving the real runsc (ptrace platform) with a busybox bundle. Needs root, /usr/bin/runsc and
// /bin/busybox; skips otherwise. Leaves nothing behind: every container is deleted and the state dir removed.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "shim/runsc/runsc.h"
#include "shim/sys/fd.h"
#include "shim/sys/subprocess.h"
#include "tests/unit/fakes/test_reaper.h"
#include "tests/unit/fakes/test_util.h"

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

using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kRunsc[] = "/usr/bin/runsc";
constexpr char kBusybox[] = "/bin/busybox";

bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  return f.good();
}

absl::Status Sh(const std::string& script) {
  sys::SpawnOptions o;
  o.argv = {"/bin/sh", "-ec", script};
  auto r = sys::RunSubprocess(&testing::TestReaper(), o, absl::Seconds(60));
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) return absl::InternalError(absl::StrCat(script, ": ", r->err));
  return absl::OkStatus();
}

nlohmann::json Process(std::vector<std::string> args) {
  return {{"user", {{"uid", 0}, {"gid", 0}}}, {"args", args}, {"env", {"PATH=/bin"}}, {"cwd", "/"}};
}

class RealRunscTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0 || access(kRunsc, X_OK) != 0 || access(kBusybox, X_OK) != 0) {
      GTEST_SKIP() << "needs root, " << kRunsc << " and " << kBusybox;
    }
    ASSERT_TRUE(testing::TestReaper().running());
    char tmpl[] = "/tmp/gvrr-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    opts_.binary = kRunsc;
    opts_.root = dir_ + "/state";
    opts_.log_path = dir_ + "/runsc.log";
    opts_.timeout = absl::Seconds(60);
    cli_ = NewRunscCli(opts_, &testing::TestReaper());
  }

  void TearDown() override {
    if (!cli_) return;
    // Whatever a failed assertion left running.
    if (auto list = cli_->List(); list.ok()) {
      for (const State& s : *list) (void)cli_->Delete(s.id, /*force=*/true);
      auto after = cli_->List();
      EXPECT_TRUE(after.ok() && after->empty()) << "containers left in " << opts_.root;
    }
    EXPECT_TRUE(Sh(absl::StrCat("rm -rf '", dir_, "'")).ok());
  }

  // A busybox bundle whose init runs `script`.
  std::string MakeBundle(const std::string& name, const std::string& script) {
    std::string b = absl::StrCat(dir_, "/", name);
    EXPECT_TRUE(Sh(absl::StrCat("mkdir -p ", b, "/rootfs/bin ", b, "/rootfs/proc; cp ", kBusybox, " ", b,
                                "/rootfs/bin/; for a in sh sleep cat echo; do ln -s busybox ", b,
                                "/rootfs/bin/$a; done"))
                    .ok());
    nlohmann::json spec = {
        {"ociVersion", "1.0.2"},
        {"process", Process({"/bin/sh", "-c", script})},
        {"root", {{"path", "rootfs"}}},
        {"hostname", name},
        {"mounts", {{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}}}},
        {"linux",
         {{"namespaces", {{{"type", "pid"}}, {{"type", "ipc"}}, {{"type", "uts"}}, {{"type", "mount"}}}}}},
    };
    EXPECT_TRUE(WriteFile(b + "/config.json", spec.dump()));
    return b;
  }

  std::string dir_;
  GlobalOptions opts_;
  std::unique_ptr<Runsc> cli_;
};

TEST_F(RealRunscTest, Lifecycle) {
  std::string bundle = MakeBundle("b1", "sleep 100");
  ASSERT_TRUE(cli_->Create("t1", WithBundle(bundle, dir_ + "/t1.pid")).ok());
  int sandbox_pid = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFile(dir_ + "/t1.pid")), &sandbox_pid));
  ASSERT_GT(sandbox_pid, 0);
  // The sandbox was reparented to this process (a subreaper); its exit comes through the reaper.
  absl::Notification sandbox_exited;
  testing::TestReaper().Watch(sandbox_pid, [&](int) { sandbox_exited.Notify(); });

  auto st = cli_->GetState("t1");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->status, "created");
  EXPECT_EQ(st->pid, sandbox_pid);
  EXPECT_EQ(cli_->Kill("t1", SIGKILL, false, 0).code(), absl::StatusCode::kFailedPrecondition);

  ASSERT_TRUE(cli_->Start("t1", Stdio{}).ok());
  st = cli_->GetState("t1");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->status, "running");

  // The init is `sh -c "sleep 100"`, which execs sleep: until it has, ps shows sh.
  absl::StatusOr<std::vector<ProcessInfo>> ps;
  EXPECT_TRUE(WaitFor([&] {
    ps = cli_->Ps("t1");
    return ps.ok() && !ps->empty() && (*ps)[0].cmd == "sleep";
  })) << (ps.ok() ? (ps->empty() ? std::string("no process") : (*ps)[0].cmd) : ps.status().ToString());
  ASSERT_TRUE(ps.ok()) << ps.status();
  ASSERT_FALSE(ps->empty());
  EXPECT_EQ((*ps)[0].pid, 1);

  auto stats = cli_->GetStats("t1");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GE(stats->pids_current, 1u);
  EXPECT_GT(stats->memory_usage, 0u);

  ASSERT_TRUE(cli_->Pause("t1").ok());
  EXPECT_EQ(cli_->GetState("t1")->status, "paused");
  ASSERT_TRUE(cli_->Resume("t1").ok());
  EXPECT_EQ(cli_->GetState("t1")->status, "running");

  // A non-detached exec: its stdout reaches our pipe and its exit code comes back through the reaper.
  std::string pjson = dir_ + "/exec.json";
  ASSERT_TRUE(WriteFile(pjson, Process({"/bin/sh", "-c", "echo from-exec; exit 7"}).dump()));
  auto out = sys::MakePipe();
  ASSERT_TRUE(out.ok());
  ExecOptions eo;
  eo.process_json = pjson;
  eo.pid_file = dir_ + "/exec.pid";
  eo.stdio.out = out->write.get();
  auto exec_pid = cli_->StartExec("t1", eo);
  ASSERT_TRUE(exec_pid.ok()) << exec_pid.status();
  out->write.reset();
  absl::Notification exec_done;
  int exec_status = -1;
  testing::TestReaper().Watch(*exec_pid, [&](int ws) {
    exec_status = ws;
    exec_done.Notify();
  });
  EXPECT_EQ(*sys::ReadAll(out->read.get()), "from-exec\n");
  ASSERT_TRUE(exec_done.WaitForNotificationWithTimeout(absl::Seconds(60)));
  EXPECT_EQ(sys::ExitCodeFromWaitStatus(exec_status), 7);

  ASSERT_TRUE(cli_->Kill("t1", SIGKILL, false, 0).ok());
  ASSERT_TRUE(sandbox_exited.WaitForNotificationWithTimeout(absl::Seconds(60)));
  ASSERT_TRUE(cli_->Delete("t1", false).ok());
  EXPECT_EQ(cli_->Delete("t1", false).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(cli_->GetState("t1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(cli_->Kill("t1", SIGKILL, false, 0).code(), absl::StatusCode::kNotFound);
  auto list = cli_->List();
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_THAT(*list, IsEmpty());
}

TEST_F(RealRunscTest, WaitReturnsExitCodeOfInit) {
  // The init lives long enough for `runsc wait` to attach (runsc can no longer report the status once the
  // sandbox is gone), then exits on its own with a distinctive code.
  std::string bundle = MakeBundle("b2", "sleep 3; exit 3");
  ASSERT_TRUE(cli_->Create("t2", WithBundle(bundle)).ok());
  ASSERT_TRUE(cli_->Start("t2", Stdio{}).ok());
  auto code = cli_->Wait("t2");
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 3);
  ASSERT_TRUE(cli_->Delete("t2", true).ok());
}

TEST_F(RealRunscTest, CreateErrorCarriesRunscMessage) {
  std::string bundle = MakeBundle("b3", "true");
  // A bundle whose rootfs does not exist.
  ASSERT_TRUE(Sh(absl::StrCat("rm -rf ", bundle, "/rootfs")).ok());
  absl::Status st = cli_->Create("t3", WithBundle(bundle));
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("runsc create t3: exit "));
  // 20221219 says "...cannot read root FS..."; 20240729 "failed to stat mount \"<rootfs>\" ...": both name
  // it.
  EXPECT_THAT(st.message(), ::testing::AnyOf(HasSubstr(bundle + "/rootfs"), HasSubstr("root FS")));
}

}  // namespace
}  // namespace gvshim::runsc
