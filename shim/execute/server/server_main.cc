#include "shim/execute/server/server_main.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"
#include "shim/base/log.h"
#include "shim/execute/common/wire.h"
#include "shim/execute/server/manager.h"
#include "shim/runsc/runsc.h"
#include "shim/sys/fd.h"
#include "shim/sys/reaper.h"

namespace gvshim::execute {
namespace {

// Tells the shim (on stdout, one JSON line) that a container's runners are ready: the shim holds an eager
// container's Start until then (wire.h).
void TellWarm(const std::string& id) {
  static absl::Mutex mu(absl::kConstInit);
  const std::string line = nlohmann::json{{"op", "warm"}, {"id", id}}.dump() + "\n";
  absl::MutexLock lock(&mu);
  (void)sys::WriteAll(STDOUT_FILENO, line.data(), line.size());
}

// Applies one message; errors name the problem and are logged by the caller.
absl::Status Apply(const std::string& line, std::optional<SandboxHello>& hello,
                   std::unique_ptr<Manager>& manager, sys::ProcessWatcher* reaper) {
  nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return absl::InvalidArgumentError("execute wire: not a JSON object");
  auto op_it = j.find("op");
  const std::string op = op_it != j.end() && op_it->is_string() ? op_it->get<std::string>() : "";
  if (op == "sandbox") {
    if (hello.has_value()) return absl::InvalidArgumentError("execute wire: a second sandbox message");
    auto h = HelloFromJson(j);
    if (!h.ok()) return h.status();
    log::Level level;
    if (log::ParseLevel(h->log_level, &level)) log::SetLevel(level);
    hello = std::move(*h);
    manager = std::make_unique<Manager>(
        [reaper](const runsc::GlobalOptions& g) { return runsc::NewRunscCli(g, reaper); }, reaper,
        hello->shim_pid, TellWarm);
    log::Infof("execute: server for sandbox %s/%s (pid %d)", hello->ns, hello->sandbox_id, ::getpid());
    return absl::OkStatus();
  }
  if (!hello.has_value())
    return absl::InvalidArgumentError("execute wire: the sandbox message must come first");
  if (op == "start") {
    auto it = j.find("container");
    if (it == j.end()) return absl::InvalidArgumentError("execute wire: start without container");
    auto c = ContainerFromJson(*it);
    if (!c.ok()) return c.status();
    manager->OnContainerStarted(*c, hello->config);
    return absl::OkStatus();
  }
  if (op == "delete") {
    auto it = j.find("id");
    if (it == j.end() || !it->is_string())
      return absl::InvalidArgumentError("execute wire: delete without id");
    manager->OnContainerDeleted(it->get<std::string>());
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("execute wire: unknown op \"", op, "\""));
}

}  // namespace

int ExecuteServerMain(int in_fd) {
  // SIGTERM/SIGINT end the server like end of input does; blocked here so every thread inherits the mask.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  ::pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  sys::UniqueFd sigfd(::signalfd(-1, &stop, SFD_CLOEXEC));
  // The process's one reaper, handed to everything that spawns or watches a child. Never deleted (its thread
  // runs until the process exits); static only so that leak checkers see it reachable.
  static sys::Reaper* const reaper = new sys::Reaper();
  if (absl::Status st = reaper->Start(/*subreaper=*/false); !st.ok()) {
    log::Errorf("execute-server: reaper: %s", st.message());
    return 1;
  }
  ::signal(SIGPIPE, SIG_IGN);

  std::optional<SandboxHello> hello;
  std::unique_ptr<Manager> manager;
  std::string buf;
  char chunk[16384];
  int code = 0;
  for (;;) {
    struct pollfd fds[2] = {{in_fd, POLLIN, 0}, {sigfd.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      log::Errorf("execute-server: poll: %s", std::strerror(errno));
      code = 1;
      break;
    }
    if (fds[1].revents & POLLIN) {
      log::Infof("execute-server: stopping on a signal");
      break;
    }
    if (fds[0].revents == 0) continue;
    ssize_t n = ::read(in_fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // end of input: the shim is done with the pod (or gone)
    buf.append(chunk, static_cast<size_t>(n));
    for (size_t nl; (nl = buf.find('\n')) != std::string::npos;) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (absl::Status st = Apply(line, hello, manager, reaper); !st.ok()) {
        log::Warnf("execute-server: %s", st.message());
        if (!hello.has_value()) {
          // Without the sandbox message there is nothing to serve: exit, so the shim sees it and restarts.
          code = 2;
          break;
        }
      }
    }
    if (code != 0) break;
    if (buf.size() > (4 << 20)) {
      log::Errorf("execute-server: a message of over 4 MiB without a newline; stopping");
      code = 1;
      break;
    }
  }
  if (manager != nullptr) manager->Shutdown();
  return code;
}

}  // namespace gvshim::execute
