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
#include "shim/sys/spawn.h"

namespace gvshim::process {
namespace {

constexpr absl::Duration kConsoleTimeout = absl::Seconds(10);
constexpr absl::Duration kIoDrainTimeout = absl::Seconds(2);
// How long an init exit waits for the exits of its execs (they die with the container) before it is
// published.
constexpr absl::Duration kExecExitGrace = absl::Seconds(3);
// How long a failed kill waits for the exit of a process that may have ended meanwhile.
constexpr absl::Duration kKillExitGrace = absl::Seconds(2);

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

// Reaper callbacks may fire after the container is gone (e.g. a sandbox that dies after a failed Create);
// they reach the container only through this gate, which the destructor closes.
struct ExitGate {
  absl::Mutex mu;
  Container* container ABSL_GUARDED_BY(mu) = nullptr;
};

absl::StatusOr<std::unique_ptr<Container>> Container::Create(const Deps& deps, ContainerOptions options) {
  if (deps.runsc == nullptr || deps.events == nullptr || deps.reaper == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("create ", options.id, ": runsc, events and reaper are required"));
  }
  auto c = std::unique_ptr<Container>(new Container(deps, std::move(options)));
  RETURN_IF_ERROR(c->DoCreate());
  return c;
}

uint32_t Container::init_pid() const {
  absl::MutexLock lock(&mu_);
  return init_ == nullptr ? 0 : G(*init_).pid;
}

std::string Container::NotFound(const std::string& exec_id) const {
  return absl::StrCat("process ", exec_id, " of ", id(), " not found");
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
  auto init = std::make_shared<InitProcess>();
  init->stdio = options_.stdio;
  ASSIGN_OR_RETURN(init->io, stdio::ProcessIO::Open(options_.stdio, id, options_.ns, deps_.reaper));
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
    G(*init).pid = static_cast<uint32_t>(*pid);
    init_ = std::move(init);
  }
  if (options_.creates_sandbox) {
    // runsc writes the sandbox's pid; the sandbox process (reparented to us, the subreaper) exits with the
    // root container's exit status. `runsc wait` cannot be used here: it fails once the sandbox is gone.
    std::shared_ptr<ExitGate> gate = gate_;
    deps_.reaper->Watch(*pid, [gate](int ws) {
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
    if (init_ && G(*init_).exit_thread.joinable()) threads.push_back(std::move(G(*init_).exit_thread));
    for (auto& [_, p] : execs_) {
      if (G(*p).exit_thread.joinable()) threads.push_back(std::move(G(*p).exit_thread));
    }
    for (auto& t : retired_threads_) threads.push_back(std::move(t));
    retired_threads_.clear();
  }
  for (auto& t : threads) t.join();
}

std::shared_ptr<Container::Process> Container::Find(const std::string& exec_id) {
  if (exec_id.empty()) return init_;
  auto it = execs_.find(exec_id);
  return it == execs_.end() ? nullptr : it->second;
}

bool Container::ExecsPending() const {
  for (const auto& [_, q] : execs_) {
    if (G(*q).state.Alive() && !G(*q).exit_recorded) return true;
  }
  return false;
}

absl::StatusOr<uint32_t> Container::Start(const std::string& exec_id) {
  absl::MutexLock life(&lifecycle_mu_);
  std::shared_ptr<Process> p;
  {
    absl::MutexLock lock(&mu_);
    p = Find(exec_id);
    if (p == nullptr) return absl::NotFoundError(NotFound(exec_id));
    RETURN_IF_ERROR(CheckTransition(G(*p).state.kind(), G(*p).state.status(), Status::kRunning,
                                    absl::StrCat("start ", id(), " ", exec_id)));
    if (!exec_id.empty() && (init_ == nullptr || !G(*init_).state.Is(Status::kRunning))) {
      return absl::FailedPreconditionError(
          absl::StrCat("exec ", exec_id, ": container ", id(), " is not running"));
    }
  }
  if (exec_id.empty()) return StartInit(std::static_pointer_cast<InitProcess>(p));
  return StartExec(std::static_pointer_cast<ExecProcess>(p));
}

// Needs lifecycle_mu_ (held by Start).
absl::StatusOr<uint32_t> Container::StartInit(const std::shared_ptr<InitProcess>& p) {
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
    // An exit that came already waits for lifecycle_mu_ before it touches the state.
    RETURN_IF_ERROR(G(*p).state.Transition(Status::kRunning, "start " + id()));
    pid = G(*p).pid;
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
  auto p = std::make_shared<ExecProcess>(exec_id);
  p->stdio = io;
  auto check = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    if (execs_.contains(exec_id)) {
      return absl::AlreadyExistsError(absl::StrCat("exec ", exec_id, " already exists in ", id()));
    }
    if (init_ == nullptr || !G(*init_).state.Alive()) {
      return absl::FailedPreconditionError(
          absl::StrCat("exec ", exec_id, ": container ", id(), " is not running"));
    }
    return absl::OkStatus();
  };
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(check());
    // Exec ids come from clients; file names use a counter instead.
    std::string base = absl::StrCat(options_.bundle, "/exec-", ++exec_counter_);
    p->process_json_path = base + ".json";
    p->internal_pid_path = base + ".ipid";
  }
  auto remove_files = [&p] {
    ::unlink(p->process_json_path.c_str());
    ::unlink(p->internal_pid_path.c_str());
  };
  // The process's environment may carry secrets: owner-only.
  // In the bundle (containerd's state directory, gone after a reboot): no fsync.
  if (absl::Status st =
          sys::WriteFileAtomic(p->process_json_path, process_json, 0600, sys::Durability::kVolatile);
      !st.ok()) {
    return Annotate(st, absl::StrCat("exec ", exec_id, " in ", id(), ": write process spec"));
  }
  auto opened = stdio::ProcessIO::Open(io, id(), options_.ns, deps_.reaper);
  if (!opened.ok()) {
    remove_files();
    return opened.status();
  }
  p->io = std::move(*opened);
  {
    // The lock was released while the files and stdio were set up: check again, so a concurrent AddExec of
    // the same id (or the container's end) is not overwritten.
    absl::MutexLock lock(&mu_);
    if (absl::Status st = check(); !st.ok()) {
      remove_files();
      return st;
    }
    execs_[exec_id] = p;
  }
  containerd::events::TaskExecAdded ev;
  ev.set_container_id(id());
  ev.set_exec_id(exec_id);
  deps_.events->Publish(ev);
  return absl::OkStatus();
}

// Needs lifecycle_mu_ (held by Start).
absl::StatusOr<uint32_t> Container::StartExec(const std::shared_ptr<ExecProcess>& p) {
  runsc::ExecOptions eo;
  eo.process_json = p->process_json_path;
  eo.internal_pid_file = p->internal_pid_path;
  const std::string what = absl::StrCat("exec ", p->exec_id, " in ", id());
  // A non-detached `runsc exec` ignores --console-socket: for a terminal it uses its own stdin, so it gets
  // the slave of a pty made here, in a new session, and the shim copies the master.
  sys::UniqueFd master, slave;
  if (p->stdio.terminal) {
    int m = -1, s = -1;
    if (::openpty(&m, &s, nullptr, nullptr, nullptr) != 0) return ErrnoStatus(errno, what + ": openpty");
    master.reset(m);
    slave.reset(s);
    for (int fd : {m, s}) {
      if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) return ErrnoStatus(errno, what + ": pty FD_CLOEXEC");
    }
    eo.stdio = {s, s, s};
    eo.new_session = true;
  } else {
    eo.stdio = {p->io->child_stdin(), p->io->child_stdout(), p->io->child_stderr()};
  }
  ASSIGN_OR_RETURN(pid_t pid, deps_.runsc->StartExec(id(), eo));
  p->io->CloseChildSides();
  {
    absl::MutexLock lock(&mu_);
    G(*p).pid = static_cast<uint32_t>(pid);
  }
  std::shared_ptr<ExitGate> gate = gate_;
  std::string exec_id = p->exec_id;
  deps_.reaper->Watch(pid, [gate, exec_id](int ws) {
    absl::MutexLock lock(&gate->mu);
    if (gate->container != nullptr) gate->container->OnExit(exec_id, sys::ExitCodeFromWaitStatus(ws));
  });
  if (master) {
    slave.reset();
    if (absl::Status st = p->io->AttachConsole(std::move(master)); !st.ok()) {
      (void)deps_.reaper->Signal(pid, SIGKILL);
      return Annotate(st, what + ": console");
    }
  }
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(G(*p).state.Transition(Status::kRunning, "start " + what));
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
  std::shared_ptr<Process> p = Find(exec_id);
  if (p == nullptr || G(*p).exit_thread.joinable() || G(*p).exit_recorded) return;  // duplicate notification
  G(*p).exit_thread = std::thread([this, p, exit_code] { FinishExit(p, exit_code); });
}

void Container::FinishExit(const std::shared_ptr<Process>& p, int exit_code) {
  const bool is_init = p->kind == Kind::kInit;
  {
    absl::MutexLock lock(&mu_);
    if (is_init) {
      if (G(*p).forced_exit) exit_code = static_cast<int>(*G(*p).forced_exit);
      // Exec processes die with the container; publish their exits first.
      auto execs_done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !ExecsPending(); };
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
    deleted = G(*p).state.Is(Status::kDeleted);
  }
  if (!deleted && is_init && !options_.oom_counter_file.empty() &&
      ReadOomKillCount(options_.oom_counter_file) > 0) {
    containerd::events::TaskOOM oom;
    oom.set_container_id(id());
    deps_.events->Publish(oom);
    log::Warnf("%s: the kernel OOM-killed in the sandbox's memory cgroup", id());
  }
  absl::MutexLock lock(&mu_);
  G(*p).exit.status = static_cast<uint32_t>(exit_code);
  G(*p).exit.at = absl::Now();
  G(*p).exit_recorded = true;
  // Deleted before it ever ran (runsc delete --force ended the sandbox): containerd already has its answer,
  // and the record stays deleted.
  if (deleted) return;
  const std::string name = is_init ? "init" : p->exec_id;
  if (absl::Status st = G(*p).state.Transition(Status::kStopped, absl::StrCat("exit of ", id(), " ", name));
      !st.ok()) {
    log::Errorf("%s", st.ToString());
    return;
  }
  containerd::events::TaskExit ev;
  ev.set_container_id(id());
  ev.set_id(is_init ? id() : p->exec_id);
  ev.set_pid(G(*p).pid);
  ev.set_exit_status(G(*p).exit.status);
  *ev.mutable_exited_at() = ToProto(G(*p).exit.at);
  deps_.events->Publish(ev);
  log::Infof("%s %s exited with %d", id(), name, exit_code);
}

absl::StatusOr<int> Container::ReadInternalPid(const ExecProcess& p) {
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
  std::shared_ptr<Process> p;
  {
    absl::MutexLock lock(&mu_);
    p = Find(exec_id);
    if (p == nullptr) return absl::NotFoundError(NotFound(exec_id));
    status = G(*p).state.status();
    if (status == Status::kCreated && exec_id.empty()) {
      G(*p).forced_exit = 128 + static_cast<uint32_t>(signal);
    }
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
      absl::Status st;
      if (exec_id.empty()) {
        st = deps_.runsc->Kill(id(), signal, all, 0);
      } else {
        absl::StatusOr<int> ipid = ReadInternalPid(static_cast<const ExecProcess&>(*p));
        st = ipid.ok() ? deps_.runsc->Kill(id(), signal, false, *ipid) : ipid.status();
      }
      if (st.ok()) return st;
      // The process may have ended while runsc was asked (a sandbox on its way out refuses connections): that
      // is "already finished" for containerd (a `task delete --force` goes on), not a failed kill.
      absl::MutexLock lock(&mu_);
      auto ended = [this, &p]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return G(*p).exit_recorded || !G(*p).state.Alive();
      };
      if (mu_.AwaitWithTimeout(absl::Condition(&ended), kKillExitGrace)) break;
      return st;
    }
    case Status::kStopped:
    case Status::kDeleted:
      break;
  }
  return absl::NotFoundError(
      absl::StrCat("process ", exec_id.empty() ? id() : exec_id, ": process already finished"));
}

absl::StatusOr<ProcessState> Container::Delete(const std::string& exec_id) {
  absl::MutexLock life(&lifecycle_mu_);
  const std::string what = absl::StrCat("delete ", exec_id.empty() ? id() : exec_id);
  ProcessState st;
  std::shared_ptr<Process> p;
  {
    absl::MutexLock lock(&mu_);
    p = Find(exec_id);
    if (p == nullptr) return absl::NotFoundError(NotFound(exec_id));
    RETURN_IF_ERROR(CheckTransition(G(*p).state.kind(), G(*p).state.status(), Status::kDeleted, what));
    if (exec_id.empty()) {
      for (const auto& [eid, q] : execs_) {
        if (G(*q).state.Alive()) {
          return absl::FailedPreconditionError(absl::StrCat(what, ": exec ", eid, " is still running"));
        }
      }
    }
    st.exec_id = exec_id;
    st.pid = G(*p).pid;
    st.status = G(*p).state.status();
    st.stdio = p->stdio;
    st.exit = G(*p).exit;
  }
  const bool never_ran = st.status == Status::kCreated;
  if (exec_id.empty()) {
    absl::Status del = deps_.runsc->Delete(id(), /*force=*/true);
    if (!del.ok() && del.code() != absl::StatusCode::kNotFound) return del;
    if (rootfs_) RETURN_IF_ERROR(rootfs_->Unmount());
  }
  {
    absl::MutexLock lock(&mu_);
    // Legal: lifecycle_mu_ kept Start and exit publication out since the check above.
    RETURN_IF_ERROR(G(*p).state.Transition(Status::kDeleted, what));
    if (G(*p).exit_thread.joinable()) retired_threads_.push_back(std::move(G(*p).exit_thread));
    if (!exec_id.empty()) {
      auto* e = static_cast<ExecProcess*>(p.get());
      ::unlink(e->process_json_path.c_str());
      ::unlink(e->internal_pid_path.c_str());
      execs_.erase(exec_id);
    }
    // The init's record stays (as deleted) until the container object goes away.
  }
  // A joining container deleted before it started has nobody to report its end (no `runsc wait` ran): record
  // it here, so Wait returns. A sandbox's own container reports through the sandbox pid.
  if (exec_id.empty() && never_ran && !options_.creates_sandbox) OnExit("", 128 + SIGKILL);
  return st;
}

absl::StatusOr<ExitInfo> Container::Wait(const std::string& exec_id) {
  absl::MutexLock lock(&mu_);
  // The process stays alive while we wait, even if Delete drops it from the container.
  std::shared_ptr<Process> p = Find(exec_id);
  if (p == nullptr) return absl::NotFoundError(NotFound(exec_id));
  const bool is_exec = !exec_id.empty();
  auto done = [this, &p, is_exec]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return G(*p).exit_recorded || (is_exec && G(*p).state.Is(Status::kDeleted));
  };
  mu_.Await(absl::Condition(&done));
  if (!G(*p).exit_recorded) {
    return absl::NotFoundError(absl::StrCat("exec ", exec_id, " of ", id(), " was deleted before it ran"));
  }
  return G(*p).exit;
}

absl::StatusOr<ProcessState> Container::State(const std::string& exec_id) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<Process> p = Find(exec_id);
  if (p == nullptr) return absl::NotFoundError(NotFound(exec_id));
  ProcessState st;
  st.exec_id = exec_id;
  st.pid = G(*p).pid;
  st.status = G(*p).state.status();
  st.stdio = p->stdio;
  st.exit = G(*p).exit;
  return st;
}

absl::Status Container::Pause() {
  const std::string what = "pause " + id();
  {
    absl::MutexLock lock(&mu_);
    if (init_ == nullptr) return absl::NotFoundError(NotFound(""));
    RETURN_IF_ERROR(CheckTransition(Kind::kInit, G(*init_).state.status(), Status::kPaused, what));
  }
  RETURN_IF_ERROR(deps_.runsc->Pause(id()));
  {
    absl::MutexLock lock(&mu_);
    // The init may have exited while runsc paused the sandbox; then there is nothing paused to report.
    RETURN_IF_ERROR(G(*init_).state.Transition(Status::kPaused, what));
  }
  containerd::events::TaskPaused ev;
  ev.set_container_id(id());
  deps_.events->Publish(ev);
  return absl::OkStatus();
}

absl::Status Container::Resume() {
  const std::string what = "resume " + id();
  {
    absl::MutexLock lock(&mu_);
    if (init_ == nullptr) return absl::NotFoundError(NotFound(""));
    if (!G(*init_).state.Is(Status::kPaused)) {
      return absl::FailedPreconditionError(
          absl::StrCat(what, ": init process is ", StatusName(G(*init_).state.status()), ", not paused"));
    }
  }
  RETURN_IF_ERROR(deps_.runsc->Resume(id()));
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(G(*init_).state.Transition(Status::kRunning, what));
  }
  containerd::events::TaskResumed ev;
  ev.set_container_id(id());
  deps_.events->Publish(ev);
  return absl::OkStatus();
}

absl::Status Container::ResizePty(const std::string& exec_id, uint32_t width, uint32_t height) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<Process> p = Find(exec_id);
  if (p == nullptr) return absl::NotFoundError(NotFound(exec_id));
  if (!p->io) return absl::FailedPreconditionError("process has no stdio");
  return p->io->Resize(width, height);
}

absl::Status Container::CloseIO(const std::string& exec_id) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<Process> p = Find(exec_id);
  if (p == nullptr) return absl::NotFoundError(NotFound(exec_id));
  if (p->io) p->io->CloseStdin();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<runsc::ProcessInfo>> Container::Pids() { return deps_.runsc->Ps(id()); }

absl::StatusOr<runsc::Stats> Container::Stats() { return deps_.runsc->GetStats(id()); }

std::vector<std::string> Container::ExecIds() {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> ids;
  for (const auto& [eid, _] : execs_) ids.push_back(eid);
  return ids;
}

}  // namespace gvshim::process
