// Stdio plumbing of one container process (init or exec), from the strings containerd sends to where the
// bytes go: fifos containerd reads/writes, file:// logs, binary:// logging programs, or a pty
// (terminal=true).
//
// Without a terminal the process gets pipes (child_stdin/out/err) and copy threads move bytes between them
// and the fifos/files; a binary:// logger gets the process's pipes directly (no copying). With a terminal the
// caller passes a ConsoleSocket path to runsc, receives the pty master and hands it to AttachConsole, which
// copies master -> stdout and stdin -> master.
//
// Every blocking wait of a copy thread is a poll() that also watches a stop eventfd, so closing never hangs
// on a fifo nobody reads.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "shim/sys/fd.h"
#include "shim/sys/process_watcher.h"

namespace gvshim::stdio {

struct StdioConfig {
  std::string stdin_path, stdout_path, stderr_path;
  bool terminal = false;
};

class ProcessIO {
 public:
  // How long Open waits for a binary:// logger to close its ready pipe.
  static constexpr absl::Duration kLoggerReadyTimeout = absl::Seconds(10);

  // Opens fifos/files, starts a binary:// logger (env CONTAINER_ID=id, CONTAINER_NAMESPACE=ns) and, without a
  // terminal, creates the pipes and starts copying. A fifo is never opened in a way that can block.
  // `reaper` (not owned; null in a process without one) collects the logger's exit.
  static absl::StatusOr<std::unique_ptr<ProcessIO>> Open(const StdioConfig& config, const std::string& id,
                                                         const std::string& ns, sys::ProcessWatcher* reaper);

  ProcessIO(const ProcessIO&) = delete;
  ProcessIO& operator=(const ProcessIO&) = delete;
  // Stops copying at once, joins the threads and closes every fd. Never blocks on a peer.
  ~ProcessIO();

  // The fds to give the child (runsc create/start/exec) as 0, 1, 2 when !terminal; -1 when the stream is
  // absent (or in terminal mode). child_stdout() == child_stderr() when both go to the same fifo or file.
  int child_stdin() const;
  int child_stdout() const;
  int child_stderr() const;
  // Closes the shim's copies of the child's ends, once the child was spawned; output EOF depends on it.
  void CloseChildSides();

  // Terminal mode: takes the pty master and starts copying master -> stdout and stdin -> master. When stdin
  // reaches EOF (containerd's writer closed, or CloseStdin), the console is hung up: the master is
  // closed, like containerd's runc shim does. FAILED_PRECONDITION without terminal or when already attached.
  absl::Status AttachConsole(sys::UniqueFd master);
  // TIOCSWINSZ on the master; FAILED_PRECONDITION when there is no console (any more).
  absl::Status Resize(uint32_t width, uint32_t height);

  // The process sees EOF on stdin when containerd's writer closes the fifo (runc's shim behaves the same).
  // CloseIO ends stdin even while that writer stays open: data still arriving is delivered until it pauses
  // (100 ms) or the writer closes, then the process gets EOF.
  void CloseStdin();

  // After the process exited: closes the child sides, waits up to `timeout` for the output copies to reach
  // EOF, then stops everything and closes every fd. Idempotent.
  void WaitAndClose(absl::Duration timeout);

  // The binary:// logger's pid. The shim's reaper reaps it; ProcessIO never waits for it.
  std::optional<pid_t> logger_pid() const { return logger_pid_; }
  const StdioConfig& config() const { return config_; }

 private:
  explicit ProcessIO(StdioConfig config) : config_(std::move(config)) {}
  absl::Status Init(const std::string& id, const std::string& ns, sys::ProcessWatcher* reaper);
  // Runs fn on a new thread; output copiers count towards what WaitAndClose waits for.
  void StartThread(bool is_output, std::function<void()> fn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartOutputCopy(sys::UniqueFd src, std::shared_ptr<sys::UniqueFd> sink, std::string what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StdinToConsole(sys::UniqueFd src, std::shared_ptr<sys::UniqueFd> master);
  void Shutdown();

  const StdioConfig config_;
  std::optional<pid_t> logger_pid_;
  // Never read: once written it stays readable and wakes every poll (stop all / console hang-up). Set before
  // any thread starts and closed only after all are joined.
  sys::UniqueFd stop_;
  sys::UniqueFd hangup_;
  sys::UniqueFd stdin_close_;  // signalled by CloseStdin (CloseIO): the stdin copy drains and closes

  mutable absl::Mutex mu_;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
  int running_outputs_ ABSL_GUARDED_BY(mu_) = 0;
  sys::UniqueFd child_stdin_ ABSL_GUARDED_BY(mu_);
  sys::UniqueFd child_stdout_ ABSL_GUARDED_BY(mu_);
  sys::UniqueFd child_stderr_ ABSL_GUARDED_BY(mu_);
  bool stderr_is_stdout_ ABSL_GUARDED_BY(mu_) = false;
  // Terminal mode, until AttachConsole hands them to the copy threads.
  sys::UniqueFd tty_stdin_src_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<sys::UniqueFd> tty_stdout_sink_ ABSL_GUARDED_BY(mu_);
  // Shared with the console copy threads; the last holder closes it (that is the hang-up).
  std::shared_ptr<sys::UniqueFd> master_ ABSL_GUARDED_BY(mu_);
  bool console_attached_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace gvshim::stdio
