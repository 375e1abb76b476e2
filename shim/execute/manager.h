// One per shim: decides which sandboxes get the Execute service and runs one gRPC server per such sandbox, on
// <socket_dir>/<key>.sock (mode 0600, directory 0700), with <key>.json next to it describing the sandbox for
// clients (the gvshim CLI): {"namespace", "sandbox_id", "containers": [{"id", "python", "node"}],
// "pod_namespace", "pod_name", "socket", "shim_pid"}.
//
// Nothing gRPC is created (no threads, no sockets) until a sandbox opts in: [execute] enabled = true and,
// unless require_annotation = false, the annotation dev.gvshim.execute=true on one of its containers.
// Hooks never fail the container operation they follow: errors are logged.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "shim/runsc/runsc.h"
#include "shim/task/service.h"

namespace gvshim::execute {

class Sandbox;

class Manager {
 public:
  using RunscFactory = std::function<std::unique_ptr<runsc::Runsc>(const runsc::GlobalOptions&)>;

  explicit Manager(RunscFactory runsc_factory);
  ~Manager();  // Shutdown()
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // task::ServiceOptions::on_started: after a container's init process started.
  void OnContainerStarted(const task::ContainerLifecycle& info);
  // task::ServiceOptions::on_deleted: drops the container's runners; the sandbox's last container (or the
  // sandbox container itself) takes the server, socket and JSON file with it.
  void OnContainerDeleted(const std::string& id);
  // Stops every server and runner and removes the files. Idempotent.
  void Shutdown();

  // The socket of a sandbox if it is being served.
  std::optional<std::string> SocketPath(const std::string& ns, const std::string& sandbox_id);
  size_t ServingCount();

 private:
  const RunscFactory runsc_factory_;
  absl::Mutex mu_;
  // Keyed by "<ns>/<sandbox id>"; holds every sandbox with execute enabled, served or not (yet).
  std::map<std::string, std::shared_ptr<Sandbox>> sandboxes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> container_sandbox_ ABSL_GUARDED_BY(mu_);  // container id -> key above
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

// 16 lower-case hex digits naming a sandbox's files: FNV-1a (64 bit) of "<ns>/<sandbox_id>". Stable across
// processes and versions, so clients can compute it.
std::string SocketKey(const std::string& ns, const std::string& sandbox_id);

}  // namespace gvshim::execute
