#include "shim/process/container.h"

#include <fcntl.h>
#include <pty.h>
#include <signal.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "shim/base/log.h"
#include "shim/base/status.h"
#include "shim/events/timestamp.h"
#include "shim/sys/file.h"
#include "shim/sys/reaper.h"

namespace gvshim::process {
namespace {

constexpr absl::Duration kConsoleTimeout = absl::Seconds(10);
constexpr absl::Duration kIoDrainTimeout = absl::Seconds(2);
// How long an init exit waits for the exits of its execs (they die with the container) before it is
// published.
constexpr absl::Duration kExecExitGrace = absl::Seconds(3);

google::protobuf::Timestamp ToProto(absl::Time t) { return events::ToTimestamp(t); }

absl::StatusOr<int> ReadPidFile(const std::string& path) {
  auto text = sys::ReadFileToString(path);
  if (!text.ok()) return Annotate(text.status(), "read pid file");
  int pid = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &pid) || pid <= 0) {
    return absl::InternalError(absl::StrCat("pid file ", path, ": not a pid: \"", *text, "\""));
  }
  return pid;
}

}  // namespace

uint64_t ReadOomKillCount(const std::string& path) {
  std::ifstream in(path);
  std::string key;
  uint64_t value = 0;
  while (in >> key >> value) {
    if (key == "oom_kill") return value;
  }
  return 0;
}

const char* StatusName(Status s) {
  switch (s) {
    case Status::kCreated:
      return "created";
    case Status::kRunning:
      return "running";
    case Status::kPaused:
      return "paused";
    case Status::kStopped:
      return "stopped";
    case Status::kDeleted:
      return "deleted";
  }
  return "unknown";
}

absl::Status CheckTransition(Status from, Status to, absl::string_view what) {
  bool ok = false;
  switch (from) {
    case Status::kCreated:
      ok = to == Status::kRunning || to == Status::kStopped || to == Status::kDeleted;
      break;
    case Status::kRunning:
      ok = to == Status::kPaused || to == Status::kStopped;
      break;
    case Status::kPaused:
      ok = to == Status::kRunning || to == Status::kStopped;
      break;
    case Status::kStopped:
      ok = to == Status::kDeleted;
      break;
    case Status::kDeleted:
      ok = false;
      break;
  }
  if (ok) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(what, ": process is ", StatusName(from), ", cannot become ", StatusName(to)));
}

// Reaper callbacks may fire after the container is gone (e.g. a sandbox that dies after a failed Create);
// they reach the container only through this gate, which the destructor closes.
struct ExitGate {
  absl::Mutex mu;
  Container* container ABSL_GUARDED_BY(mu) = nullptr;
};

absl::StatusOr<std::unique_ptr<Container>> Container::Create(const Deps& deps, ContainerOptions options) {
  auto c = std::unique_ptr<Container>(new Container(deps, std::move(options)));
  RETURN_IF_ERROR(c->DoCreate());
  return c;
}

uint32_t Container::init_pid() const {
  absl::MutexLock lock(&mu_);
  auto it = procs_.find("");
  return it == procs_.end() ? 0 : it->second->pid;
}

absl::Status Container::DoCreate() {
  const std::string& id = options_.id;
  gate_ = std::make_shared<ExitGate>();
  {
    absl::MutexLock lock(&gate_->mu);
    gate_->container = this;
  }
  if (!options_.rootfs.empty()) {
    ASSIGN_OR_RETURN(rootfs_, Rootfs::Mount(options_.rootfs, options_.bundle + "/rootfs"));
  }
  auto init = std::make_unique<Proc>();
  init->stdio = options_.stdio;
  ASSIGN_OR_RETURN(init->io, stdio::ProcessIO::Open(options_.stdio, id, options_.ns));
  if (options_.stdio.terminal) {
    ASSIGN_OR_RETURN(init->console, stdio::ConsoleSocket::Create());
  }
  runsc::CreateOptions co;
  co.bundle = options_.bundle;
  co.pid_file = options_.bundle + "/init.pid";
  if (init->console) co.console_socket = init->console->path();
  // The sandbox's root container takes its stdio at create; a container joining a sandbox takes it at start.
  if (options_.creates_sandbox && !options_.stdio.terminal) {
    co.stdio = {init->io->child_stdin(), init->io->child_stdout(), init->io->child_stderr()};
  }
  absl::Status st = deps_.runsc->Create(id, co);
  if (!st.ok()) {
    // runsc may have left a half-made container (or sandbox) behind.
    absl::Status del = deps_.runsc->Delete(id, /*force=*/true);
    if (!del.ok() && del.code() != absl::StatusCode::kNotFound)
      log::Warnf("cleanup after failed create: %s", del.ToString());
    return st;
  }
  auto cleanup = [&](absl::Status failure) {
    absl::Status del = deps_.runsc->Delete(id, /*force=*/true);
    if (!del.ok() && del.code() != absl::StatusCode::kNotFound)
      log::Warnf("cleanup after failed create: %s", del.ToString());
    return failure;
  };
  auto pid = ReadPidFile(co.pid_file);
  if (!pid.ok()) return cleanup(pid.status());
  init->pid = static_cast<uint32_t>(*pid);
  if (options_.creates_sandbox) {
    if (init->console) {
      auto master = init->console->ReceiveMaster(kConsoleTimeout);
      if (!master.ok()) return cleanup(Annotate(master.status(), "receive console of " + id));
      if (absl::Status a = init->io->AttachConsole(std::move(*master)); !a.ok()) return cleanup(a);
    }
    init->io->CloseChildSides();
  }
  {
    absl::MutexLock lock(&mu_);
    procs_[""] = std::move(init);
  }
  if (options_.creates_sandbox) {
    // runsc writes the sandbox's pid; the sandbox process (reparented to us, the subreaper) exits with the
    // root container's exit status. `runsc wait` cannot be used here: it fails once the sandbox is gone.
    std::shared_ptr<ExitGate> gate = gate_;
    sys::Reaper::Get().Watch(*pid, [gate](int ws) {
      absl::MutexLock lock(&gate->mu);
      if (gate->container != nullptr) gate->container->OnExit("", sys::ExitCodeFromWaitStatus(ws));
    });
  }
  return absl::OkStatus();
}

Container::~Container() {
  if (gate_) {
    absl::MutexLock lock(&gate_->mu);
    gate_->container = nullptr;
  }
  if (waiter_thread_.joinable()) waiter_thread_.join();
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [_, p] : procs_) {
      if (p->exit_thread.joinable()) threads.push_back(std::move(p->exit_thread));
    }
    for (auto& t : retired_threads_) threads.push_back(std::move(t));
    retired_threads_.clear();
  }
  for (auto& t : threads) t.join();
}

Container::Proc* Container::Find(const std::string& exec_id) {
  auto it = procs_.find(exec_id);
  return it == procs_.end() ? nullptr : it->second.get();
}

absl::StatusOr<uint32_t> Container::Start(const std::string& exec_id) {
  absl::MutexLock life(&lifecycle_mu_);
  Proc* p;
  {
    absl::MutexLock lock(&mu_);
    p = Find(exec_id);
    if (p == nullptr)
      return absl::NotFoundError(absl::StrCat("process ", exec_id, " of ", id(), " not found"));
    RETURN_IF_ERROR(CheckTransition(p->status, Status::kRunning, absl::StrCat("start ", id(), " ", exec_id)));
    if (!exec_id.empty()) {
      Proc* init = Find("");
      if (init == nullptr || init->status != Status::kRunning) {
        return absl::FailedPreconditionError(
            absl::StrCat("exec ", exec_id, ": container ", id(), " is not running"));
      }
    }
  }
  return exec_id.empty() ? StartInit() : StartExec(p);
}

absl::StatusOr<uint32_t> Container::StartInit() {
  Proc* p;
  {
    absl::MutexLock lock(&mu_);
    p = Find("");
  }
  runsc::Stdio stdio;
  if (!options_.creates_sandbox && !p->stdio.terminal) {
    stdio = {p->io->child_stdin(), p->io->child_stdout(), p->io->child_stderr()};
  }
  RETURN_IF_ERROR(deps_.runsc->Start(id(), stdio));
  if (!options_.creates_sandbox) {
    p->io->CloseChildSides();
    if (p->console) {
      auto master = p->console->ReceiveMaster(kConsoleTimeout);
      if (!master.ok()) {
        log::Warnf("container %s: no console: %s", id(), master.status().ToString());
      } else if (absl::Status a = p->io->AttachConsole(std::move(*master)); !a.ok()) {
        log::Warnf("container %s: attach console: %s", id(), a.ToString());
      }
    }
    // A container inside an existing sandbox: its exit status comes from `runsc wait`.
    waiter_thread_ = std::thread([this] {
      auto code = deps_.runsc->Wait(id());
      if (!code.ok()) log::Errorf("runsc wait %s: %s", id(), code.status().ToString());
      OnExit("", code.ok() ? *code : 255);
    });
  }
  uint32_t pid;
  {
    absl::MutexLock lock(&mu_);
    // The exit may already have been recorded by a fast process; FinishExit waits for lifecycle_mu_ to
    // publish.
    if (p->status == Status::kCreated) p->status = Status::kRunning;
    pid = p->pid;
  }
  containerd::events::TaskStart ev;
  ev.set_container_id(id());
  ev.set_pid(pid);
  deps_.events->Publish(ev);
  return pid;
}

absl::Status Container::AddExec(const std::string& exec_id, const stdio::StdioConfig& io,
                                const std::string& process_json) {
  if (exec_id.empty()) return absl::InvalidArgumentError("exec id must not be empty");
  auto p = std::make_unique<Proc>();
  p->exec_id = exec_id;
  p->stdio = io;
  {
    absl::MutexLock lock(&mu_);
    if (Find(exec_id) != nullptr) {
      return absl::AlreadyExistsError(absl::StrCat("exec ", exec_id, " already exists in ", id()));
    }
    Proc* init = Find("");
    if (init == nullptr || (init->status != Status::kRunning && init->status != Status::kPaused)) {
      return absl::FailedPreconditionError(
          absl::StrCat("exec ", exec_id, ": container ", id(), " is not running"));
    }
    // Exec ids come from clients; file names use a counter instead.
    std::string base = absl::StrCat(options_.bundle, "/exec-", ++exec_counter_);
    p->process_json_path = base + ".json";
    p->internal_pid_path = base + ".ipid";
  }
  {
    std::ofstream out(p->process_json_path, std::ios::trunc);
    out << process_json;
    if (!out.good()) return absl::InternalError("write " + p->process_json_path);
  }
  ASSIGN_OR_RETURN(p->io, stdio::ProcessIO::Open(io, id(), options_.ns));
  {
    absl::MutexLock lock(&mu_);
    procs_[exec_id] = std::move(p);
  }
  containerd::events::TaskExecAdded ev;
  ev.set_container_id(id());
  ev.set_exec_id(exec_id);
  deps_.events->Publish(ev);
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> Container::StartExec(Proc* p) {
  runsc::ExecOptions eo;
  eo.process_json = p->process_json_path;
  eo.internal_pid_file = p->internal_pid_path;
  // A non-detached `runsc exec` ignores --console-socket: for a terminal it uses its own stdin, so it gets
  // the slave of a pty made here, in a new session, and the shim copies the master.
  sys::UniqueFd master, slave;
  if (p->stdio.terminal) {
    int m = -1, s = -1;
    if (::openpty(&m, &s, nullptr, nullptr, nullptr) != 0) {
      return ErrnoStatus(errno, absl::StrCat("exec ", p->exec_id, " in ", id(), ": openpty"));
    }
    master.reset(m);
    slave.reset(s);
    ::fcntl(m, F_SETFD, FD_CLOEXEC);
    ::fcntl(s, F_SETFD, FD_CLOEXEC);
    eo.stdio = {s, s, s};
    eo.new_session = true;
  } else {
    eo.stdio = {p->io->child_stdin(), p->io->child_stdout(), p->io->child_stderr()};
  }
  ASSIGN_OR_RETURN(pid_t pid, deps_.runsc->StartExec(id(), eo));
  p->io->CloseChildSides();
  {
    absl::MutexLock lock(&mu_);
    p->pid = static_cast<uint32_t>(pid);
  }
  std::shared_ptr<ExitGate> gate = gate_;
  std::string exec_id = p->exec_id;
  sys::Reaper::Get().Watch(pid, [gate, exec_id](int ws) {
    absl::MutexLock lock(&gate->mu);
    if (gate->container != nullptr) gate->container->OnExit(exec_id, sys::ExitCodeFromWaitStatus(ws));
  });
  if (master) {
    slave.reset();
    if (absl::Status st = p->io->AttachConsole(std::move(master)); !st.ok()) {
      (void)sys::Reaper::Get().Signal(pid, SIGKILL);
      return Annotate(st, absl::StrCat("exec ", p->exec_id, " in ", id(), ": console"));
    }
  }
  {
    absl::MutexLock lock(&mu_);
    if (p->status == Status::kCreated) p->status = Status::kRunning;
  }
  containerd::events::TaskExecStarted ev;
  ev.set_container_id(id());
  ev.set_exec_id(p->exec_id);
  ev.set_pid(static_cast<uint32_t>(pid));
  deps_.events->Publish(ev);
  return static_cast<uint32_t>(pid);
}

void Container::OnExit(const std::string& exec_id, int exit_code) {
  absl::MutexLock lock(&mu_);
  Proc* p = Find(exec_id);
  if (p == nullptr || p->exit_thread.joinable() || p->exit_published) return;  // duplicate notification
  p->exit_thread = std::thread([this, exec_id, exit_code] { FinishExit(exec_id, exit_code); });
}

void Container::FinishExit(const std::string& exec_id, int exit_code) {
  Proc* p;
  {
    absl::MutexLock lock(&mu_);
    p = Find(exec_id);
    if (p->forced_exit) exit_code = static_cast<int>(*p->forced_exit);
    if (exec_id.empty()) {
      // Exec processes die with the container; publish their exits first.
      auto execs_done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        for (const auto& [eid, q] : procs_) {
          if (!eid.empty() && q->status == Status::kRunning && !q->exit_published) return false;
        }
        return true;
      };
      if (!mu_.AwaitWithTimeout(absl::Condition(&execs_done), kExecExitGrace)) {
        log::Warnf("container %s exited; some exec exits are still pending", id());
      }
    }
  }
  // Drain the output before the exit is announced, so clients that stop reading at the exit see everything.
  if (p->io) p->io->WaitAndClose(kIoDrainTimeout);
  absl::MutexLock life(&lifecycle_mu_);
  bool deleted;
  {
    absl::MutexLock lock(&mu_);
    deleted = p->status == Status::kDeleted;
  }
  if (!deleted && exec_id.empty() && !options_.oom_counter_file.empty() &&
      ReadOomKillCount(options_.oom_counter_file) > 0) {
    containerd::events::TaskOOM oom;
    oom.set_container_id(id());
    deps_.events->Publish(oom);
    log::Warnf("%s: the kernel OOM-killed in the sandbox's memory cgroup", id());
  }
  absl::MutexLock lock(&mu_);
  if (p->status == Status::kDeleted) {
    // Deleted before it ever ran (runsc delete --force ended the sandbox): containerd already has its answer.
    p->exit.status = static_cast<uint32_t>(exit_code);
    p->exit.at = absl::Now();
    p->exit_published = true;
    return;
  }
  p->status = Status::kStopped;
  p->exit.status = static_cast<uint32_t>(exit_code);
  p->exit.at = absl::Now();
  p->exit_published = true;
  containerd::events::TaskExit ev;
  ev.set_container_id(id());
  ev.set_id(exec_id.empty() ? id() : exec_id);
  ev.set_pid(p->pid);
  ev.set_exit_status(p->exit.status);
  *ev.mutable_exited_at() = ToProto(p->exit.at);
  deps_.events->Publish(ev);
  log::Infof("%s %s exited with %d", id(), exec_id.empty() ? "init" : exec_id, exit_code);
}

absl::StatusOr<int> Container::ReadInternalPid(const Proc& p) {
  // runsc writes the file right after the process starts; allow it a moment if a signal comes very early.
  absl::Time deadline = absl::Now() + absl::Seconds(2);
  for (;;) {
    auto pid = ReadPidFile(p.internal_pid_path);
    if (pid.ok() || absl::Now() > deadline) return pid;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

absl::Status Container::Kill(const std::string& exec_id, int signal, bool all) {
  Status status;
  Proc* p;
  {
    absl::MutexLock lock(&mu_);
    p = Find(exec_id);
    if (p == nullptr)
      return absl::NotFoundError(absl::StrCat("process ", exec_id, " of ", id(), " not found"));
    status = p->status;
    if (status == Status::kCreated && exec_id.empty()) p->forced_exit = 128 + static_cast<uint32_t>(signal);
  }
  switch (status) {
    case Status::kCreated: {
      if (!exec_id.empty()) {
        return absl::FailedPreconditionError(absl::StrCat("exec ", exec_id, " was not started"));
      }
      // runsc refuses to signal a container that never started: remove it instead.
      absl::Status st = deps_.runsc->Delete(id(), /*force=*/true);
      if (!st.ok() && st.code() != absl::StatusCode::kNotFound) return st;
      // The root container's exit arrives through the sandbox pid; a joining container has no waiter yet.
      if (!options_.creates_sandbox) OnExit("", 128 + signal);
      return absl::OkStatus();
    }
    case Status::kRunning:
    case Status::kPaused: {
      if (exec_id.empty()) return deps_.runsc->Kill(id(), signal, all, 0);
      ASSIGN_OR_RETURN(int ipid, ReadInternalPid(*p));
      return deps_.runsc->Kill(id(), signal, false, ipid);
    }
    case Status::kStopped:
    case Status::kDeleted:
      break;
  }
  return absl::NotFoundError(
      absl::StrCat("process ", exec_id.empty() ? id() : exec_id, ": process already finished"));
}

absl::StatusOr<ProcessState> Container::Delete(const std::string& exec_id) {
  ProcessState st;
  std::thread exit_thread;
  {
    absl::MutexLock lock(&mu_);
    Proc* p = Find(exec_id);
    if (p == nullptr)
      return absl::NotFoundError(absl::StrCat("process ", exec_id, " of ", id(), " not found"));
    if (p->status == Status::kRunning || p->status == Status::kPaused) {
      return absl::FailedPreconditionError(
          absl::StrCat("delete ", exec_id.empty() ? id() : exec_id, ": process is ", StatusName(p->status)));
    }
    if (exec_id.empty()) {
      for (const auto& [eid, q] : procs_) {
        if (!eid.empty() && (q->status == Status::kRunning || q->status == Status::kPaused)) {
          return absl::FailedPreconditionError(
              absl::StrCat("delete ", id(), ": exec ", eid, " is still running"));
        }
      }
    }
    st.exec_id = exec_id;
    st.pid = p->pid;
    st.status = p->status;
    st.stdio = p->stdio;
    st.exit = p->exit;
  }
  if (exec_id.empty()) {
    absl::Status del = deps_.runsc->Delete(id(), /*force=*/true);
    if (!del.ok() && del.code() != absl::StatusCode::kNotFound) return del;
    if (rootfs_) RETURN_IF_ERROR(rootfs_->Unmount());
  }
  absl::MutexLock lock(&mu_);
  auto it = procs_.find(exec_id);
  if (it != procs_.end()) {
    if (it->second->exit_thread.joinable()) retired_threads_.push_back(std::move(it->second->exit_thread));
    if (exec_id.empty()) {
      it->second->status = Status::kDeleted;  // keep the init's record until the container object goes away
    } else {
      ::unlink(it->second->process_json_path.c_str());
      ::unlink(it->second->internal_pid_path.c_str());
      procs_.erase(it);
    }
  }
  return st;
}

absl::StatusOr<ExitInfo> Container::Wait(const std::string& exec_id) {
  absl::MutexLock lock(&mu_);
  Proc* p = Find(exec_id);
  if (p == nullptr) return absl::NotFoundError(absl::StrCat("process ", exec_id, " of ", id(), " not found"));
  auto done = [p]() { return p->exit_published; };
  mu_.Await(absl::Condition(&done));
  return p->exit;
}

absl::StatusOr<ProcessState> Container::State(const std::string& exec_id) {
  absl::MutexLock lock(&mu_);
  Proc* p = Find(exec_id);
  if (p == nullptr) return absl::NotFoundError(absl::StrCat("process ", exec_id, " of ", id(), " not found"));
  ProcessState st;
  st.exec_id = exec_id;
  st.pid = p->pid;
  st.status = p->status;
  st.stdio = p->stdio;
  st.exit = p->exit;
  return st;
}

absl::Status Container::Pause() {
  {
    absl::MutexLock lock(&mu_);
    Proc* p = Find("");
    RETURN_IF_ERROR(CheckTransition(p->status, Status::kPaused, "pause " + id()));
  }
  RETURN_IF_ERROR(deps_.runsc->Pause(id()));
  {
    absl::MutexLock lock(&mu_);
    Proc* p = Find("");
    if (p->status == Status::kRunning) p->status = Status::kPaused;
  }
  containerd::events::TaskPaused ev;
  ev.set_container_id(id());
  deps_.events->Publish(ev);
  return absl::OkStatus();
}

absl::Status Container::Resume() {
  {
    absl::MutexLock lock(&mu_);
    Proc* p = Find("");
    if (p->status != Status::kPaused) {
      return absl::FailedPreconditionError(
          absl::StrCat("resume ", id(), ": process is ", StatusName(p->status)));
    }
  }
  RETURN_IF_ERROR(deps_.runsc->Resume(id()));
  {
    absl::MutexLock lock(&mu_);
    Proc* p = Find("");
    if (p->status == Status::kPaused) p->status = Status::kRunning;
  }
  containerd::events::TaskResumed ev;
  ev.set_container_id(id());
  deps_.events->Publish(ev);
  return absl::OkStatus();
}

absl::Status Container::ResizePty(const std::string& exec_id, uint32_t width, uint32_t height) {
  absl::MutexLock lock(&mu_);
  Proc* p = Find(exec_id);
  if (p == nullptr) return absl::NotFoundError(absl::StrCat("process ", exec_id, " of ", id(), " not found"));
  if (!p->io) return absl::FailedPreconditionError("process has no stdio");
  return p->io->Resize(width, height);
}

absl::Status Container::CloseIO(const std::string& exec_id) {
  absl::MutexLock lock(&mu_);
  Proc* p = Find(exec_id);
  if (p == nullptr) return absl::NotFoundError(absl::StrCat("process ", exec_id, " of ", id(), " not found"));
  if (p->io) p->io->CloseStdin();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<runsc::ProcessInfo>> Container::Pids() { return deps_.runsc->Ps(id()); }

absl::StatusOr<runsc::Stats> Container::Stats() { return deps_.runsc->GetStats(id()); }

std::vector<std::string> Container::ExecIds() {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> ids;
  for (const auto& [eid, _] : procs_) {
    if (!eid.empty()) ids.push_back(eid);
  }
  return ids;
}

}  // namespace gvshim::process
