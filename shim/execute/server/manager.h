// The Execute service of a pod, inside its Execute server process (`gvshim execute-server`, started by the
// shim only for pods that opt in; see wire.h and supervisor.h). Runs one gRPC server per sandbox, on
// <socket_dir>/<key>.sock (mode 0600, directory 0700), with <key>.json next to it describing the sandbox for
// clients (the gvshim CLI): {"namespace", "sandbox_id", "containers": [{"id", "python", "node"}],
// "pod_namespace", "pod_name", "socket", "shim_pid", "server_pid"}.
//
// Nothing gRPC is created (no threads, no sockets) until a sandbox opts in: [execute] enabled = true and,
// unless require_annotation = false, the annotation dev.gvshim.execute=true on one of its containers.
// Errors never propagate to the container operation that caused the call: they are logged.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "shim/execute/common/config.h"
#include "shim/execute/common/wire.h"
#include "shim/runsc/runsc.h"
#include "shim/sys/process_watcher.h"

namespace gvshim::execute {

class Sandbox;

class Manager {
 public:
  using RunscFactory = std::function<std::unique_ptr<runsc::Runsc>(const runsc::GlobalOptions&)>;

  // Called (on any thread) once the runners of a container that started in eager mode are ready (or failed).
  using WarmCallback = std::function<void(const std::string& container_id)>;

  // `reaper` (not owned, started) is the process's reaper: runners are watched through it. shim_pid goes into
  // the discovery records (0: this process).
  Manager(RunscFactory runsc_factory, sys::ProcessWatcher* reaper, pid_t shim_pid = 0,
          WarmCallback on_warm = nullptr);
  ~Manager();  // Shutdown()
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // After a container's init process started; `cfg` is the [execute] table it was created with.
  void OnContainerStarted(const ContainerInfo& info, const ExecuteConfig& cfg);
  // Drops the container's runners; the sandbox's last container (or the sandbox container itself) takes the
  // server, socket and JSON file with it.
  void OnContainerDeleted(const std::string& id);
  // Stops every server and runner and removes the files. Idempotent.
  void Shutdown();

  // The socket of a sandbox if it is being served.
  std::optional<std::string> SocketPath(const std::string& ns, const std::string& sandbox_id);
  size_t ServingCount();

 private:
  const RunscFactory runsc_factory_;
  sys::ProcessWatcher* const reaper_;  // not owned
  const pid_t shim_pid_;
  const WarmCallback on_warm_;
  absl::Mutex mu_;
  // Keyed by "<ns>/<sandbox id>"; holds every sandbox with execute enabled, served or not (yet).
  std::map<std::string, std::shared_ptr<Sandbox>> sandboxes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> container_sandbox_ ABSL_GUARDED_BY(mu_);  // container id -> key above
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace gvshim::execute
