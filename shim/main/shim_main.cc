// containerd-shim-gvisor-v1: the containerd runtime v2 shim binary.
//   start  — find or start the shim daemon for this container's group, print its address, exit.
//   delete — clean up after a shim that died: force-delete the runsc container, unmount, print
//   DeleteResponse. (none) — the daemon: serve containerd.task.v2.Task over ttrpc on the socket inherited as
//   fd 3.
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "google/protobuf/any.pb.h"
#include "gvshim/runtimeoptions/v1/options.pb.h"
#include "shim/base/log.h"
#include "shim/base/status.h"
#include "shim/config/config.h"
#include "shim/events/publisher.h"
#include "shim/events/timestamp.h"
#include "shim/execute/supervisor/exec_container.h"
#include "shim/execute/supervisor/supervisor.h"
#include "shim/main/flags.h"
#include "shim/process/rootfs.h"
#include "shim/runsc/runsc.h"
#include "shim/sys/fd.h"
#include "shim/sys/file.h"
#include "shim/sys/reaper.h"
#include "shim/sys/socket.h"
#include "shim/sys/spawn.h"
#include "shim/task/service.h"
#include "shim/task/spec_prep.h"
#include "shim/ttrpc/server.h"

namespace gvshim::shim_main {
namespace {

constexpr char kVersion[] = "0.1.0";
// How long a new daemon waits for its first Create before it concludes containerd abandoned it.
constexpr absl::Duration kFirstCreateTimeout = absl::Seconds(20);

// The grouping id: the pod's sandbox id for CRI containers, else the container id.
std::string GroupId(const Flags& f) {
  auto spec = sys::ReadFileToString("config.json");
  if (!spec.ok()) return f.id;
  auto j = nlohmann::json::parse(*spec, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return f.id;
  auto ann = j.find("annotations");
  if (ann == j.end() || !ann->is_object()) return f.id;
  auto sb = ann->find(task::kSandboxIdAnnotation);
  if (sb != ann->end() && sb->is_string() && !sb->get<std::string>().empty()) return sb->get<std::string>();
  return f.id;
}

// The socket's directory (containerd's own /run/containerd/s, as other shims use it).
absl::Status MakeSocketDir(const std::string& path) {
  std::string dir = path.substr(0, path.rfind('/'));
  if (::mkdir("/run/containerd", 0711) != 0 && errno != EEXIST)
    return ErrnoStatus(errno, "mkdir /run/containerd");
  if (::mkdir(dir.c_str(), 0711) != 0 && errno != EEXIST) return ErrnoStatus(errno, "mkdir " + dir);
  return absl::OkStatus();
}

// Parses the runtime options containerd writes to start's stdin (a marshaled google.protobuf.Any).
std::string ConfigPathFromStdin() {
  std::string data;
  if (::isatty(STDIN_FILENO)) return "";
  auto read = sys::ReadAll(STDIN_FILENO, 1 << 20);
  if (!read.ok() || read->empty()) return "";
  google::protobuf::Any any;
  if (!any.ParseFromString(*read)) return "";
  if (any.type_url().find("runtimeoptions.v1.Options") == std::string::npos) return "";
  runtimeoptions::v1::Options opts;
  if (!opts.ParseFromString(any.value())) return "";
  return opts.config_path();
}

int Start(const Flags& f, char** argv) {
  std::string config_path = ConfigPathFromStdin();
  std::string group = GroupId(f);
  std::string path = SocketPath(f.address, f.ns, group);
  std::string address = "unix://" + path;

  // containerd re-reads <bundle>/address to reconnect after a restart.
  auto write_address = [&]() {
    absl::Status st = sys::WriteFileAtomic("address", address);
    if (!st.ok()) std::fprintf(stderr, "start: %s\n", std::string(st.message()).c_str());
    return st.ok();
  };
  auto print_address = [&]() {
    const char* max = std::getenv("MAX_SHIM_VERSION");
    int v = 0;
    if (max != nullptr && absl::SimpleAtoi(max, &v) && v >= 2) {
      std::printf("{\"version\":2,\"address\":\"%s\",\"protocol\":\"ttrpc\"}", address.c_str());
    } else {
      std::printf("%s", address.c_str());
    }
    std::fflush(stdout);
    return 0;
  };

  // Check, remove a stale socket and bind, all under one lock: two concurrent starts for one pod must not
  // remove each other's live socket (sys::ClaimUnixSocket).
  absl::Status dir = MakeSocketDir(path);
  auto listener = dir.ok() ? sys::ClaimUnixSocket(path, 0600) : absl::StatusOr<sys::UniqueFd>(dir);
  if (!listener.ok()) {
    std::fprintf(stderr, "start: %s\n", std::string(listener.status().message()).c_str());
    return 1;
  }
  if (!listener->valid()) {  // another container of the pod already started the shim
    return write_address() ? print_address() : 1;
  }
  // Every file start writes is written before the daemon exists: a failure (a full disk) must not leave a
  // daemon behind that containerd will never talk to or shut down.
  auto give_up = [&]() {
    ::unlink(path.c_str());
    ::unlink("address");
    return 1;
  };
  if (!write_address()) return give_up();

  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    std::fprintf(stderr, "start: readlink /proc/self/exe: %s\n", std::strerror(errno));
    return give_up();
  }
  self[n] = '\0';
  sys::SpawnOptions so;
  so.argv = {self,
             "-namespace",
             f.ns,
             "-id",
             f.id,
             "-address",
             f.address,
             "-publish-binary",
             f.publish_binary,
             "-gvshim-socket",
             path};
  if (!config_path.empty()) so.argv.insert(so.argv.end(), {"-gvshim-config", config_path});
  if (f.debug) so.argv.push_back("-debug");
  so.extra_fds = {listener->get()};
  so.new_session = true;
  so.pdeathsig = 0;
  // stdin/stdout/stderr stay /dev/null: containerd 1.6 reads start's output until both pipes close.
  auto pid = sys::Spawn(so, nullptr);  // `start` has no reaper: it collects its own children
  if (!pid.ok()) {
    std::fprintf(stderr, "start: %s\n", std::string(pid.status().message()).c_str());
    return give_up();
  }
  if (absl::Status st = sys::WriteFileAtomic("shim.pid", std::to_string(*pid)); !st.ok()) {
    // The daemon is our child and nobody else waits for it: its pid is ours until this waitpid.
    std::fprintf(stderr, "start: %s\n", std::string(st.message()).c_str());
    ::kill(*pid, SIGKILL);
    while (::waitpid(*pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return give_up();
  }
  (void)argv;
  return print_address();
}

int Delete(const Flags& f) {
  std::string bundle = f.bundle;
  if (bundle.empty()) {
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd) != nullptr) bundle = cwd;
  }
  auto g = task::ReadDeleteInfo(bundle);
  if (!g.ok()) {
    // The container never got as far as runsc; fall back to the default configuration.
    auto cfg = config::Load(config::kDefaultPath, false);
    g = cfg.ok() ? task::RunscOptions(*cfg, f.ns) : runsc::GlobalOptions{};
  }
  g->log_path = "";
  // No reaper in this short-lived command: runsc's exits are collected by the subprocess runner itself.
  auto r = runsc::NewRunscCli(*g, nullptr);
  absl::Status st = r->Delete(f.id, /*force=*/true);
  if (!st.ok() && st.code() != absl::StatusCode::kNotFound) log::Warnf("delete %s: %s", f.id, st.ToString());
  // The container's execute container, if the shim made one (shim/execute/supervisor/exec_container.h).
  if (absl::Status e = execute::DeleteExecContainer(*r, f.id, bundle); !e.ok())
    log::Warnf("%s", e.ToString());
  if (absl::Status u = process::UnmountAll(bundle + "/rootfs"); !u.ok()) log::Warnf("%s", u.ToString());
  containerd::task::v2::DeleteResponse resp;
  resp.set_exit_status(128 + SIGKILL);
  *resp.mutable_exited_at() = events::NowTimestamp();
  std::string out = resp.SerializeAsString();
  return sys::WriteAll(STDOUT_FILENO, out.data(), out.size()).ok() ? 0 : 1;
}

int Serve(const Flags& f) {
  // One malloc arena: the daemon's threads mostly wait, and each extra arena costs resident pages in every
  // shim.
  ::mallopt(M_ARENA_MAX, 1);
  // Order matters: the reaper blocks SIGCHLD before any thread exists, so every thread inherits the mask.
  // It is the daemon's one reaper, handed to everything that spawns or watches a child. Never deleted (its
  // thread runs until the process exits); static only so that leak checkers see it reachable.
  static sys::Reaper* const reaper = new sys::Reaper();
  if (absl::Status st = reaper->Start(/*subreaper=*/true); !st.ok()) {
    std::fprintf(stderr, "reaper: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  ::signal(SIGPIPE, SIG_IGN);
  // containerd opens the read side of the `log` fifo before it starts the shim.
  sys::UniqueFd logfd(::open("log", O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  if (logfd) {
    // Opened non-blocking only so that a missing reader cannot hang the open; writes must block.
    const int flags = ::fcntl(logfd.get(), F_GETFL);
    const int err = flags < 0 || ::fcntl(logfd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0 ? errno : 0;
    log::SetOutputFd(logfd.get());
    if (err != 0) log::Warnf("log fifo: cannot clear O_NONBLOCK (%s); lines may be lost", std::strerror(err));
  } else {
    logfd.reset(::open("/dev/null", O_WRONLY | O_CLOEXEC));
    log::SetOutputFd(logfd.get());
  }
  if (f.debug) log::SetLevel(log::Level::kDebug);

  const char* ttrpc_addr = std::getenv("TTRPC_ADDRESS");
  std::unique_ptr<events::EnvelopeSink> sink =
      events::NewTtrpcSink(ttrpc_addr != nullptr ? ttrpc_addr : (f.address + ".ttrpc"), f.ns);
  events::Forwarder forwarder(std::move(sink), f.ns);

  absl::Notification shutdown;
  std::once_flag shutdown_once;  // Notify may run only once; the Shutdown RPC and the watchdog below race
  auto request_shutdown = [&] { std::call_once(shutdown_once, [&] { shutdown.Notify(); }); };
  auto runsc_factory = [](const runsc::GlobalOptions& g) { return runsc::NewRunscCli(g, reaper); };
  // The Execute service: a server process per pod that opts in, nothing otherwise
  // (shim/execute/supervisor/supervisor.h).
  execute::Supervisor::Options eo;
  eo.reaper = reaper;
  eo.default_server = execute::Supervisor::DefaultServerPath();
  eo.log_fd = log::OutputFd();
  eo.log_level = log::GetLevel() == log::Level::kDebug ? "debug" : "info";
  execute::Supervisor execute_supervisor(eo);
  task::ServiceOptions so;
  so.ns = f.ns;
  so.config_path = f.config_path;
  so.runsc_factory = runsc_factory;
  so.reaper = reaper;
  so.on_started = [&execute_supervisor](const task::ContainerLifecycle& info) {
    execute_supervisor.OnContainerStarted(info);
  };
  so.on_deleted = [&execute_supervisor](const std::string& id) { execute_supervisor.OnContainerDeleted(id); };
  so.request_shutdown = request_shutdown;
  task::Service service(so, &forwarder);
  ttrpc::Server server;
  service.Register(&server);
  if (absl::Status st = server.AdoptListener(sys::UniqueFd(3)); !st.ok()) {
    log::Errorf("serve: %s", st.ToString());
    return 1;
  }
  if (absl::Status st = server.Start(); !st.ok()) {
    log::Errorf("serve: %s", st.ToString());
    return 1;
  }
  log::Infof("gvshim %s serving %s (namespace %s, pid %d)", kVersion, f.socket, f.ns, ::getpid());
  // containerd sends Create right after `start`. If none comes, containerd gave up on this daemon after start
  // succeeded (1.6 does when it cannot write its own shim-binary-path into a full bundle filesystem, keeping
  // its connection open): nobody would ever shut it down, so it exits by itself.
  if (!shutdown.WaitForNotificationWithTimeout(kFirstCreateTimeout) && !service.SawCreate()) {
    log::Warnf("no Create within %s of start: containerd gave up on this shim; exiting",
               absl::FormatDuration(kFirstCreateTimeout));
    request_shutdown();
  }
  shutdown.WaitForNotification();
  // Let the Shutdown response reach containerd, then stop.
  if (!f.socket.empty()) ::unlink(f.socket.c_str());
  server.Shutdown();
  execute_supervisor.Shutdown();
  forwarder.Drain(absl::Seconds(5));
  log::Infof("gvshim exiting");
  return 0;
}

}  // namespace
}  // namespace gvshim::shim_main

int main(int argc, char** argv) {
  using namespace gvshim::shim_main;
  std::vector<std::string> args(argv + 1, argv + argc);
  auto flags = ParseFlags(args);
  if (!flags.ok()) {
    std::fprintf(stderr, "containerd-shim-gvisor-v1: %s\n", std::string(flags.status().message()).c_str());
    return 2;
  }
  if (flags->version) {
    std::printf("containerd-shim-gvisor-v1:\n  Version: %s\n  Runtime: io.containerd.gvisor.v1\n", kVersion);
    return 0;
  }
  if (flags->action == "start") return Start(*flags, argv);
  if (flags->action == "delete") return Delete(*flags);
  if (flags->ns.empty() || flags->id.empty()) {
    std::fprintf(stderr, "containerd-shim-gvisor-v1: -namespace and -id are required\n");
    return 2;
  }
  return Serve(*flags);
}
