// containerd.task.v2.Task over ttrpc. This layer decodes requests, routes them to process::Container objects,
// publishes the request-driven events (create, delete) and encodes responses; status codes are mapped to
// ttrpc codes by the ttrpc module. All process logic lives in shim/process.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "shim/config/config.h"
#include "shim/events/publisher.h"
#include "shim/process/container.h"
#include "shim/runsc/runsc.h"
#include "shim/task/resources.h"
#include "shim/task/spec_prep.h"
#include "shim/ttrpc/server.h"

namespace gvshim::task {

inline constexpr char kServiceName[] = "containerd.task.v2.Task";
inline constexpr char kVersion[] = "0.1.0";

// Builds the runsc client for one container (a fake in unit tests).
using RunscFactory = std::function<std::unique_ptr<runsc::Runsc>(const runsc::GlobalOptions&)>;

// What the layers above (the Execute service) learn about a container when it starts and when it goes away.
struct ContainerLifecycle {
  std::string id;
  std::string ns;
  std::string bundle;
  std::string rootfs;      // absolute host path of the container's root filesystem
  std::string sandbox_id;  // the pod's sandbox id (CRI), else the container's own id
  bool creates_sandbox = true;
  std::map<std::string, std::string> annotations;
  runsc::GlobalOptions runsc;                    // how runsc is invoked for this container
  std::shared_ptr<const config::Config> config;  // the shim config the container was created with
};

struct ServiceOptions {
  std::string ns;
  // Config path from the runtime options given to `start` ("" if none); Create's own options take precedence.
  std::string config_path;
  RunscFactory runsc_factory;
  // The shim's reaper (not owned, started): every container's processes are watched through it.
  sys::ProcessWatcher* reaper = nullptr;
  // Called when the shim should exit (Shutdown with no containers left); the response is sent first.
  std::function<void()> request_shutdown;
  // Optional hooks: after a container's init started, and after it was deleted. Called without locks held;
  // they must not block for long (they run on the request's thread).
  std::function<void(const ContainerLifecycle&)> on_started;
  std::function<void(const std::string& id)> on_deleted;
};

class Service {
 public:
  Service(ServiceOptions options, events::Publisher* events);
  ~Service();
  void Register(ttrpc::Server* server);

  // Dispatches one request (method name without service), payload → response payload. Public for unit tests.
  absl::StatusOr<std::string> Call(const std::string& method, const std::string& payload);
  size_t ContainerCount();
  // True once a Create request has arrived (whatever became of it).
  bool SawCreate() const { return saw_create_.load(std::memory_order_acquire); }

 private:
  struct Entry {
    ContainerLifecycle info;
    std::unique_ptr<runsc::Runsc> runsc;
    std::unique_ptr<process::Container> container;
    bool wrap = false;             // gvshim-wrap is mounted: terminal execs run through it
    std::string exec_seccomp_bpf;  // the container's profile as BPF, installed on every exec by the wrapper
    bool exec_needs_wrap = false;  // a seccomp profile that execs could not get: they are refused
    oci::HardeningPolicy policy;   // execs are hardened like the init
    bool privileged = false;
    absl::Mutex res_mu;
    Resources resources ABSL_GUARDED_BY(res_mu);
    bool oom_killed ABSL_GUARDED_BY(res_mu) = false;  // the memory check killed it
  };

  absl::StatusOr<std::string> Create(const std::string& payload);
  absl::StatusOr<std::string> Start(const std::string& payload);
  absl::StatusOr<std::string> Delete(const std::string& payload);
  absl::StatusOr<std::string> Exec(const std::string& payload);
  absl::StatusOr<std::string> State(const std::string& payload);
  absl::StatusOr<std::string> Kill(const std::string& payload);
  absl::StatusOr<std::string> Wait(const std::string& payload);
  absl::StatusOr<std::string> Pids(const std::string& payload);
  absl::StatusOr<std::string> Pause(const std::string& payload);
  absl::StatusOr<std::string> Resume(const std::string& payload);
  absl::StatusOr<std::string> ResizePty(const std::string& payload);
  absl::StatusOr<std::string> CloseIO(const std::string& payload);
  absl::StatusOr<std::string> Update(const std::string& payload);
  absl::StatusOr<std::string> Stats(const std::string& payload);
  absl::StatusOr<std::string> Connect(const std::string& payload);
  absl::StatusOr<std::string> Shutdown(const std::string& payload);
  absl::StatusOr<std::string> Checkpoint(const std::string& payload);

  // Every method of containerd.task.v2.Task this service answers, by name.
  using Method = absl::StatusOr<std::string> (Service::*)(const std::string&);
  static const std::map<std::string, Method>& Methods();

  absl::StatusOr<std::shared_ptr<Entry>> Get(const std::string& id);
  // Starts the memory-limit check thread once (interval from the first container that needs it).
  void EnsureMemoryWatch(int interval_ms);
  void MemoryWatchLoop(absl::Duration interval);
  // One pass: every running container over its memory limit gets TaskOOM and SIGKILL.
  void EnforceMemoryLimits();
  absl::StatusOr<config::Config> LoadConfig(const std::string& override_path);

  const ServiceOptions options_;
  events::Publisher* const events_;
  std::atomic<bool> saw_create_{false};
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Entry>> containers_ ABSL_GUARDED_BY(mu_);
  // Ids whose Create is under way (reserved, not yet in containers_): a second Create of one is refused, and
  // Creates of different containers run side by side (a `runsc create` can take long).
  std::set<std::string> creating_ ABSL_GUARDED_BY(mu_);
  ProfileCache profiles_;
  absl::Mutex watch_mu_;
  bool watch_stop_ ABSL_GUARDED_BY(watch_mu_) = false;
  std::thread watch_thread_;  // joined by the destructor
};

}  // namespace gvshim::task
