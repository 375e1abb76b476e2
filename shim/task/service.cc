#include "shim/task/service.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "github.com/containerd/cgroups/stats/v1/metrics.pb.h"
#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "github.com/containerd/containerd/runtime/v2/task/shim.pb.h"
#include "google/protobuf/empty.pb.h"
#include "gvshim/runtimeoptions/v1/options.pb.h"
#include "shim/base/log.h"
#include "shim/base/status.h"
#include "shim/events/timestamp.h"
#include "shim/task/spec_prep.h"
#include "shim/task/wrap.h"

namespace gvshim::task {
namespace {

namespace tv2 = containerd::task::v2;

template <typename Req>
absl::StatusOr<Req> Decode(const std::string& payload, const char* method) {
  Req req;
  if (!req.ParseFromString(payload)) {
    return absl::InvalidArgumentError(
        absl::StrCat(method, ": request is not a valid ", Req::default_instance().GetTypeName()));
  }
  return req;
}

std::string Empty() { return google::protobuf::Empty().SerializeAsString(); }

google::protobuf::Timestamp ToProto(absl::Time t) { return events::ToTimestamp(t); }

containerd::v1::types::Status ToProto(process::Status s) {
  switch (s) {
    case process::Status::kCreated:
      return containerd::v1::types::CREATED;
    case process::Status::kRunning:
      return containerd::v1::types::RUNNING;
    case process::Status::kPaused:
      return containerd::v1::types::PAUSED;
    case process::Status::kStopped:
    case process::Status::kDeleted:
      return containerd::v1::types::STOPPED;
  }
  return containerd::v1::types::UNKNOWN;
}

}  // namespace

Service::Service(ServiceOptions options, events::Publisher* events)
    : options_(std::move(options)), events_(events) {}

Service::~Service() {
  {
    absl::MutexLock lock(&watch_mu_);
    watch_stop_ = true;
  }
  if (watch_thread_.joinable()) watch_thread_.join();
}

void Service::EnsureMemoryWatch(int interval_ms) {
  absl::MutexLock lock(&watch_mu_);
  if (watch_thread_.joinable() || watch_stop_ || interval_ms <= 0) return;
  watch_thread_ = std::thread([this, interval_ms] { MemoryWatchLoop(absl::Milliseconds(interval_ms)); });
}

void Service::MemoryWatchLoop(absl::Duration interval) {
  for (;;) {
    {
      absl::MutexLock lock(&watch_mu_);
      if (watch_mu_.AwaitWithTimeout(absl::Condition(&watch_stop_), interval)) return;
    }
    EnforceMemoryLimits();
  }
}

void Service::EnforceMemoryLimits() {
  std::vector<std::shared_ptr<Entry>> entries;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, e] : containers_) entries.push_back(e);
  }
  for (const auto& e : entries) {
    Resources r;
    {
      absl::MutexLock lock(&e->res_mu);
      if (e->oom_killed) continue;
      r = e->resources;
    }
    if (!r.memory_limit || *r.memory_limit <= 0) continue;
    auto st = e->container->State("");
    if (!st.ok() || st->status != process::Status::kRunning) continue;
    auto stats = e->container->Stats();
    if (!stats.ok() || !OverMemoryLimit(r, stats->memory_usage)) continue;
    {
      absl::MutexLock lock(&e->res_mu);
      e->oom_killed = true;
    }
    log::Warnf("%s: memory usage %d bytes is over its limit of %d bytes: OOM-killing it", e->info.id,
               stats->memory_usage, *r.memory_limit);
    // TaskOOM before the kill, so it reaches containerd before the TaskExit that follows (reason OOMKilled).
    containerd::events::TaskOOM oom;
    oom.set_container_id(e->info.id);
    events_->Publish(oom);
    if (absl::Status k = e->container->Kill("", SIGKILL, /*all=*/true); !k.ok()) {
      log::Warnf("%s: OOM kill: %s", e->info.id, k.ToString());
    }
  }
}

const std::map<std::string, Service::Method>& Service::Methods() {
  static const auto* methods = new std::map<std::string, Method>{
      {"Create", &Service::Create},
      {"Start", &Service::Start},
      {"Delete", &Service::Delete},
      {"Exec", &Service::Exec},
      {"State", &Service::State},
      {"Kill", &Service::Kill},
      {"Wait", &Service::Wait},
      {"Pids", &Service::Pids},
      {"Pause", &Service::Pause},
      {"Resume", &Service::Resume},
      {"ResizePty", &Service::ResizePty},
      {"CloseIO", &Service::CloseIO},
      {"Update", &Service::Update},
      {"Stats", &Service::Stats},
      {"Connect", &Service::Connect},
      {"Shutdown", &Service::Shutdown},
      {"Checkpoint", &Service::Checkpoint},
  };
  return *methods;
}

void Service::Register(ttrpc::Server* server) {
  for (const auto& entry : Methods()) {
    const std::string name = entry.first;
    server->Register(kServiceName, name, [this, name](const ttrpc::CallContext&, const std::string& payload) {
      return Call(name, payload);
    });
  }
}

size_t Service::ContainerCount() {
  absl::MutexLock lock(&mu_);
  return containers_.size();
}

absl::StatusOr<std::string> Service::Call(const std::string& method, const std::string& payload) {
  auto it = Methods().find(method);
  if (it == Methods().end())
    return absl::UnimplementedError(absl::StrCat("method ", method, " not implemented"));
  log::Debugf("%s request (%d bytes)", method, payload.size());
  const absl::Time t0 = absl::Now();
  absl::StatusOr<std::string> r = (this->*(it->second))(payload);
  // Per-request time at debug level: how tests/bench/cri_lifecycle.py's steps split inside the shim.
  log::Debugf("%s done in %.1f ms", method, absl::ToDoubleMilliseconds(absl::Now() - t0));
  if (!r.ok()) log::Warnf("%s: %s", method, r.status().ToString());
  return r;
}

absl::StatusOr<std::string> Service::Checkpoint(const std::string&) {
  return absl::UnimplementedError("Checkpoint: gVisor checkpoint/restore is not supported by gvshim");
}

absl::StatusOr<std::shared_ptr<Service::Entry>> Service::Get(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = containers_.find(id);
  if (it == containers_.end()) return absl::NotFoundError(absl::StrCat("container ", id, " not found"));
  return it->second;
}

absl::StatusOr<config::Config> Service::LoadConfig(const std::string& override_path) {
  std::string path = override_path;
  if (path.empty()) path = options_.config_path;
  if (path.empty()) {
    if (const char* env = std::getenv("GVSHIM_CONFIG"); env != nullptr && *env != '\0') path = env;
  }
  if (path.empty()) return config::Load(config::kDefaultPath, /*explicit_path=*/false);
  return config::Load(path, /*explicit_path=*/true);
}

absl::StatusOr<std::string> Service::Create(const std::string& payload) {
  saw_create_.store(true, std::memory_order_release);
  ASSIGN_OR_RETURN(auto req, Decode<tv2::CreateTaskRequest>(payload, "Create"));
  if (req.id().empty()) return absl::InvalidArgumentError("Create: empty container id");
  if (!req.checkpoint().empty()) {
    return absl::UnimplementedError("Create: restoring from a checkpoint is not supported by gvshim");
  }
  {
    absl::MutexLock lock(&mu_);
    if (containers_.contains(req.id()) || creating_.contains(req.id())) {
      return absl::AlreadyExistsError("container " + req.id() + " already exists");
    }
    creating_.insert(req.id());
  }
  // Until it is registered (or failed), the id stays reserved; no lock is held meanwhile.
  bool registered = false;
  auto release = absl::MakeCleanup([&] {
    if (registered) return;
    absl::MutexLock lock(&mu_);
    creating_.erase(req.id());
  });
  std::string config_override;
  if (req.has_options() && req.options().type_url().find("runtimeoptions.v1.Options") != std::string::npos) {
    runtimeoptions::v1::Options opts;
    if (!opts.ParseFromString(req.options().value())) {
      return absl::InvalidArgumentError("Create: runtime options are not a valid runtimeoptions.v1.Options");
    }
    config_override = opts.config_path();
  }
  ASSIGN_OR_RETURN(config::Config cfg, LoadConfig(config_override));
  if (log::Level level;
      log::ParseLevel(cfg.shim.log_level, &level) && log::GetLevel() != log::Level::kDebug) {
    log::SetLevel(level);
  }

  runsc::GlobalOptions g = RunscOptions(cfg, options_.ns);
  const std::string wrap = ResolveWrap(cfg, SelfExe());
  ASSIGN_OR_RETURN(PreparedSpec prep, PrepareSpec(req.bundle(), cfg, &profiles_, g.root, wrap));
  if (!prep.network.empty()) g.network = prep.network;
  g.hide_net_sysctls = prep.hide_net_sysctls;

  g.log_path = req.bundle() + "/runsc.log";
  g.oci_seccomp = prep.oci_seccomp;
  RETURN_IF_ERROR(WriteDeleteInfo(req.bundle(), g));

  auto entry = std::make_shared<Entry>();
  entry->runsc = options_.runsc_factory(g);
  entry->info.id = req.id();
  entry->info.ns = options_.ns;
  entry->info.bundle = req.bundle();
  entry->info.rootfs = prep.rootfs;
  entry->info.sandbox_id = prep.sandbox_id.empty() ? req.id() : prep.sandbox_id;
  entry->info.creates_sandbox = prep.creates_sandbox;
  entry->info.annotations = prep.annotations;
  entry->info.runsc = g;
  entry->info.config = std::make_shared<const config::Config>(cfg);
  entry->wrap = prep.wrap;
  entry->exec_seccomp_bpf = prep.exec_seccomp_bpf;
  entry->exec_needs_wrap = prep.exec_needs_wrap;
  entry->policy = prep.policy;
  entry->privileged = prep.privileged;
  {
    absl::MutexLock lock(&entry->res_mu);
    entry->resources = prep.resources;
  }

  process::ContainerOptions co;
  co.id = req.id();
  co.ns = options_.ns;
  co.bundle = req.bundle();
  for (const auto& m : req.rootfs()) {
    co.rootfs.push_back({m.type(), m.source(), {m.options().begin(), m.options().end()}});
  }
  co.stdio = {req.stdin(), req.stdout(), req.stderr(), req.terminal()};
  co.creates_sandbox = prep.creates_sandbox;
  if (prep.creates_sandbox) co.oom_counter_file = prep.oom_counter_file;
  ASSIGN_OR_RETURN(entry->container,
                   process::Container::Create({entry->runsc.get(), events_, options_.reaper}, std::move(co)));
  uint32_t pid = entry->container->init_pid();
  {
    absl::MutexLock lock(&mu_);
    creating_.erase(req.id());
    containers_[req.id()] = entry;
    registered = true;
  }
  containerd::events::TaskCreate ev;
  ev.set_container_id(req.id());
  ev.set_bundle(req.bundle());
  *ev.mutable_rootfs() = req.rootfs();
  ev.mutable_io()->set_stdin(req.stdin());
  ev.mutable_io()->set_stdout(req.stdout());
  ev.mutable_io()->set_stderr(req.stderr());
  ev.mutable_io()->set_terminal(req.terminal());
  ev.set_pid(pid);
  events_->Publish(ev);
  if (prep.resources.memory_limit.value_or(0) > 0) EnsureMemoryWatch(cfg.shim.memory_check_ms);
  log::Infof("created %s (pid %d, %s)", req.id(), pid,
             prep.creates_sandbox ? "new sandbox" : "joins sandbox");
  tv2::CreateTaskResponse resp;
  resp.set_pid(pid);
  return resp.SerializeAsString();
}

absl::StatusOr<std::string> Service::Start(const std::string& payload) {
  ASSIGN_OR_RETURN(auto req, Decode<tv2::StartRequest>(payload, "Start"));
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  ASSIGN_OR_RETURN(uint32_t pid, e->container->Start(req.exec_id()));
  if (req.exec_id().empty() && options_.on_started) options_.on_started(e->info);
  tv2::StartResponse resp;
  resp.set_pid(pid);
  return resp.SerializeAsString();
}

absl::StatusOr<std::string> Service::Delete(const std::string& payload) {
  ASSIGN_OR_RETURN(auto req, Decode<tv2::DeleteRequest>(payload, "Delete"));
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  ASSIGN_OR_RETURN(process::ProcessState st, e->container->Delete(req.exec_id()));
  tv2::DeleteResponse resp;
  resp.set_pid(st.pid);
  resp.set_exit_status(st.exit.status);
  *resp.mutable_exited_at() = ToProto(st.exit.at);
  if (req.exec_id().empty()) {
    {
      absl::MutexLock lock(&mu_);
      containers_.erase(req.id());
    }
    if (options_.on_deleted) options_.on_deleted(req.id());
    containerd::events::TaskDelete ev;
    ev.set_container_id(req.id());
    ev.set_pid(st.pid);
    ev.set_exit_status(st.exit.status);
    *ev.mutable_exited_at() = ToProto(st.exit.at);
    ev.set_id(req.id());
    events_->Publish(ev);
  }
  return resp.SerializeAsString();
}

absl::StatusOr<std::string> Service::Exec(const std::string& payload) {
  ASSIGN_OR_RETURN(auto req, Decode<tv2::ExecProcessRequest>(payload, "Exec"));
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  // containerd sends the OCI Process as JSON inside the Any.
  // containerd builds the exec's process from its own copy of the spec, which the shim's hardening never saw:
  // harden it like the init, and run it through gvshim-wrap for a terminal or the container's seccomp
  // profile.
  auto process = nlohmann::json::parse(req.spec().value(), nullptr, /*allow_exceptions=*/false);
  if (process.is_discarded() || !process.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Exec ", req.exec_id(), ": process spec is not a JSON object"));
  }
  auto hardened = oci::HardenProcess(process, e->policy, e->privileged);
  if (!hardened.ok()) return Annotate(hardened.status(), absl::StrCat("Exec ", req.exec_id()));
  if (e->exec_needs_wrap) {
    return absl::FailedPreconditionError(absl::StrCat(
        "Exec ", req.exec_id(), " in ", req.id(),
        ": the container has a seccomp profile that runsc applies to "
        "its init only, and gvshim-wrap (which applies it to execs) is not available ([shim] wrap)"));
  }
  if (e->wrap) {
    auto wrapped = WrapExecProcess(*hardened, e->exec_seccomp_bpf);
    if (!wrapped.ok()) return Annotate(wrapped.status(), absl::StrCat("Exec ", req.exec_id()));
    *hardened = std::move(*wrapped);
  }
  const std::string json = hardened->dump();
  RETURN_IF_ERROR(
      e->container->AddExec(req.exec_id(), {req.stdin(), req.stdout(), req.stderr(), req.terminal()}, json));
  return Empty();
}

absl::StatusOr<std::string> Service::State(const std::string& payload) {
  ASSIGN_OR_RETURN(auto req, Decode<tv2::StateRequest>(payload, "State"));
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  ASSIGN_OR_RETURN(process::ProcessState st, e->container->State(req.exec_id()));
  tv2::StateResponse resp;
  resp.set_id(req.exec_id().empty() ? req.id() : req.exec_id());
  resp.set_bundle(e->container->bundle());
  resp.set_pid(st.pid);
  resp.set_status(ToProto(st.status));
  resp.set_stdin(st.stdio.stdin_path);
  resp.set_stdout(st.stdio.stdout_path);
  resp.set_stderr(st.stdio.stderr_path);
  resp.set_terminal(st.stdio.terminal);
  resp.set_exit_status(st.exit.status);
  *resp.mutable_exited_at() = ToProto(st.exit.at);
  resp.set_exec_id(req.exec_id());
  return resp.SerializeAsString();
}

absl::StatusOr<std::string> Service::Kill(const std::string& payload) {
  ASSIGN_OR_RETURN(auto req, Decode<tv2::KillRequest>(payload, "Kill"));
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  if (req.signal() == 0 || req.signal() > 64) {
    return absl::InvalidArgumentError(absl::StrCat("Kill: invalid signal ", req.signal()));
  }
  RETURN_IF_ERROR(e->container->Kill(req.exec_id(), static_cast<int>(req.signal()), req.all()));
  return Empty();
}

absl::StatusOr<std::string> Service::Wait(const std::string& payload) {
  ASSIGN_OR_RETURN(auto req, Decode<tv2::WaitRequest>(payload, "Wait"));
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  ASSIGN_OR_RETURN(process::ExitInfo exit, e->container->Wait(req.exec_id()));
  tv2::WaitResponse resp;
  resp.set_exit_status(exit.status);
  *resp.mutable_exited_at() = ToProto(exit.at);
  return resp.SerializeAsString();
}

absl::StatusOr<std::string> Service::Pids(const std::string& payload) {
  ASSIGN_OR_RETURN(auto req, Decode<tv2::PidsRequest>(payload, "Pids"));
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  ASSIGN_OR_RETURN(auto procs, e->container->Pids());
  tv2::PidsResponse resp;
  for (const auto& p : procs) resp.add_processes()->set_pid(static_cast<uint32_t>(p.pid));
  return resp.SerializeAsString();
}

absl::StatusOr<std::string> Service::Pause(const std::string& payload) {
  ASSIGN_OR_RETURN(auto req, Decode<tv2::PauseRequest>(payload, "Pause"));
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  RETURN_IF_ERROR(e->container->Pause());
  return Empty();
}

absl::StatusOr<std::string> Service::Resume(const std::string& payload) {
  ASSIGN_OR_RETURN(auto req, Decode<tv2::ResumeRequest>(payload, "Resume"));
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  RETURN_IF_ERROR(e->container->Resume());
  return Empty();
}

absl::StatusOr<std::string> Service::ResizePty(const std::string& payload) {
  ASSIGN_OR_RETURN(auto req, Decode<tv2::ResizePtyRequest>(payload, "ResizePty"));
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  RETURN_IF_ERROR(e->container->ResizePty(req.exec_id(), req.width(), req.height()));
  return Empty();
}

absl::StatusOr<std::string> Service::CloseIO(const std::string& payload) {
  ASSIGN_OR_RETURN(auto req, Decode<tv2::CloseIORequest>(payload, "CloseIO"));
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  if (req.stdin()) RETURN_IF_ERROR(e->container->CloseIO(req.exec_id()));
  return Empty();
}

absl::StatusOr<std::string> Service::Update(const std::string& payload) {
  ASSIGN_OR_RETURN(auto req, Decode<tv2::UpdateTaskRequest>(payload, "Update"));
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  // containerd sends the OCI LinuxResources as JSON inside the Any. runsc has no `update`: the new limits are
  // kept here (Stats reports the memory limit, the memory check enforces it); see shim/task/resources.h.
  auto j = nlohmann::json::parse(req.resources().value(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat("Update ", req.id(), ": resources are not valid JSON"));
  }
  auto update = ParseLinuxResources(j, absl::StrCat("Update ", req.id(), ": resources"));
  if (!update.ok()) return update.status();
  int64_t new_limit = 0;
  {
    absl::MutexLock lock(&e->res_mu);
    e->resources = Merge(e->resources, *update);
    new_limit = e->resources.memory_limit.value_or(0);
    if (update->memory_limit) e->oom_killed = false;
  }
  if (new_limit > 0) EnsureMemoryWatch(e->info.config ? e->info.config->shim.memory_check_ms : 1000);
  log::Infof("updated %s: memory limit %d bytes", req.id(), new_limit);
  return Empty();
}

absl::StatusOr<std::string> Service::Stats(const std::string& payload) {
  ASSIGN_OR_RETURN(auto req, Decode<tv2::StatsRequest>(payload, "Stats"));
  ASSIGN_OR_RETURN(auto e, Get(req.id()));
  ASSIGN_OR_RETURN(runsc::Stats s, e->container->Stats());
  io::containerd::cgroups::v1::Metrics m;
  FillMetrics(s, &m);
  {
    absl::MutexLock lock(&e->res_mu);
    m.mutable_memory()->mutable_usage()->set_limit(
        ReportedMemoryLimit(e->resources, s.memory_usage, s.memory_limit));
  }
  tv2::StatsResponse resp;
  resp.mutable_stats()->set_type_url("io.containerd.cgroups.v1.Metrics");
  resp.mutable_stats()->set_value(m.SerializeAsString());
  return resp.SerializeAsString();
}

absl::StatusOr<std::string> Service::Connect(const std::string& payload) {
  ASSIGN_OR_RETURN(auto req, Decode<tv2::ConnectRequest>(payload, "Connect"));
  tv2::ConnectResponse resp;
  resp.set_shim_pid(static_cast<uint32_t>(::getpid()));
  resp.set_version(kVersion);
  if (auto e = Get(req.id()); e.ok()) resp.set_task_pid((*e)->container->init_pid());
  return resp.SerializeAsString();
}

absl::StatusOr<std::string> Service::Shutdown(const std::string& payload) {
  ASSIGN_OR_RETURN(auto req, Decode<tv2::ShutdownRequest>(payload, "Shutdown"));
  bool empty;
  {
    absl::MutexLock lock(&mu_);
    empty = containers_.empty() && creating_.empty();
  }
  // The shim serves every container of a pod: it only goes away with the last one.
  if ((empty || req.now()) && options_.request_shutdown) options_.request_shutdown();
  return Empty();
}

}  // namespace gvshim::task
