#include "shim/execute/supervisor/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "shim/base/log.h"
#include "shim/base/status.h"
#include "shim/execute/common/helpers.h"
#include "shim/execute/supervisor/exec_container.h"
#include "shim/sys/fd.h"
#include "shim/sys/spawn.h"

namespace gvshim::execute {

// What changes in a Pod, guarded by Supervisor::mu_. A field cannot name another object's mutex in
// ABSL_GUARDED_BY, so this is reached only through Supervisor::G(), which requires mu_ (checked by
// -Wthread-safety).
struct Supervisor::PodState {
  std::vector<ContainerInfo> containers;  // in start order
  bool opted_in = false;
  bool stopping = false;
  int restarts = 0;
  // The current server, if any.
  pid_t pid = 0;
  std::shared_ptr<absl::Notification> exited;
  absl::Time started_at;
  uint64_t next_seq = 0;  // the place of the next Outgoing in the server's input
};

struct Supervisor::Pod {
  Pod(std::string k, std::string n, std::string sid, ExecuteConfig c)
      : key(std::move(k)), ns(std::move(n)), sandbox_id(std::move(sid)), cfg(std::move(c)) {}
  // Fixed when the pod is made; read without locks.
  const std::string key, ns, sandbox_id;
  const ExecuteConfig cfg;
  // The server's input. Lock order: Supervisor::mu_ before io_mu; nothing takes mu_ while holding io_mu.
  absl::Mutex io_mu;
  uint64_t done_seq ABSL_GUARDED_BY(io_mu) = 0;  // every Outgoing before this one was written (or dropped)
  pid_t io_pid ABSL_GUARDED_BY(io_mu) = 0;       // the server to_server feeds
  sys::UniqueFd to_server ABSL_GUARDED_BY(io_mu);

 private:
  friend class Supervisor;
  PodState state_;  // only through Supervisor::G()
};

Supervisor::PodState& Supervisor::G(Pod& pod) { return pod.state_; }

namespace {

void RemoveFiles(const ExecuteConfig& cfg, const std::string& ns, const std::string& sandbox_id) {
  const std::string base = absl::StrCat(cfg.socket_dir, "/", SocketKey(ns, sandbox_id));
  ::unlink((base + ".sock").c_str());
  ::unlink((base + ".json").c_str());
}

}  // namespace

Supervisor::Supervisor(Options opts) : opts_(std::move(opts)) {}

Supervisor::~Supervisor() { Shutdown(); }

std::string Supervisor::DefaultServerPath() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) {
    std::string self(buf, static_cast<size_t>(n));
    std::string candidate = self.substr(0, self.rfind('/') + 1) + "gvshim";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "gvshim";
}

absl::StatusOr<std::string> Supervisor::MakeExecContainer(const task::ContainerLifecycle& info,
                                                          const ExecuteConfig& cfg) {
  ASSIGN_OR_RETURN(std::string helpers,
                   FindHelpersDir(cfg.helpers_dir.empty() ? opts_.default_helpers_dir : cfg.helpers_dir));
  ExecContainerParams p;
  p.rootfs = info.rootfs;
  p.sandbox_runsc_id = runsc::ContainerId(info.runsc.root, info.sandbox_id);
  p.helpers_dir = helpers;
  p.tmpfs_bytes = cfg.tmpfs_bytes;
  if (RunscNeedsMountPoints(info.runsc.binary, opts_.reaper)) {
    // This runsc cannot make mount points on a read-only root: they are made in the host's copy (empty
    // directories in the container's writable layer).
    if (absl::Status st = MakeMountPoints(info.rootfs); !st.ok()) log::Warnf("execute: %s", st.message());
  }
  auto runsc =
      opts_.runsc_factory ? opts_.runsc_factory(info.runsc) : runsc::NewRunscCli(info.runsc, opts_.reaper);
  RETURN_IF_ERROR(CreateExecContainer(*runsc, info.id, info.bundle, p));
  return ExecContainerId(info.id);
}

void Supervisor::OnContainerStarted(const task::ContainerLifecycle& info) {
  if (info.config == nullptr || info.config->execute == nullptr) return;  // [execute] absent: off
  auto cfg = ParseExecuteTable(info.config->execute.get(),
                               info.config->source.empty() ? std::string("<config>") : info.config->source);
  if (!cfg.ok()) {
    log::Warnf("execute: %s; no Execute service for %s", cfg.status().message(), info.id);
    return;
  }
  if (!cfg->enabled) return;
  // Only the annotations the server reads travel (CRI passes pod annotations of any size).
  std::map<std::string, std::string> annotations;
  for (const char* k : {kOptInAnnotation, kPodNamespaceAnnotation, kPodNameAnnotation}) {
    auto it = info.annotations.find(k);
    if (it != info.annotations.end()) annotations.emplace(k, it->second);
  }
  // And the pod's own dev.gvshim.* ones (for the discovery record), within bounds.
  for (const auto& [k, v] : info.annotations) {
    if (annotations.size() >= kMaxForwardedAnnotations) break;
    if (absl::StartsWith(k, kAnnotationPrefix) && k.size() <= 253 && v.size() <= 1024)
      annotations.emplace(k, v);
  }
  ContainerInfo c{info.id, info.ns, info.sandbox_id, info.bundle, info.rootfs, annotations, info.runsc,
                  "",      ""};
  const std::string key = absl::StrCat(info.ns, "/", info.sandbox_id);
  // A CRI pod's sandbox container (the pause container) runs no snippets.
  auto type = info.annotations.find("io.kubernetes.cri.container-type");
  const bool pod_sandbox = type != info.annotations.end() && type->second == "sandbox";
  bool opted_in;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    auto it = pods_.find(key);
    opted_in = OptsIn(info.annotations) || !cfg->require_annotation ||
               (it != pods_.end() && G(*it->second).opted_in);
  }
  if (opted_in && !pod_sandbox) {
    auto made = MakeExecContainer(info, *cfg);
    if (made.ok()) {
      c.exec_container = *made;
    } else {
      c.exec_error = std::string(made.status().message());
      log::Warnf("execute: no execute container for %s: %s", info.id, c.exec_error);
    }
  }
  bool wait_warm = false;
  Outgoing out;
  {
    absl::MutexLock lock(&mu_);
    if (!c.exec_container.empty()) exec_containers_[info.id] = {info.bundle, info.runsc};
    if (shut_down_) return;
    auto& slot = pods_[key];
    if (slot == nullptr) {
      slot = std::make_shared<Pod>(key, info.ns, info.sandbox_id, *cfg);
    }
    Pod& pod = *slot;
    PodState& g = G(pod);
    container_pod_[info.id] = key;
    auto same = [&](const ContainerInfo& e) { return e.id == c.id; };
    std::erase_if(g.containers, same);
    g.containers.push_back(c);
    if (opted_in) g.opted_in = true;
    if (!g.opted_in || g.stopping) return;
    absl::StatusOr<Outgoing> o;
    if (g.pid == 0) {
      o = SpawnLocked(slot);
    } else {
      o = QueueLocked(slot, {{{"op", "start"}, {"container", ToJson(c)}}});
    }
    if (!o.ok()) {
      log::Warnf("execute: sandbox %s: %s", pod.sandbox_id, o.status().message());
      return;
    }
    out = *std::move(o);
    wait_warm = pod.cfg.start == StartMode::kEager && !c.exec_container.empty();
  }
  if (absl::Status st = Deliver(out); !st.ok()) {
    log::Warnf("execute: sandbox %s: %s", info.sandbox_id, st.message());
    return;
  }
  if (!wait_warm) return;
  // Eager start: the container is reported started once its runners are ready, so that the first request
  // finds them warm (bounded; a runner that cannot start is reported by Execute itself).
  absl::MutexLock lock(&warm_->mu);
  auto is_warm = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(warm_->mu) { return warm_->warm.contains(info.id); };
  if (!warm_->mu.AwaitWithTimeout(absl::Condition(&is_warm), opts_.eager_wait)) {
    log::Warnf("execute: the runners of %s were not ready within %s; starting it anyway", info.id,
               absl::FormatDuration(opts_.eager_wait));
  }
  warm_->warm.erase(info.id);
}

void Supervisor::OnContainerDeleted(const std::string& id) {
  std::shared_ptr<Pod> last;
  std::optional<ExecContainer> exec;
  std::optional<Outgoing> tell;
  {
    absl::MutexLock lock(&warm_->mu);
    warm_->warm.erase(id);
  }
  {
    absl::MutexLock lock(&mu_);
    if (auto e = exec_containers_.find(id); e != exec_containers_.end()) {
      exec = std::move(e->second);
      exec_containers_.erase(e);
    }
    auto it = container_pod_.find(id);
    if (it != container_pod_.end()) {
      const std::string key = it->second;
      container_pod_.erase(it);
      auto p = pods_.find(key);
      if (p != pods_.end()) {
        Pod& pod = *p->second;
        PodState& g = G(pod);
        std::erase_if(g.containers, [&](const ContainerInfo& c) { return c.id == id; });
        if (g.containers.empty() || id == pod.sandbox_id) {
          last = p->second;
          pods_.erase(p);
          std::erase_if(container_pod_, [&](const auto& kv) { return kv.second == key; });
        } else if (g.pid != 0) {
          tell = QueueLocked(p->second, {{{"op", "delete"}, {"id", id}}});
        }
      }
    }
  }
  if (tell.has_value()) {
    if (absl::Status st = Deliver(*tell); !st.ok())
      log::Warnf("execute: sandbox %s: %s", tell->pod->sandbox_id, st.message());
  }
  // The server first (it stops the runners in the execute container), then the execute container.
  if (last != nullptr) StopPod(std::move(last));
  if (exec.has_value()) {
    auto runsc = opts_.runsc_factory ? opts_.runsc_factory(exec->runsc)
                                     : runsc::NewRunscCli(exec->runsc, opts_.reaper);
    if (absl::Status st = DeleteExecContainer(*runsc, id, exec->bundle); !st.ok()) {
      log::Warnf("execute: %s", st.message());
    }
  }
}

void Supervisor::Shutdown() {
  std::map<std::string, std::shared_ptr<Pod>> all;
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    all.swap(pods_);
    container_pod_.clear();
  }
  for (auto& [k, pod] : all) StopPod(pod);
  std::map<std::string, ExecContainer> execs;
  {
    absl::MutexLock lock(&mu_);
    execs.swap(exec_containers_);
  }
  for (auto& [id, e] : execs) {
    auto runsc =
        opts_.runsc_factory ? opts_.runsc_factory(e.runsc) : runsc::NewRunscCli(e.runsc, opts_.reaper);
    if (absl::Status st = DeleteExecContainer(*runsc, id, e.bundle); !st.ok())
      log::Warnf("execute: %s", st.message());
  }
  {
    absl::MutexLock lock(&exitq_->mu);
    exitq_->stop = true;
  }
  std::thread restarter;  // none is started after shut_down_ is set
  {
    absl::MutexLock lock(&mu_);
    restarter.swap(restarter_);
  }
  if (restarter.joinable()) restarter.join();
  std::vector<std::thread> readers;
  {
    absl::MutexLock lock(&mu_);
    readers.swap(readers_);
  }
  for (auto& t : readers) {
    if (t.joinable()) t.join();  // every server has exited: its stdout is closed
  }
}

pid_t Supervisor::ServerPid(const std::string& ns, const std::string& sandbox_id) {
  absl::MutexLock lock(&mu_);
  auto it = pods_.find(absl::StrCat(ns, "/", sandbox_id));
  return it == pods_.end() ? 0 : G(*it->second).pid;
}

absl::StatusOr<Supervisor::Outgoing> Supervisor::SpawnLocked(const std::shared_ptr<Pod>& slot) {
  if (opts_.reaper == nullptr)
    return absl::FailedPreconditionError("execute: no reaper to watch a server with");
  Pod& pod = *slot;
  PodState& g = G(pod);
  if (!restarter_.joinable()) restarter_ = std::thread([this] { RestartLoop(); });
  auto pipe = sys::MakePipe(O_CLOEXEC);
  if (!pipe.ok()) return pipe.status();
  // Our end only (the server's stays blocking): a server that stops reading cannot hold a container
  // operation.
  RETURN_IF_ERROR(sys::SetNonBlocking(pipe->write.get()));
  (void)::fcntl(pipe->write.get(), F_SETPIPE_SZ, opts_.server_pipe_bytes);  // best effort
  auto out = sys::MakePipe(O_CLOEXEC);
  if (!out.ok()) return out.status();
  sys::SpawnOptions so;
  so.argv = {pod.cfg.server.empty() ? opts_.default_server : pod.cfg.server, "execute-server"};
  so.stdin_fd = pipe->read.get();
  so.stdout_fd = out->write.get();
  so.stderr_fd = opts_.log_fd;
  // The server outlives the request thread that starts it: its lifetime is tied to its stdin instead.
  so.pdeathsig = 0;
  auto pid = sys::Spawn(so, opts_.reaper);
  if (!pid.ok())
    return absl::Status(pid.status().code(), absl::StrCat("start Execute server: ", pid.status().message()));
  pipe->read.reset();
  out->write.reset();
  // The server's answers ("warm" lines); the thread ends when the server exits.
  readers_.emplace_back([w = warm_, fd = std::make_shared<sys::UniqueFd>(std::move(out->read))] {
    std::string buf;
    char chunk[4096];
    for (;;) {
      const ssize_t n = ::read(fd->get(), chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      buf.append(chunk, static_cast<size_t>(n));
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        auto j = nlohmann::json::parse(buf.substr(0, nl), nullptr, /*allow_exceptions=*/false);
        buf.erase(0, nl + 1);
        if (j.is_object() && j.value("op", "") == "warm" && j.contains("id") && j["id"].is_string()) {
          absl::MutexLock lock(&w->mu);
          w->warm.insert(j["id"].get<std::string>());
        }
      }
    }
  });
  g.pid = *pid;
  {
    absl::MutexLock io(&pod.io_mu);
    pod.to_server = std::move(pipe->write);
    pod.io_pid = *pid;
  }
  g.exited = std::make_shared<absl::Notification>();
  g.started_at = absl::Now();
  log::Infof("execute: started server pid %d for sandbox %s/%s", *pid, pod.ns, pod.sandbox_id);
  // The callback may run right here (if the server is already gone): it takes only the exit queue's lock.
  opts_.reaper->Watch(*pid, [q = exitq_, key = pod.key, pid = *pid, exited = g.exited](int ws) {
    {
      absl::MutexLock lock(&q->mu);
      q->exits.push_back({key, pid, ws});
    }
    exited->Notify();  // last: StopPod may return (and the supervisor go away) once this is seen
  });
  SandboxHello hello{pod.ns, pod.sandbox_id, ::getpid(), opts_.log_level, pod.cfg};
  std::vector<nlohmann::json> msgs = {ToJson(hello)};
  for (const ContainerInfo& c : g.containers) msgs.push_back({{"op", "start"}, {"container", ToJson(c)}});
  return QueueLocked(slot, msgs);
}

Supervisor::Outgoing Supervisor::QueueLocked(const std::shared_ptr<Pod>& pod,
                                             const std::vector<nlohmann::json>& msgs) {
  Outgoing out;
  out.pod = pod;
  PodState& g = G(*pod);
  out.seq = g.next_seq++;
  out.pid = g.pid;
  out.exited = g.exited;
  for (const auto& m : msgs) {
    out.lines.push_back(m.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  }
  return out;
}

absl::Status Supervisor::Deliver(const Outgoing& out) {
  Pod& pod = *out.pod;
  absl::MutexLock lock(&pod.io_mu);
  // In the order mu_ gave: a pod's hello always comes before its containers, a start before its delete.
  auto turn = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(pod.io_mu) { return pod.done_seq == out.seq; };
  pod.io_mu.Await(absl::Condition(&turn));
  absl::Status st;
  if (!pod.to_server || pod.io_pid != out.pid) {
    st = absl::UnavailableError("the Execute server is gone");
  } else {
    // The pipe is non-blocking so that a server that stopped reading cannot hold a container operation for
    // long: a full pipe is waited on for at most kSendTimeout.
    const absl::Time deadline = absl::Now() + kSendTimeout;
    sys::ScopedSigpipeGuard no_sigpipe;  // a server that died gives EPIPE, not the end of the shim
    for (const std::string& line : out.lines) {
      size_t off = 0;
      while (st.ok() && off < line.size()) {
        ssize_t n = ::write(pod.to_server.get(), line.data() + off, line.size() - off);
        if (n > 0) {
          off += static_cast<size_t>(n);
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
          const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
          struct pollfd p = {pod.to_server.get(), POLLOUT, 0};
          if (left > 0 && ::poll(&p, 1, static_cast<int>(left)) >= 0) continue;
          st = absl::DeadlineExceededError("the server does not read its input");
          break;
        }
        st = ErrnoStatus(errno, "write");
      }
      if (!st.ok()) break;
    }
    if (!st.ok()) {
      // A server that does not take its input is of no use (and a partial line would corrupt the stream): it
      // is killed, and the restart gives the new one the whole pod again. (Not if it is already gone: its pid
      // may have been reaped and reused.)
      if (out.exited != nullptr && !out.exited->HasBeenNotified()) {
        (void)opts_.reaper->Signal(out.pid, SIGKILL);
      }
      pod.to_server.reset();
    }
  }
  ++pod.done_seq;  // always: the next Outgoing waits for this one
  if (st.ok()) return st;
  return absl::Status(st.code(), absl::StrCat("tell the Execute server: ", st.message()));
}

void Supervisor::StopPod(std::shared_ptr<Pod> pod) {
  pid_t pid;
  std::shared_ptr<absl::Notification> exited;
  {
    absl::MutexLock lock(&mu_);
    PodState& g = G(*pod);
    g.stopping = true;
    pid = g.pid;
    exited = g.exited;
  }
  {
    absl::MutexLock io(&pod->io_mu);
    pod->to_server.reset();  // end of input: the server stops its runners and removes its files
  }
  // Bounded: a Delete of the pod's last container waits here at most stop_timeout + 5 s.
  if (pid != 0 && !exited->WaitForNotificationWithTimeout(opts_.stop_timeout)) {
    log::Warnf("execute: server pid %d of sandbox %s did not stop in time; killing it", pid, pod->sandbox_id);
    (void)opts_.reaper->Signal(pid, SIGKILL);
    exited->WaitForNotificationWithTimeout(absl::Seconds(5));
  }
  if (pid != 0) RemoveFiles(pod->cfg, pod->ns, pod->sandbox_id);
}

void Supervisor::RestartLoop() {
  for (;;) {
    std::vector<Exit> batch;
    {
      ExitQueue& q = *exitq_;
      absl::MutexLock lock(&q.mu);
      q.mu.Await(absl::Condition(
          +[](ExitQueue* q) ABSL_EXCLUSIVE_LOCKS_REQUIRED(q->mu) { return q->stop || !q->exits.empty(); },
          &q));
      if (q.exits.empty()) return;  // stopping, nothing left to handle
      batch.swap(q.exits);
    }
    for (const Exit& e : batch) {
      std::shared_ptr<Pod> pod;
      {
        absl::MutexLock lock(&mu_);
        auto it = pods_.find(e.key);
        if (it == pods_.end() || G(*it->second).pid != e.pid) continue;
        pod = it->second;
        PodState& g = G(*pod);
        g.pid = 0;
        {
          absl::MutexLock io(&pod->io_mu);
          if (pod->io_pid == e.pid) pod->to_server.reset();
        }
        if (g.stopping || shut_down_) continue;
        log::Warnf("execute: server pid %d of sandbox %s exited unexpectedly (exit code %d)", e.pid,
                   pod->sandbox_id, sys::ExitCodeFromWaitStatus(e.wait_status));
        RemoveFiles(pod->cfg, pod->ns, pod->sandbox_id);
        // A server that ran for a while before it died starts a fresh count: only a crash loop gives up.
        if (absl::Now() - g.started_at > absl::Minutes(1)) g.restarts = 0;
        if (g.restarts >= kMaxRestarts) {
          log::Errorf("execute: sandbox %s: the Execute server died %d times; not starting it again",
                      pod->sandbox_id, g.restarts + 1);
          continue;
        }
        ++g.restarts;
      }
      {
        absl::MutexLock lock(&exitq_->mu);
        exitq_->mu.AwaitWithTimeout(absl::Condition(&exitq_->stop), opts_.restart_delay);
        if (exitq_->stop) return;
      }
      absl::StatusOr<Outgoing> out;
      {
        absl::MutexLock lock(&mu_);
        if (G(*pod).stopping || shut_down_ || G(*pod).pid != 0) continue;
        out = SpawnLocked(pod);
      }
      absl::Status st = out.ok() ? Deliver(*out) : out.status();
      if (!st.ok()) log::Warnf("execute: sandbox %s: restart: %s", pod->sandbox_id, st.message());
    }
  }
}

}  // namespace gvshim::execute
