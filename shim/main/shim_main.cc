// containerd-shim-gvisor-v1: the containerd runtime v2 shim binary.
//   start  — find or start the shim daemon for this container's group, print its address, exit.
//   delete — clean up after a shim that died: force-delete the runsc container, unmount, print
//   DeleteResponse. (none) — the daemon: serve containerd.task.v2.Task over ttrpc on the socket inherited as
//   fd 3.
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
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
#include "shim/sys/spawn.h"
#include "shim/task/service.h"
#include "shim/task/spec_prep.h"
#include "shim/ttrpc/server.h"

namespace gvshim::shim_main {
namespace {

constexpr char kVersion[] = "0.1.0";

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

bool SocketServes(const std::string& path) {
  sys::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

absl::StatusOr<sys::UniqueFd> Listen(const std::string& path) {
  if (path.size() >= sizeof(sockaddr_un::sun_path))
    return absl::InvalidArgumentError("socket path too long: " + path);
  std::string dir = path.substr(0, path.rfind('/'));
  if (::mkdir("/run/containerd", 0711) != 0 && errno != EEXIST)
    return ErrnoStatus(errno, "mkdir /run/containerd");
  if (::mkdir(dir.c_str(), 0711) != 0 && errno != EEXIST) return ErrnoStatus(errno, "mkdir " + dir);
  sys::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoStatus(errno, "socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  mode_t old = ::umask(0077);  // the socket is root-only (0600)
  int rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int err = errno;
  ::umask(old);
  if (rc != 0) return ErrnoStatus(err, "bind " + path);
  if (::listen(fd.get(), 64) != 0) return ErrnoStatus(errno, "listen " + path);
  return fd;
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

  auto print_address = [&]() {
    if (absl::Status st = sys::WriteFileAtomic("address", address); !st.ok()) {
      std::fprintf(stderr, "%s\n", std::string(st.message()).c_str());
      return 1;
    }
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

  if (SocketServes(path)) return print_address();  // another container of the pod already started the shim
  ::unlink(path.c_str());                          // stale socket of a dead shim
  auto listener = Listen(path);
  if (!listener.ok()) {
    if (absl::IsAlreadyExists(listener.status()) || SocketServes(path))
      return print_address();  // lost a race
    std::fprintf(stderr, "start: %s\n", std::string(listener.status().message()).c_str());
    return 1;
  }

  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    std::fprintf(stderr, "start: readlink /proc/self/exe: %s\n", std::strerror(errno));
    ::unlink(path.c_str());
    return 1;
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
  auto pid = sys::Spawn(so);
  if (!pid.ok()) {
    std::fprintf(stderr, "start: %s\n", std::string(pid.status().message()).c_str());
    ::unlink(path.c_str());
    return 1;
  }
  (void)sys::WriteFileAtomic("shim.pid", std::to_string(*pid));
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
  auto r = runsc::NewRunscCli(*g);
  absl::Status st = r->Delete(f.id, /*force=*/true);
  if (!st.ok() && st.code() != absl::StatusCode::kNotFound) log::Warnf("delete %s: %s", f.id, st.ToString());
  // The container's execute container, if the shim made one (shim/execute/supervisor/exec_container.h).
  if (absl::Status e = execute::DeleteExecContainer(*r, f.id, bundle); !e.ok()) log::Warnf("%s", e.ToString());
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
  if (absl::Status st = sys::Reaper::Get().Start(/*subreaper=*/true); !st.ok()) {
    std::fprintf(stderr, "reaper: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  ::signal(SIGPIPE, SIG_IGN);
  // containerd opens the read side of the `log` fifo before it starts the shim.
  sys::UniqueFd logfd(::open("log", O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  if (logfd) {
    ::fcntl(logfd.get(), F_SETFL, ::fcntl(logfd.get(), F_GETFL) & ~O_NONBLOCK);
    log::SetOutputFd(logfd.get());
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
  auto runsc_factory = [](const runsc::GlobalOptions& g) { return runsc::NewRunscCli(g); };
  // The Execute service: a server process per pod that opts in, nothing otherwise
  // (shim/execute/supervisor/supervisor.h).
  execute::Supervisor::Options eo;
  eo.default_server = execute::Supervisor::DefaultServerPath();
  eo.log_fd = log::OutputFd();
  eo.log_level = log::GetLevel() == log::Level::kDebug ? "debug" : "info";
  execute::Supervisor execute_supervisor(eo);
  task::ServiceOptions so;
  so.ns = f.ns;
  so.config_path = f.config_path;
  so.runsc_factory = runsc_factory;
  so.on_started = [&execute_supervisor](const task::ContainerLifecycle& info) {
    execute_supervisor.OnContainerStarted(info);
  };
  so.on_deleted = [&execute_supervisor](const std::string& id) { execute_supervisor.OnContainerDeleted(id); };
  so.request_shutdown = [&shutdown] {
    if (!shutdown.HasBeenNotified()) shutdown.Notify();
  };
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
