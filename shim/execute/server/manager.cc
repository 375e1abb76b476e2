#include "shim/execute/server/manager.h"

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "nlohmann/json.hpp"
#include "shim/base/log.h"
#include "shim/base/status.h"
#include "shim/execute/common/config.h"
#include "shim/execute/common/helpers.h"
#include "shim/execute/common/interpreter.h"
#include "shim/execute/server/runner.h"
#include "shim/execute/server/service.h"
#include "shim/sys/file.h"
#include "shim/sys/socket.h"

namespace gvshim::execute {
namespace {

// mkdir -p; the last component is made (or forced to) mode 0700: only root may reach the sockets.
absl::Status MakePrivateDir(const std::string& dir) {
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    std::string part = dir.substr(0, pos);
    if (::mkdir(part.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoStatus(errno, "mkdir " + part);
  }
  if (::chmod(dir.c_str(), 0700) != 0) return ErrnoStatus(errno, "chmod " + dir);
  return absl::OkStatus();
}

struct ContainerEntry {
  std::string id;
  std::string bundle;
  runsc::GlobalOptions runsc;
  std::string exec_container, exec_error;  // where its runners run (wire.h)
  std::optional<Interpreter> python, node;

  const std::optional<Interpreter>& For(Language l) const { return l == Language::kPython ? python : node; }
};

}  // namespace

// The Execute service of one sandbox: its containers, runners and (once opted in) its gRPC server.
class Sandbox : public Backend {
 public:
  Sandbox(std::string ns, std::string sandbox_id, ExecuteConfig cfg, Manager::RunscFactory factory,
          sys::ProcessWatcher* reaper, pid_t shim_pid)
      : ns_(std::move(ns)),
        sandbox_id_(std::move(sandbox_id)),
        cfg_(std::move(cfg)),
        factory_(std::move(factory)),
        reaper_(reaper),
        shim_pid_(shim_pid),
        key_(SocketKey(ns_, sandbox_id_)),
        socket_path_(absl::StrCat(cfg_.socket_dir, "/", key_, ".sock")),
        json_path_(absl::StrCat(cfg_.socket_dir, "/", key_, ".json")) {}
  ~Sandbox() override { Stop(); }

  const ExecuteConfig& cfg() const { return cfg_; }
  const std::string& socket_path() const { return socket_path_; }

  void AddContainer(ContainerEntry e, const std::map<std::string, std::string>& annotations) {
    absl::MutexLock lock(&mu_);
    if (pod_namespace_.empty() && annotations.count(kPodNamespaceAnnotation)) {
      pod_namespace_ = annotations.at(kPodNamespaceAnnotation);
    }
    if (pod_name_.empty() && annotations.count(kPodNameAnnotation))
      pod_name_ = annotations.at(kPodNameAnnotation);
    if (OptsIn(annotations) || !cfg_.require_annotation) opted_in_ = true;
    // The pod's dev.gvshim.* annotations go into the record (a gateway selects pool pods by them).
    for (const auto& [k, v] : annotations) {
      if (absl::StartsWith(k, kAnnotationPrefix)) pod_annotations_.emplace(k, v);
    }
    for (auto& c : containers_) {
      if (c.id == e.id) {
        c = std::move(e);
        return;
      }
    }
    containers_.push_back(std::move(e));
  }

  bool opted_in() {
    absl::MutexLock lock(&mu_);
    return opted_in_;
  }
  bool serving() {
    absl::MutexLock lock(&serve_mu_);
    return server_ != nullptr;
  }

  // Starts the gRPC server if it is not running, and (re)writes the JSON file.
  absl::Status EnsureServing() {
    absl::MutexLock lock(&serve_mu_);
    if (stopped_) return absl::OkStatus();
    if (server_ == nullptr) {
      RETURN_IF_ERROR(MakePrivateDir(cfg_.socket_dir));
      auto service = std::make_unique<Service>(cfg_, this);
      std::unique_ptr<grpc::Server> server;
      // Under sys::ClaimUnixPath's lock: a socket left by a server that died is replaced, a live one is not.
      auto build = [&]() -> absl::Status {
        grpc::ServerBuilder b;
        b.AddListeningPort(absl::StrCat("unix:", socket_path_), grpc::InsecureServerCredentials());
        b.RegisterService(service.get());
        // The shim's footprint matters: one completion queue and at most two polling threads. Handler threads
        // block while a snippet queues or runs, so the quota allows one per admitted call plus a few spares
        // for Health/ListRuntimes and for answering RESOURCE_EXHAUSTED.
        b.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::NUM_CQS, 1);
        b.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 1);
        b.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 2);
        grpc::ResourceQuota quota(absl::StrCat("gvshim-execute-", key_));
        quota.SetMaxThreads(static_cast<int>(cfg_.max_concurrent + cfg_.max_queue + 4));
        b.SetResourceQuota(quota);
        b.SetMaxReceiveMessageSize(
            static_cast<int>(std::min<uint64_t>(2 * cfg_.max_code_bytes + (20 << 20), INT32_MAX)));
        b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
        server = b.BuildAndStart();
        if (server == nullptr)
          return absl::InternalError(absl::StrCat("start gRPC server on unix:", socket_path_));
        if (::chmod(socket_path_.c_str(), 0600) != 0) {
          absl::Status err = ErrnoStatus(errno, "chmod " + socket_path_);
          server->Shutdown();
          server.reset();
          return err;
        }
        return absl::OkStatus();
      };
      ASSIGN_OR_RETURN(const bool claimed, sys::ClaimUnixPath(socket_path_, build));
      if (!claimed) {
        return absl::FailedPreconditionError(
            absl::StrCat(socket_path_, ": another Execute server is serving this sandbox there"));
      }
      service_ = std::move(service);
      server_ = std::move(server);
      log::Infof("execute: serving sandbox %s/%s on %s", ns_, sandbox_id_, socket_path_);
    }
    return WriteJson();
  }

  absl::Status WriteJson() ABSL_EXCLUSIVE_LOCKS_REQUIRED(serve_mu_) {
    nlohmann::json j;
    {
      absl::MutexLock lock(&mu_);
      nlohmann::json containers = nlohmann::json::array();
      for (const auto& c : containers_) {
        containers.push_back({{"id", c.id}, {"python", c.python.has_value()}, {"node", c.node.has_value()}});
      }
      j = {{"namespace", ns_},       {"sandbox_id", sandbox_id_}, {"containers", std::move(containers)},
           {"socket", socket_path_}, {"shim_pid", shim_pid_},     {"server_pid", ::getpid()}};
      if (!pod_namespace_.empty()) j["pod_namespace"] = pod_namespace_;
      if (!pod_name_.empty()) j["pod_name"] = pod_name_;
      j["annotations"] = pod_annotations_;
    }
    return sys::WriteFileAtomic(json_path_, j.dump(2) + "\n", 0600);
  }

  absl::Status RefreshJson() {
    absl::MutexLock lock(&serve_mu_);
    if (server_ == nullptr || stopped_) return absl::OkStatus();
    return WriteJson();
  }

  // Eager start: the default runner of each language starts now, in the background.
  // Eager start: both runners of container `id` start now; `done` runs once they are ready or failed (the
  // shim waits for that before it reports the container started, so the first request finds them warm).
  void Prestart(const std::string& id, std::function<void()> done) {
    absl::MutexLock lock(&serve_mu_);
    std::vector<std::shared_ptr<Runner>> runners;
    if (!stopped_) {
      for (Language l : {Language::kPython, Language::kJavaScript}) {
        auto r = RunnerFor(l, id);
        if (!r.ok()) continue;
        (*r)->Prestart();
        runners.push_back(*r);
      }
    }
    prestart_.emplace_back([runners, done = std::move(done)] {
      const absl::Time deadline = absl::Now() + absl::Seconds(60);
      for (const auto& r : runners) (void)r->EnsureReady(deadline);
      if (done) done();
    });
  }

  // Returns true when the sandbox has no containers left (or `id` was the sandbox container).
  bool RemoveContainer(const std::string& id) {
    std::vector<std::shared_ptr<Runner>> stopping;
    bool last;
    {
      absl::MutexLock lock(&mu_);
      std::erase_if(containers_, [&](const ContainerEntry& c) { return c.id == id; });
      for (auto it = runners_.begin(); it != runners_.end();) {
        if (it->first.first == id) {
          stopping.push_back(std::move(it->second));
          it = runners_.erase(it);
        } else {
          ++it;
        }
      }
      last = containers_.empty() || id == sandbox_id_;
    }
    for (auto& r : stopping) r->Stop();
    return last;
  }

  void Stop() {
    absl::MutexLock lock(&serve_mu_);
    if (stopped_) return;
    stopped_ = true;
    if (service_ != nullptr) service_->Close();
    std::vector<std::thread> prestart = std::move(prestart_);
    std::map<std::pair<std::string, Language>, std::shared_ptr<Runner>> runners;
    {
      absl::MutexLock l(&mu_);
      closed_ = true;
      runners.swap(runners_);
    }
    // Stopping the runners answers their running jobs, so the handlers return before the server waits; it
    // also ends the eager start's wait.
    for (auto& [k, r] : runners) r->Stop();
    for (auto& t : prestart) {
      if (t.joinable()) t.join();
    }
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
      server_->Wait();
      server_.reset();
      ::unlink(socket_path_.c_str());
      ::unlink(json_path_.c_str());
      log::Infof("execute: stopped serving sandbox %s/%s", ns_, sandbox_id_);
    }
    service_.reset();
  }

  absl::StatusOr<std::shared_ptr<Runner>> RunnerFor(Language lang, const std::string& target) override {
    absl::MutexLock lock(&mu_);
    if (closed_) return absl::UnavailableError("the execute service of this pod is shutting down");
    const std::string& interp_name = lang == Language::kPython ? cfg_.python : cfg_.node;
    const ContainerEntry* chosen = nullptr;
    if (!target.empty()) {
      for (const auto& c : containers_) {
        if (c.id == target) chosen = &c;
      }
      if (chosen == nullptr) {
        return absl::NotFoundError(
            absl::StrCat("target_container ", target, " is not a running container of this pod"));
      }
      if (!chosen->For(lang).has_value()) {
        return absl::FailedPreconditionError(absl::StrCat("container ", target, " has no ", interp_name));
      }
    } else {
      for (const auto& c : containers_) {
        if (c.For(lang).has_value()) {
          chosen = &c;
          break;
        }
      }
      if (chosen == nullptr) {
        return absl::FailedPreconditionError(absl::StrCat("no container of this pod has ", interp_name));
      }
    }
    if (chosen->exec_container.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "container ", chosen->id, " has no execute container: ",
          chosen->exec_error.empty() ? std::string("the shim did not make one") : chosen->exec_error));
    }
    auto& slot = runners_[{chosen->id, lang}];
    if (slot == nullptr) {
      RunnerOptions o;
      o.container_id = chosen->exec_container;
      o.served = chosen->id;
      o.language = lang;
      o.interpreter = chosen->For(lang)->path;
      o.bundle = chosen->bundle;
      o.runner_args = RunnerArgs(lang, o.interpreter);
      o.allow_weak_isolation = cfg_.allow_weak_isolation;
      slot = std::make_shared<Runner>(std::move(o), factory_(chosen->runsc), reaper_);
    }
    return slot;
  }

  std::vector<RuntimeEntry> Runtimes() override {
    std::vector<std::pair<std::pair<std::string, Language>, std::shared_ptr<Runner>>> list;
    {
      absl::MutexLock lock(&mu_);
      std::set<std::pair<std::string, Language>> seen;
      for (Language l : {Language::kPython, Language::kJavaScript}) {
        for (const auto& c : containers_) {
          if (!c.For(l).has_value()) continue;
          auto it = runners_.find({c.id, l});
          list.push_back({{c.id, l}, it == runners_.end() ? nullptr : it->second});
          seen.insert({c.id, l});
          break;
        }
      }
      for (const auto& [k, r] : runners_) {
        if (!seen.count(k)) list.push_back({k, r});
      }
    }
    std::vector<RuntimeEntry> out;
    for (auto& [k, r] : list) {
      RuntimeEntry e;
      e.container = k.first;
      e.language = k.second;
      if (r != nullptr) e.status = r->Status();
      out.push_back(std::move(e));
    }
    return out;
  }

 private:
  std::vector<std::string> RunnerArgs(Language lang, const std::string& interpreter) const {
    const Limits& d = cfg_.default_limits;
    std::vector<std::string> a = {"--max-jobs", absl::StrCat(cfg_.max_concurrent)};
    // --default-wall-timeout-ms N, ...: the only defaults they know
    for (const LimitField& f : kLimitFields) {
      a.push_back(absl::StrCat("--default-", absl::StrReplaceAll(f.name, {{"_", "-"}})));
      a.push_back(absl::StrCat(d.*f.member));
    }
    // Every job (and every worker or child waiting for one) has a uid of its own from a pool; the languages'
    // pools are disjoint. One running, one waiting in a worker, one being torn down, per concurrent job.
    const uint32_t pool = std::max<uint32_t>(8, cfg_.max_concurrent * 3);
    const char* uid = lang == Language::kPython ? "100000" : "200000";
    a.insert(a.end(), {"--uid", uid, "--gid", uid, "--uid-count", absl::StrCat(pool)});
    a.insert(a.end(), {"--helpers", kHelpersMountPoint, "--workspace", kWorkspace, "--tmpfs-bytes",
                       absl::StrCat(cfg_.tmpfs_bytes)});
    if (cfg_.allow_weak_isolation) a.push_back("--allow-weak-isolation");
    if (lang == Language::kPython) {
      a.insert(a.end(), {"--prefork", absl::StrCat(std::max<uint32_t>(1, cfg_.max_concurrent))});
    } else {
      a.insert(a.end(), {"--pool-size", absl::StrCat(std::max<uint32_t>(1, cfg_.max_concurrent)), "--node",
                         interpreter});
    }
    a.insert(a.end(), cfg_.runner_args.begin(), cfg_.runner_args.end());
    const auto& own = lang == Language::kPython ? cfg_.python_args : cfg_.node_args;
    a.insert(a.end(), own.begin(), own.end());
    return a;
  }

  const std::string ns_, sandbox_id_;
  const ExecuteConfig cfg_;
  const Manager::RunscFactory factory_;
  sys::ProcessWatcher* const reaper_;  // not owned
  const pid_t shim_pid_;
  const std::string key_, socket_path_, json_path_;

  absl::Mutex serve_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // serialises EnsureServing/Stop
  std::unique_ptr<Service> service_ ABSL_GUARDED_BY(serve_mu_);
  std::unique_ptr<grpc::Server> server_ ABSL_GUARDED_BY(serve_mu_);
  std::vector<std::thread> prestart_ ABSL_GUARDED_BY(serve_mu_);  // eager starts waiting for readiness
  bool stopped_ ABSL_GUARDED_BY(serve_mu_) = false;

  absl::Mutex mu_;
  std::vector<ContainerEntry> containers_ ABSL_GUARDED_BY(mu_);  // in start order
  std::map<std::pair<std::string, Language>, std::shared_ptr<Runner>> runners_ ABSL_GUARDED_BY(mu_);
  std::string pod_namespace_ ABSL_GUARDED_BY(mu_), pod_name_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> pod_annotations_ ABSL_GUARDED_BY(mu_);  // dev.gvshim.*
  bool opted_in_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

Manager::Manager(RunscFactory runsc_factory, sys::ProcessWatcher* reaper, pid_t shim_pid,
                 WarmCallback on_warm)
    : runsc_factory_(std::move(runsc_factory)),
      reaper_(reaper),
      shim_pid_(shim_pid != 0 ? shim_pid : ::getpid()),
      on_warm_(std::move(on_warm)) {}

Manager::~Manager() { Shutdown(); }

void Manager::OnContainerStarted(const ContainerInfo& info, const ExecuteConfig& config) {
  if (!config.enabled) return;
  const std::string key = absl::StrCat(info.ns, "/", info.sandbox_id);
  std::shared_ptr<Sandbox> sb;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    auto& slot = sandboxes_[key];
    if (slot == nullptr) {
      slot = std::make_shared<Sandbox>(info.ns, info.sandbox_id, config, runsc_factory_, reaper_, shim_pid_);
    }
    sb = slot;
    container_sandbox_[info.id] = key;
  }
  ContainerEntry e;
  e.id = info.id;
  e.bundle = info.bundle;
  e.runsc = info.runsc;
  e.exec_container = info.exec_container;
  e.exec_error = info.exec_error;
  if (!info.rootfs.empty()) {
    e.python = FindInterpreter(info.rootfs, sb->cfg().python);
    e.node = FindInterpreter(info.rootfs, sb->cfg().node);
  }
  log::Debugf("execute: container %s of sandbox %s: python %s, node %s", info.id, info.sandbox_id,
              e.python ? e.python->path : "-", e.node ? e.node->path : "-");
  sb->AddContainer(std::move(e), info.annotations);
  auto warm = [this, id = info.id] {
    if (on_warm_) on_warm_(id);
  };
  if (!sb->opted_in()) return warm();
  if (absl::Status st = sb->EnsureServing(); !st.ok()) {
    log::Warnf("execute: sandbox %s: %s", info.sandbox_id, st.message());
    return warm();
  }
  if (sb->cfg().start == StartMode::kEager) {
    sb->Prestart(info.id, warm);
  } else {
    warm();
  }
}

void Manager::OnContainerDeleted(const std::string& id) {
  std::shared_ptr<Sandbox> sb;
  std::string key;
  {
    absl::MutexLock lock(&mu_);
    auto it = container_sandbox_.find(id);
    if (it == container_sandbox_.end()) return;
    key = it->second;
    container_sandbox_.erase(it);
    auto s = sandboxes_.find(key);
    if (s == sandboxes_.end()) return;
    sb = s->second;
  }
  if (!sb->RemoveContainer(id)) {
    if (absl::Status st = sb->RefreshJson(); !st.ok()) log::Warnf("execute: %s", st.message());
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    sandboxes_.erase(key);
    std::erase_if(container_sandbox_, [&](const auto& kv) { return kv.second == key; });
  }
  sb->Stop();
}

void Manager::Shutdown() {
  std::map<std::string, std::shared_ptr<Sandbox>> all;
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    all.swap(sandboxes_);
    container_sandbox_.clear();
  }
  for (auto& [k, sb] : all) sb->Stop();
}

std::optional<std::string> Manager::SocketPath(const std::string& ns, const std::string& sandbox_id) {
  std::shared_ptr<Sandbox> sb;
  {
    absl::MutexLock lock(&mu_);
    auto it = sandboxes_.find(absl::StrCat(ns, "/", sandbox_id));
    if (it == sandboxes_.end()) return std::nullopt;
    sb = it->second;
  }
  if (!sb->serving()) return std::nullopt;
  return sb->socket_path();
}

size_t Manager::ServingCount() {
  std::vector<std::shared_ptr<Sandbox>> all;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [k, sb] : sandboxes_) all.push_back(sb);
  }
  size_t n = 0;
  for (auto& sb : all) n += sb->serving() ? 1 : 0;
  return n;
}

}  // namespace gvshim::execute
