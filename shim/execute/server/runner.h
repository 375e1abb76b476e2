// Supervision of one runner (a language's long-lived interpreter process) in one container of the pod.
//
// The runner is started with a non-detached `runsc exec` whose stdin/stdout pipes carry the frames of
// runners/PROTOCOL.md; its stderr is logged and its tail kept for error messages. One I/O thread per runner
// process reads both pipes and hands result/output frames to the jobs waiting for them (by job id). The
// runsc exec process is watched with the process's reaper (given to the constructor).
//
// Lifecycle: started on the first job (or by Prestart); if it dies, its running jobs are answered
// internal_error and the next job starts a new one after a short backoff. A runner that dies (or does not
// become ready) at startup three times in a row is reported as FAILED_PRECONDITION with its stderr tail;
// after a cool-down one more attempt is allowed.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "shim/runsc/runsc.h"
#include "shim/sys/fd.h"
#include "shim/sys/process_watcher.h"

namespace gvshim::execute {

enum class Language { kPython, kJavaScript };
// "python" / "javascript"
const char* LanguageName(Language lang);

struct RunnerOptions {
  std::string container_id;  // the runsc container it runs in (a pod container's execute container)
  std::string served;        // the pod container whose image it uses (for messages)
  Language language = Language::kPython;
  std::string interpreter;  // path inside the container
  std::string bundle;       // host directory of the container's bundle (the process JSON goes there)
  std::vector<std::string> runner_args;  // options after the runner source (PROTOCOL.md "Options")
  // Whether jobs may run when the runner reports incomplete isolation (ready frame's isolation.complete).
  bool allow_weak_isolation = false;
  absl::Duration ready_timeout = absl::Seconds(60);
  absl::Duration startup_cooldown = absl::Seconds(10);  // after kMaxStartFailures failed starts
  absl::Duration stop_grace = absl::Seconds(3);         // shutdown frame + EOF, then SIGKILL
};

// The argv of the runner process ([python3, -I, -c, <src>, opts...] / [node, -e, <src>, --, opts...]).
std::vector<std::string> RunnerArgv(const RunnerOptions& opts);
// The OCI process JSON given to `runsc exec --process`: root (the runner needs it to unshare, mount and
// setuid), cwd "/", PATH only, and the capabilities the runner uses to set jobs up.
nlohmann::json RunnerProcessSpec(const RunnerOptions& opts);

struct RunnerStatus {
  bool started = false;                // a runner process exists
  bool ready = false;                  // ... and it sent `ready`
  pid_t pid = 0;                       // host pid of its runsc exec process
  std::string version;                 // from `ready`
  std::vector<std::string> isolation;  // the `ready` frame's isolation flags that are true
  std::string isolation_mode;          // "isolated", "weak", or "" before `ready`
  std::vector<std::string> missing;    // what the sandbox could not give (isolation.missing)
  std::string last_error;              // last start failure or crash
  bool failing = false;                // in the cool-down after repeated start failures
};

// Controls for one job.
struct JobControl {
  absl::Time deadline = absl::InfiniteFuture();
  std::function<bool()> cancelled;  // polled while the job runs
  // Streamed output (exec frames with "stream": true); called on the waiting thread, never under a lock.
  std::function<void(bool is_stderr, const std::string& data)> on_output;
  // Kept alive until the runner has reported the job finished (or died), even after Run returned.
  std::shared_ptr<void> hold;
  absl::Duration poll = absl::Milliseconds(20);
};

class Runner {
 public:
  static constexpr int kMaxStartFailures = 3;

  // `reaper` (not owned, started, outlives the runner) collects the runsc exec process's exit.
  Runner(RunnerOptions opts, std::unique_ptr<runsc::Runsc> runsc, sys::ProcessWatcher* reaper);
  ~Runner();  // Stop()
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  // Sends `exec` (an exec frame without "type"/"id", which are added) and waits for its result frame.
  // Errors: FAILED_PRECONDITION when the runner cannot be started (with its stderr tail), UNAVAILABLE when it
  // is stopping or died before taking the job, DEADLINE_EXCEEDED, CANCELLED (the job is cancelled in the
  // runner). A runner that dies while the job runs yields a synthetic internal_error result.
  absl::StatusOr<nlohmann::json> Run(nlohmann::json exec, const JobControl& ctl);

  // Starts the runner in the background if it is not running (eager start); does not wait.
  void Prestart();
  // Starts the runner if needed and waits until it is ready (or failed).
  absl::Status EnsureReady(absl::Time deadline);
  // Sends a ping and waits for the pong.
  absl::Status Ping(absl::Duration timeout);

  RunnerStatus Status();
  const RunnerOptions& options() const { return opts_; }

  // Stops the runner (shutdown frame, EOF, SIGKILL after stop_grace) and fails its jobs; later Run calls get
  // UNAVAILABLE. Idempotent.
  void Stop();

 private:
  struct Job {
    std::string id;
    bool done = false;
    nlohmann::json result;
    std::deque<std::pair<bool, std::string>> output;  // (is_stderr, bytes) not yet handed to on_output
    std::shared_ptr<void> hold;
  };
  // One runner process. Shared with the reaper callback and the I/O thread.
  struct Proc {
    pid_t pid = 0;
    absl::Time started;
    sys::UniqueFd in, out, err;  // our ends: its stdin (write), its stdout and stderr (read)
    sys::UniqueFd wake_read;     // readable once the runsc exec process has exited
    std::thread io;
    absl::Mutex join_mu;   // whoever joins `io` holds it
    absl::Mutex write_mu;  // one frame at a time on `in`
    absl::Mutex mu;
    bool ready ABSL_GUARDED_BY(mu) = false;
    bool dead ABSL_GUARDED_BY(mu) = false;  // stdout hit EOF or the runner broke the protocol
    bool exited ABSL_GUARDED_BY(mu) = false;
    int wait_status ABSL_GUARDED_BY(mu) = 0;
    nlohmann::json ready_frame ABSL_GUARDED_BY(mu);
    std::map<std::string, std::shared_ptr<Job>> jobs ABSL_GUARDED_BY(mu);
    std::set<std::string> pongs ABSL_GUARDED_BY(mu);
    std::string stderr_tail ABSL_GUARDED_BY(mu);
  };

  absl::StatusOr<std::shared_ptr<Proc>> StartLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::shared_ptr<Proc>> Ready(absl::Time deadline, const std::function<bool()>& cancelled);
  // FAILED_PRECONDITION naming what is missing when the runner cannot isolate jobs and weak isolation is not
  // allowed.
  absl::Status CheckIsolation(Proc* p);
  void IoLoop(std::shared_ptr<Proc> p);
  // Dispatches one frame; returns a description of a protocol violation ("" if none).
  std::string HandleFrame(Proc* p, const std::string& body);
  // Called once per process by its I/O thread at the end: updates the counters, fails the jobs, closes stdin.
  void OnDeath(const std::shared_ptr<Proc>& p, const std::string& protocol_error);
  std::string LastError();
  absl::Status Send(Proc* p, const nlohmann::json& frame);
  std::string Name() const;

  const RunnerOptions opts_;
  const std::unique_ptr<runsc::Runsc> runsc_;
  sys::ProcessWatcher* const reaper_;

  absl::Mutex mu_;
  std::shared_ptr<Proc> proc_ ABSL_GUARDED_BY(mu_);                  // current process, null if none
  std::vector<std::shared_ptr<Proc>> retired_ ABSL_GUARDED_BY(mu_);  // dead processes whose thread to join
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  int start_failures_ ABSL_GUARDED_BY(mu_) = 0;  // consecutive deaths before `ready`
  int crashes_ ABSL_GUARDED_BY(mu_) = 0;         // consecutive deaths after `ready` without a finished job
  absl::Time last_death_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t starts_ ABSL_GUARDED_BY(mu_) = 0;
  const absl::Duration poll_ = absl::Milliseconds(20);  // how often waits check cancellation
};

}  // namespace gvshim::execute
