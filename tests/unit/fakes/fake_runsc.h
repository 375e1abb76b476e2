// An in-process stand-in for runsc, for unit tests of the process and task layers. It behaves like runsc
// where those layers can tell (pid files, exits, error codes) using real host processes:
//
//  - Create spawns one "container" process per id: `sh -c 'read code; echo exit $code; exit $code'`, whose
//  stdin
//    is a pipe the fake holds (ExitInit writes the code) and whose stdout/stderr are CreateOptions.stdio. Its
//    pid goes to the pid file, as runsc writes the sandbox pid. Being a child of the test binary, the
//    binary's reaper (TestReaper) collects its exit like the shim's collects the sandbox's.
//  - Start records the stdio it gets and, when stdio.out is given (a container joining a sandbox takes its
//    stdio at start), writes "started <id>\n" to it.
//  - StartExec runs the "args" of the OCI process JSON as a real child with the given stdio, writes its pid
//  to the
//    internal pid file and returns it, as a non-detached `runsc exec` does.
//  - Exec processes are tracked by pidfd, not by a reaper watch (the Container's Watch must get the exit).
//  - Kill with pid 0 signals the container process; with SIGKILL (or all) the container's execs die too, as
//  they
//    do when a sandbox goes away. Kill with a pid signals that exec.
//  - Wait blocks until the container process exited and returns its shell-style exit code.
//  - Delete(force) kills whatever is left of the container; NOT_FOUND for an unknown id.
//
// Every call is recorded; SetError makes a method fail; Block holds a method's calls until Unblock. All live
// children are SIGKILLed when the fake goes away. The test binary must be linked with test_main.cc, which
// starts the reaper (TestReaper).
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "shim/runsc/runsc.h"
#include "shim/sys/fd.h"
#include "shim/sys/spawn.h"
#include "tests/unit/fakes/test_reaper.h"

namespace gvshim::testing {

class FakeRunsc : public runsc::Runsc {
 public:
  struct Call {
    std::string method;
    std::string id;
    bool force = false;       // Delete
    int signal = 0, pid = 0;  // Kill
    bool all = false;         // Kill
    runsc::Stdio stdio;       // Create / Start / StartExec, as received (fds not owned)
    std::string bundle, pid_file, console_socket, process_json;
  };

  FakeRunsc() : state_(std::make_shared<Shared>()) {}
  ~FakeRunsc() override { KillAll(); }

  // SIGKILLs every live process the fake started and makes pending and later Waits return. For test teardown:
  // a Container that joined a sandbox joins its `runsc wait` thread when destroyed.
  void KillAll() {
    Targets t;
    {
      absl::MutexLock lock(&state_->mu);
      state_->shutting_down = true;
      for (auto& [id, c] : state_->containers) {
        if (!c.exited) t.pids.push_back(c.pid);
        for (auto& [_, fd] : c.execs) t.pidfds.push_back(fd);
        c.control.reset();
      }
    }
    t.Signal(SIGKILL);
  }

  // --- Test controls ---
  // Makes every later call of `method` ("Create", "Start", "Kill", ...) fail with `st`; OkStatus() clears it.
  void SetError(const std::string& method, absl::Status st) {
    absl::MutexLock lock(&state_->mu);
    if (st.ok()) {
      state_->errors.erase(method);
    } else {
      state_->errors[method] = st;
    }
  }
  // Makes later calls of `method` wait, once recorded and before they act, until Unblock(method) (or
  // KillAll).
  void Block(const std::string& method) {
    absl::MutexLock lock(&state_->mu);
    state_->blocked.insert(method);
  }
  void Unblock(const std::string& method) {
    absl::MutexLock lock(&state_->mu);
    state_->blocked.erase(method);
  }
  // Waits until `n` calls of `method` are held by Block.
  bool WaitBlocked(const std::string& method, int n, absl::Duration timeout) {
    absl::MutexLock lock(&state_->mu);
    auto held = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) { return state_->waiting[method] >= n; };
    return state_->mu.AwaitWithTimeout(absl::Condition(&held), timeout);
  }
  void SetStats(runsc::Stats s) {
    absl::MutexLock lock(&state_->mu);
    state_->stats = std::move(s);
  }
  // Lets the container process of `id` exit with `code` (0..255).
  absl::Status ExitInit(const std::string& id, int code) {
    absl::MutexLock lock(&state_->mu);
    auto it = state_->containers.find(id);
    if (it == state_->containers.end() || !it->second.control)
      return absl::NotFoundError("no container " + id);
    std::string line = absl::StrCat(code, "\n");
    absl::Status st = sys::WriteAll(it->second.control.get(), line.data(), line.size());
    it->second.control.reset();
    return st;
  }
  // The host pid of the container process of `id` (0 if unknown).
  pid_t ContainerPid(const std::string& id) {
    absl::MutexLock lock(&state_->mu);
    auto it = state_->containers.find(id);
    return it == state_->containers.end() ? 0 : it->second.pid;
  }
  // Waits until the container process of `id` has been reaped.
  bool WaitContainerExit(const std::string& id, absl::Duration timeout) {
    absl::MutexLock lock(&state_->mu);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
      auto it = state_->containers.find(id);
      return it != state_->containers.end() && it->second.exited;
    };
    return state_->mu.AwaitWithTimeout(absl::Condition(&done), timeout);
  }

  std::vector<Call> Calls() {
    absl::MutexLock lock(&state_->mu);
    return state_->calls;
  }
  std::vector<Call> CallsOf(const std::string& method) {
    absl::MutexLock lock(&state_->mu);
    std::vector<Call> out;
    for (const Call& c : state_->calls) {
      if (c.method == method) out.push_back(c);
    }
    return out;
  }
  std::vector<std::string> MethodNames() {
    absl::MutexLock lock(&state_->mu);
    std::vector<std::string> out;
    for (const Call& c : state_->calls) out.push_back(c.method);
    return out;
  }

  // --- runsc::Runsc ---
  absl::Status Create(const std::string& id, const runsc::CreateOptions& opts) override {
    Call call = NewCall("Create", id);
    call.stdio = opts.stdio;
    call.bundle = opts.bundle;
    call.pid_file = opts.pid_file;
    call.console_socket = opts.console_socket;
    if (absl::Status st = Record(call); !st.ok()) return st;
    {
      absl::MutexLock lock(&state_->mu);
      if (state_->containers.count(id)) return absl::AlreadyExistsError("runsc create " + id + ": exists");
    }
    auto control = sys::MakePipe();
    if (!control.ok()) return control.status();
    sys::SpawnOptions so;
    so.argv = {"/bin/sh", "-c", "read code; echo exit $code; exit $code"};
    so.stdin_fd = control->read.get();
    so.stdout_fd = opts.stdio.out;
    so.stderr_fd = opts.stdio.err;
    so.pdeathsig = 0;  // outlives the calling thread, like a sandbox
    auto pid = sys::Spawn(so, &testing::TestReaper());
    if (!pid.ok()) return pid.status();
    {
      absl::MutexLock lock(&state_->mu);
      Container& c = state_->containers[id];
      c.pid = *pid;
      c.control = std::move(control->write);
    }
    std::shared_ptr<Shared> state = state_;
    testing::TestReaper().Watch(*pid, [state, id](int ws) {
      absl::MutexLock lock(&state->mu);
      auto it = state->containers.find(id);
      if (it == state->containers.end()) return;
      it->second.exited = true;
      it->second.exit_code = sys::ExitCodeFromWaitStatus(ws);
    });
    if (opts.pid_file.empty()) return absl::OkStatus();
    std::ofstream out(opts.pid_file, std::ios::trunc);
    out << *pid;
    if (!out.good()) return absl::InternalError("fake runsc: write pid file " + opts.pid_file);
    return absl::OkStatus();
  }

  absl::Status Start(const std::string& id, const runsc::Stdio& stdio) override {
    Call call = NewCall("Start", id);
    call.stdio = stdio;
    if (absl::Status st = Record(call); !st.ok()) return st;
    if (absl::Status k = Known(id); !k.ok()) return k;
    if (stdio.out >= 0) {
      std::string line = absl::StrCat("started ", id, "\n");
      return sys::WriteAll(stdio.out, line.data(), line.size());
    }
    return absl::OkStatus();
  }

  absl::StatusOr<pid_t> StartExec(const std::string& id, const runsc::ExecOptions& opts) override {
    Call call = NewCall("StartExec", id);
    call.stdio = opts.stdio;
    call.process_json = opts.process_json;
    call.pid_file = opts.internal_pid_file;
    if (absl::Status st = Record(call); !st.ok()) return st;
    if (absl::Status k = Known(id); !k.ok()) return k;
    std::ifstream in(opts.process_json);
    std::stringstream ss;
    ss << in.rdbuf();
    auto j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("args") || !j["args"].is_array()) {
      return absl::InvalidArgumentError("fake runsc exec: bad process json " + opts.process_json);
    }
    sys::SpawnOptions so;
    for (const auto& a : j["args"]) {
      if (!a.is_string()) return absl::InvalidArgumentError("fake runsc exec: args must be strings");
      so.argv.push_back(a.get<std::string>());
    }
    so.stdin_fd = opts.stdio.in;
    so.stdout_fd = opts.stdio.out;
    so.stderr_fd = opts.stdio.err;
    so.new_session = opts.new_session;
    so.pdeathsig = 0;
    auto pid = sys::Spawn(so, &testing::TestReaper());
    if (!pid.ok()) return pid.status();
    // No reaper watch here: an exit collected before anyone watches is handed to the first Watch only, and
    // the Container must get it (nobody but the shim watches a real `runsc exec`). A pidfd tracks the
    // process.
    sys::UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, *pid, 0)));
    const pid_t p = *pid;
    {
      absl::MutexLock lock(&state_->mu);
      if (pidfd) state_->containers[id].execs[p] = std::make_shared<sys::UniqueFd>(std::move(pidfd));
    }
    if (!opts.internal_pid_file.empty()) {
      std::ofstream out(opts.internal_pid_file, std::ios::trunc);
      out << p;
    }
    return p;
  }

  absl::StatusOr<int> Wait(const std::string& id) override {
    if (absl::Status st = Record(NewCall("Wait", id)); !st.ok()) return st;
    absl::MutexLock lock(&state_->mu);
    if (!state_->containers.count(id))
      return absl::NotFoundError("runsc wait " + id + ": container does not exist");
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
      return state_->shutting_down || state_->containers[id].exited;
    };
    state_->mu.Await(absl::Condition(&done));
    if (!state_->containers[id].exited) return absl::UnavailableError("fake runsc is going away");
    return state_->containers[id].exit_code;
  }

  absl::Status Kill(const std::string& id, int signal, bool all, int pid) override {
    Call call = NewCall("Kill", id);
    call.signal = signal;
    call.all = all;
    call.pid = pid;
    if (absl::Status st = Record(call); !st.ok()) return st;
    Targets t;
    {
      absl::MutexLock lock(&state_->mu);
      auto it = state_->containers.find(id);
      if (it == state_->containers.end() || it->second.deleted) {
        return absl::NotFoundError("runsc kill " + id + ": container does not exist");
      }
      Container& c = it->second;
      if (pid != 0) {
        auto e = c.execs.find(pid);
        if (e == c.execs.end() || Exited(*e->second)) {
          return absl::NotFoundError(absl::StrCat("runsc kill ", id, ": no process ", pid));
        }
        t.pidfds.push_back(e->second);
      } else {
        if (c.exited) return absl::FailedPreconditionError("runsc kill " + id + ": container is not running");
        t.pids.push_back(c.pid);
        if (signal == SIGKILL || all) {
          for (auto& [_, fd] : c.execs) t.pidfds.push_back(fd);
        }
      }
    }
    t.Signal(signal);
    return absl::OkStatus();
  }

  absl::Status Delete(const std::string& id, bool force) override {
    Call call = NewCall("Delete", id);
    call.force = force;
    if (absl::Status st = Record(call); !st.ok()) return st;
    Targets t;
    sys::UniqueFd control;
    {
      absl::MutexLock lock(&state_->mu);
      auto it = state_->containers.find(id);
      if (it == state_->containers.end() || it->second.deleted) {
        return absl::NotFoundError("runsc delete " + id + ": container does not exist");
      }
      Container& c = it->second;
      if (!c.exited) {
        if (!force) return absl::FailedPreconditionError("runsc delete " + id + ": container is running");
        t.pids.push_back(c.pid);
      }
      for (auto& [_, fd] : c.execs) t.pidfds.push_back(fd);
      control = std::move(c.control);
      c.deleted = true;
    }
    t.Signal(SIGKILL);
    // Closed only after the kill: at end of input the fake container would exit 0 on its own, before the
    // SIGKILL a forced delete gives it.
    control.reset();
    return absl::OkStatus();
  }

  absl::StatusOr<runsc::State> GetState(const std::string& id) override {
    if (absl::Status st = Record(NewCall("GetState", id)); !st.ok()) return st;
    absl::MutexLock lock(&state_->mu);
    auto it = state_->containers.find(id);
    if (it == state_->containers.end())
      return absl::NotFoundError("runsc state " + id + ": container does not exist");
    runsc::State s;
    s.id = id;
    s.status = it->second.exited ? "stopped" : "running";
    s.pid = it->second.exited ? -1 : it->second.pid;
    return s;
  }

  absl::StatusOr<std::vector<runsc::ProcessInfo>> Ps(const std::string& id) override {
    if (absl::Status st = Record(NewCall("Ps", id)); !st.ok()) return st;
    absl::MutexLock lock(&state_->mu);
    auto it = state_->containers.find(id);
    if (it == state_->containers.end())
      return absl::NotFoundError("runsc ps " + id + ": container does not exist");
    // Inside a sandbox the container's processes have small pids; report 1 for the init and 2.. for execs.
    std::vector<runsc::ProcessInfo> out;
    runsc::ProcessInfo init;
    init.pid = 1;
    init.cmd = "sh";
    out.push_back(init);
    for (const auto& [_, fd] : it->second.execs) {
      if (Exited(*fd)) continue;
      runsc::ProcessInfo p;
      p.pid = static_cast<int>(out.size()) + 1;
      p.cmd = "exec";
      out.push_back(p);
    }
    return out;
  }

  absl::Status Pause(const std::string& id) override {
    if (absl::Status st = Record(NewCall("Pause", id)); !st.ok()) return st;
    if (absl::Status k = Known(id); !k.ok()) return k;
    return absl::OkStatus();
  }
  absl::Status Resume(const std::string& id) override {
    if (absl::Status st = Record(NewCall("Resume", id)); !st.ok()) return st;
    if (absl::Status k = Known(id); !k.ok()) return k;
    return absl::OkStatus();
  }
  absl::StatusOr<runsc::Stats> GetStats(const std::string& id) override {
    if (absl::Status st = Record(NewCall("GetStats", id)); !st.ok()) return st;
    absl::MutexLock lock(&state_->mu);
    if (!state_->containers.count(id))
      return absl::NotFoundError("runsc events " + id + ": container does not exist");
    return state_->stats;
  }
  absl::StatusOr<std::vector<runsc::State>> List() override {
    if (absl::Status st = Record(NewCall("List", "")); !st.ok()) return st;
    absl::MutexLock lock(&state_->mu);
    std::vector<runsc::State> out;
    for (const auto& [id, c] : state_->containers) {
      runsc::State st;
      st.id = id;
      st.status = c.exited ? "stopped" : "running";
      st.pid = c.exited ? -1 : c.pid;
      out.push_back(st);
    }
    return out;
  }

 private:
  struct Container {
    pid_t pid = 0;
    sys::UniqueFd control;  // write end of the container process's stdin
    bool exited = false;
    bool deleted = false;  // runsc delete ran: later calls see NOT_FOUND
    int exit_code = 0;
    std::map<pid_t, std::shared_ptr<sys::UniqueFd>> execs;  // exec processes (pidfds), exited ones included
  };
  // Shared with reaper callbacks, which may run after the fake is gone.
  struct Shared {
    absl::Mutex mu;
    std::vector<Call> calls ABSL_GUARDED_BY(mu);
    std::map<std::string, absl::Status> errors ABSL_GUARDED_BY(mu);
    std::map<std::string, Container> containers ABSL_GUARDED_BY(mu);
    runsc::Stats stats ABSL_GUARDED_BY(mu);
    bool shutting_down ABSL_GUARDED_BY(mu) = false;
    std::set<std::string> blocked ABSL_GUARDED_BY(mu);
    std::map<std::string, int> waiting ABSL_GUARDED_BY(mu);
  };

  // Processes to signal, collected under the lock and signalled after it: the container process by pid
  // (through the reaper, which never signals a pid whose exit it already collected), execs by pidfd.
  struct Targets {
    std::vector<pid_t> pids;
    std::vector<std::shared_ptr<sys::UniqueFd>> pidfds;
    void Signal(int sig) {
      for (pid_t p : pids) (void)testing::TestReaper().Signal(p, sig);
      for (auto& fd : pidfds) (void)::syscall(SYS_pidfd_send_signal, fd->get(), sig, nullptr, 0);
    }
  };
  // A pidfd is readable once its process has exited.
  static bool Exited(const sys::UniqueFd& pidfd) {
    struct pollfd p = {pidfd.get(), POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  }
  static Call NewCall(const std::string& method, const std::string& id) {
    Call c;
    c.method = method;
    c.id = id;
    return c;
  }
  // Records the call; returns the injected error for its method, if any.
  absl::Status Record(Call call) {
    absl::MutexLock lock(&state_->mu);
    std::string method = call.method;
    state_->calls.push_back(std::move(call));
    if (state_->blocked.contains(method)) {
      ++state_->waiting[method];
      auto released = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
        return state_->shutting_down || !state_->blocked.contains(method);
      };
      state_->mu.Await(absl::Condition(&released));
      --state_->waiting[method];
    }
    auto it = state_->errors.find(method);
    return it == state_->errors.end() ? absl::OkStatus() : it->second;
  }
  absl::Status Known(const std::string& id) {
    absl::MutexLock lock(&state_->mu);
    auto it = state_->containers.find(id);
    if (it == state_->containers.end() || it->second.deleted) {
      return absl::NotFoundError("runsc " + id + ": container does not exist");
    }
    return absl::OkStatus();
  }

  std::shared_ptr<Shared> state_;
};

// Hands out non-owning views of one FakeRunsc, for a task::RunscFactory (the service owns what the factory
// returns; the test keeps the fake).
class FakeRunscView : public runsc::Runsc {
 public:
  explicit FakeRunscView(FakeRunsc* fake) : fake_(fake) {}
  absl::Status Create(const std::string& id, const runsc::CreateOptions& o) override {
    return fake_->Create(id, o);
  }
  absl::Status Start(const std::string& id, const runsc::Stdio& s) override { return fake_->Start(id, s); }
  absl::StatusOr<pid_t> StartExec(const std::string& id, const runsc::ExecOptions& o) override {
    return fake_->StartExec(id, o);
  }
  absl::StatusOr<int> Wait(const std::string& id) override { return fake_->Wait(id); }
  absl::Status Kill(const std::string& id, int sig, bool all, int pid) override {
    return fake_->Kill(id, sig, all, pid);
  }
  absl::Status Delete(const std::string& id, bool force) override { return fake_->Delete(id, force); }
  absl::StatusOr<runsc::State> GetState(const std::string& id) override { return fake_->GetState(id); }
  absl::StatusOr<std::vector<runsc::ProcessInfo>> Ps(const std::string& id) override { return fake_->Ps(id); }
  absl::Status Pause(const std::string& id) override { return fake_->Pause(id); }
  absl::Status Resume(const std::string& id) override { return fake_->Resume(id); }
  absl::StatusOr<runsc::Stats> GetStats(const std::string& id) override { return fake_->GetStats(id); }
  absl::StatusOr<std::vector<runsc::State>> List() override { return fake_->List(); }

 private:
  FakeRunsc* fake_;
};

}  // namespace gvshim::testing
