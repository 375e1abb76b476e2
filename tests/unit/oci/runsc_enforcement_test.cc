// Proves that a hardened spec is enforced by the real runsc (ptrace platform): a busybox-static container
// runs a script under the strict profile and reports what it could do. Needs root, runsc and /bin/busybox;
// skips otherwise. Everything (sandbox, state dir, bundle) is removed at the end.
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shim/oci/hardening.h"
#include "shim/sys/fd.h"

extern char** environ;

namespace gvshim::oci {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;
namespace fs = std::filesystem;

constexpr char kScript[] =
    "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; "
    "unshare -U true; echo unshare=$?; "
    "mount -t tmpfs none /mnt; echo mount=$?; "
    "touch /rootfile; echo rootwrite=$?; "
    "touch /tmp/file; echo tmpwrite=$?; "
    "echo uid=$(id -u)";

std::string FindRunsc() {
  for (const char* dir : {"/usr/bin", "/usr/local/bin", "/usr/sbin"}) {
    std::string path = std::string(dir) + "/runsc";
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  return "";
}

// Runs argv with stdout+stderr going to out_fd (or /dev/null when -1); returns the exit status.
int RunCommand(const std::vector<std::string>& args, int out_fd) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  if (out_fd >= 0) {
    posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
    posix_spawn_file_actions_adddup2(&actions, out_fd, 2);
  } else {
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  }
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

json BaseSpec() {
  json caps = {"CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER",    "CAP_MKNOD",
               "CAP_NET_RAW", "CAP_SETGID",       "CAP_SETUID", "CAP_SYS_ADMIN", "CAP_KILL"};
  return {
      {"ociVersion", "1.0.2"},
      {"process",
       {{"terminal", false},
        {"user", {{"uid", 0}, {"gid", 0}}},
        {"args", {"/bin/sh", "-c", kScript}},
        {"env", {"PATH=/bin"}},
        {"cwd", "/"},
        {"capabilities", {{"bounding", caps}, {"effective", caps}, {"permitted", caps}}}}},
      {"root", {{"path", "rootfs"}}},
      {"hostname", "gvshim-test"},
      {"mounts",
       {{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
        {{"destination", "/dev"},
         {"type", "tmpfs"},
         {"source", "tmpfs"},
         {"options", {"nosuid", "mode=755"}}},
        {{"destination", "/sys"}, {"type", "sysfs"}, {"source", "sysfs"}, {"options", {"nosuid", "ro"}}}}},
      {"linux",
       {{"namespaces",
         {{{"type", "pid"}},
          {{"type", "ipc"}},
          {{"type", "uts"}},
          {{"type", "mount"}},
          {{"type", "network"}}}}}}};
}

class RunscEnforcement : public ::testing::Test {
 protected:
  void SetUp() override {
    runsc_ = FindRunsc();
    if (geteuid() != 0 || runsc_.empty() || access("/bin/busybox", X_OK) != 0) {
      GTEST_SKIP() << "needs root, runsc and /bin/busybox (busybox-static)";
    }
    char tmpl[] = "/tmp/gvrs-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ + "/bundle/rootfs/bin");
    for (const char* d : {"proc", "dev", "sys", "tmp", "mnt"})
      fs::create_directories(dir_ + "/bundle/rootfs/" + d);
    // World-writable root directory: writing to / can then only fail because the root is read-only.
    fs::permissions(dir_ + "/bundle/rootfs", fs::perms::all);
    fs::copy_file("/bin/busybox", dir_ + "/bundle/rootfs/bin/busybox");
    for (const char* applet : {"sh", "grep", "unshare", "mount", "touch", "id", "true", "echo"}) {
      fs::create_symlink("busybox", dir_ + "/bundle/rootfs/bin/" + applet);
    }
    id_ = "gvshim-oci-test-" + std::to_string(getpid());
  }

  void TearDown() override {
    if (dir_.empty()) return;
    if (created_)
      RunCommand({runsc_, "--root", dir_ + "/state", "--platform=ptrace", "delete", "--force", id_}, -1);
    std::error_code ec;
    fs::remove_all(dir_, ec);
    EXPECT_FALSE(ec) << "remove " << dir_ << ": " << ec.message();
  }

  // Hardens BaseSpec() with the strict profile, runs it, and returns what the container printed.
  std::string RunHardened(bool oci_seccomp, json spec = BaseSpec(), const std::string& profile = "strict") {
    HardeningPolicy policy;
    const char* src = std::getenv("GVSHIM_SOURCE_DIR");
    policy.profiles_dir = std::string(src != nullptr ? src : ".") + "/seccomp-profiles";
    policy.seccomp_profile = profile;
    policy.force_uid = 1000;
    policy.force_gid = 1000;
    auto hardened = Harden(spec, policy);
    EXPECT_TRUE(hardened.ok()) << hardened.status();
    if (!hardened.ok()) return "";
    EXPECT_TRUE(hardened->needs_oci_seccomp);
    EXPECT_TRUE(SaveSpec(dir_ + "/bundle/config.json", hardened->spec).ok());

    std::vector<std::string> global = {runsc_, "--root", dir_ + "/state", "--platform=ptrace",
                                       "--network=none"};
    if (oci_seccomp) global.push_back("--oci-seccomp");
    auto pipe = sys::MakePipe();
    EXPECT_TRUE(pipe.ok());
    if (!pipe.ok()) return "";
    // The container's stdio is runsc create's stdio; EOF comes when the sandbox (the last holder) exits.
    std::vector<std::string> create = global;
    create.insert(create.end(), {"create", "--bundle", dir_ + "/bundle", id_});
    created_ = true;
    int rc = RunCommand(create, pipe->write.get());
    pipe->write.reset();
    EXPECT_EQ(rc, 0) << "runsc create";
    std::vector<std::string> start = global;
    start.insert(start.end(), {"start", id_});
    EXPECT_EQ(RunCommand(start, -1), 0) << "runsc start";
    std::string out;
    char buf[4096];
    for (;;) {
      struct pollfd pfd = {pipe->read.get(), POLLIN, 0};
      int n = poll(&pfd, 1, 60000);  // an upper bound for a stuck sandbox, not a synchronisation
      if (n <= 0) {
        ADD_FAILURE() << "no EOF from the sandbox within 60 s; output so far: " << out;
        break;
      }
      ssize_t got = read(pipe->read.get(), buf, sizeof buf);
      if (got <= 0) break;
      out.append(buf, static_cast<size_t>(got));
    }
    return out;
  }

  std::string runsc_;
  std::string dir_;
  std::string id_;
  bool created_ = false;
};

TEST_F(RunscEnforcement, StrictProfileIsEnforcedWithOciSeccomp) {
  std::string out = RunHardened(true);
  EXPECT_THAT(out, HasSubstr("CapEff:\t0000000000000000"));
  EXPECT_THAT(out, HasSubstr("Seccomp:\t2"));  // filter mode
  // runsc 20221219's /proc/self/status has no NoNewPrivs line; check it when a later release adds one.
  if (out.find("NoNewPrivs:") != std::string::npos) {
    EXPECT_THAT(out, HasSubstr("NoNewPrivs:\t1"));
  }
  EXPECT_THAT(out, HasSubstr("unshare(0x10000000): Operation not permitted"));
  EXPECT_THAT(out, HasSubstr("unshare=1"));
  EXPECT_THAT(out, HasSubstr("mount=1"));
  EXPECT_THAT(out, HasSubstr("Read-only file system"));
  EXPECT_THAT(out, HasSubstr("rootwrite=1"));
  EXPECT_THAT(out, HasSubstr("tmpwrite=0"));
  EXPECT_THAT(out, HasSubstr("uid=1000"));
}

// The control: without --oci-seccomp runsc ignores linux.seccomp, and the same unshare succeeds. This is why
// HardeningResult::needs_oci_seccomp must reach the runsc command line.
TEST_F(RunscEnforcement, ProfileIsIgnoredWithoutOciSeccomp) {
  std::string out = RunHardened(false);
  EXPECT_THAT(out, HasSubstr("Seccomp:\t0"));
  EXPECT_THAT(out, HasSubstr("unshare=0"));
  EXPECT_THAT(out, Not(HasSubstr("Operation not permitted")));
  // Everything that does not depend on seccomp still holds.
  EXPECT_THAT(out, HasSubstr("CapEff:\t0000000000000000"));
  EXPECT_THAT(out, HasSubstr("rootwrite=1"));
  EXPECT_THAT(out, HasSubstr("tmpwrite=0"));
}

// Python 3.11 and Node 20 must work under both shipped profiles: threads (glibc tries clone3 first),
// subprocesses, multiprocessing, asyncio, worker threads, sockets on loopback, files in /tmp. The host's root
// is the container's root, read-only, so the host's interpreters are used as they are.
class Interpreters : public RunscEnforcement, public ::testing::WithParamInterface<const char*> {};

TEST_P(Interpreters, RunUnderProfile) {
  if (access("/usr/bin/python3", X_OK) != 0 || access("/usr/bin/node", X_OK) != 0) {
    GTEST_SKIP() << "needs /usr/bin/python3 and /usr/bin/node";
  }
  constexpr char kPython[] =
      "import threading, subprocess, multiprocessing, tempfile, asyncio, socket\n"
      "t = threading.Thread(target=lambda: None); t.start(); t.join(); print('py-thread ok')\n"
      "print('py-subprocess', subprocess.run(['/bin/true']).returncode)\n"
      "with multiprocessing.Pool(2) as p: print('py-pool', p.map(abs, [-1, -2]))\n"
      "with tempfile.NamedTemporaryFile(dir='/tmp') as f: f.write(b'x'); print('py-tmp ok')\n"
      "async def m(): return 1\n"
      "print('py-asyncio', asyncio.run(m()))\n"
      "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); print('py-socket ok')\n";
  constexpr char kNode[] =
      "const cp = require('child_process'); const fs = require('fs');"
      "console.log('node-exec', cp.execFileSync('/bin/true').length);"
      "fs.writeFileSync('/tmp/n.txt', 'x'); console.log('node-fs', fs.readFileSync('/tmp/n.txt', 'utf8'));"
      "const { Worker } = require('worker_threads');"
      "new Worker('require(\"worker_threads\").parentPort.postMessage(42)', { eval: true })"
      "  .on('message', m => console.log('node-worker', m));";
  json spec = BaseSpec();
  spec["root"]["path"] = "/";
  spec["process"]["args"] = {"/bin/sh", "-c",
                             std::string("/usr/bin/python3 -c \"$PY\" 2>&1; /usr/bin/node -e \"$JS\" 2>&1")};
  spec["process"]["env"] = {"PATH=/usr/bin:/bin", "HOME=/tmp", std::string("PY=") + kPython,
                            std::string("JS=") + kNode};
  // CRI gives every pod a writable /dev/shm; multiprocessing's semaphores live there.
  spec["mounts"].push_back({{"destination", "/dev/shm"},
                            {"type", "tmpfs"},
                            {"source", "shm"},
                            {"options", {"nosuid", "nodev", "noexec", "mode=1777", "size=65536k"}}});
  std::string out = RunHardened(true, spec, GetParam());
  for (const char* line : {"py-thread ok", "py-subprocess 0", "py-pool [1, 2]", "py-tmp ok", "py-asyncio 1",
                           "py-socket ok", "node-exec 0", "node-fs x", "node-worker 42"}) {
    EXPECT_THAT(out, HasSubstr(line));
  }
}

INSTANTIATE_TEST_SUITE_P(Profiles, Interpreters, ::testing::Values("strict", "default"));

}  // namespace
}  // namespace gvshim::oci
