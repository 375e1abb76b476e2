// A runner process's I/O thread: reads its frames (results, output, pongs) and stderr, and, when the process
// ends, answers the jobs it still had. Part of runner.h's Runner.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "shim/base/log.h"
#include "shim/execute/server/runner.h"
#include "shim/execute/server/runner_frames.h"
#include "shim/execute/server/runner_internal.h"

namespace gvshim::execute {

using runner_internal::DescribeWait;
using runner_internal::InternalErrorResult;
using runner_internal::kMaxFrame;
using runner_internal::kStderrTail;
using runner_internal::TailForMessage;

void Runner::IoLoop(std::shared_ptr<Proc> p) {
  std::string buf, errbuf;
  std::string protocol_error;
  bool out_open = true, err_open = true, exited = false;
  char chunk[65536];
  auto handle_err_line = [&](const std::string& line) {
    if (line.empty()) return;
    log::Infof("%s: %s", Name(), line);
  };
  auto read_err = [&]() {
    ssize_t n = ::read(p->err.get(), chunk, sizeof chunk);
    if (n <= 0) {
      if (n == 0 || (errno != EINTR && errno != EAGAIN)) err_open = false;
      return;
    }
    {
      absl::MutexLock lock(&p->mu);
      p->stderr_tail.append(chunk, static_cast<size_t>(n));
      if (p->stderr_tail.size() > kStderrTail) p->stderr_tail.erase(0, p->stderr_tail.size() - kStderrTail);
    }
    errbuf.append(chunk, static_cast<size_t>(n));
    size_t nl;
    while ((nl = errbuf.find('\n')) != std::string::npos) {
      handle_err_line(errbuf.substr(0, nl));
      errbuf.erase(0, nl + 1);
    }
    if (errbuf.size() > kStderrTail) {
      handle_err_line(errbuf);
      errbuf.clear();
    }
  };
  // Hands every complete frame in buf to HandleFrame.
  auto consume_frames = [&]() {
    protocol_error = SplitRunnerFrames(&buf, kMaxFrame,
                                       [&](const std::string& body) { return HandleFrame(p.get(), body); });
  };
  while (out_open && !exited && protocol_error.empty()) {
    struct pollfd pfds[3] = {{p->out.get(), POLLIN, 0},
                             {err_open ? p->err.get() : -1, POLLIN, 0},
                             {p->wake_read.get(), POLLIN, 0}};
    int r = ::poll(pfds, 3, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      protocol_error = absl::StrCat("poll: ", std::strerror(errno));
      break;
    }
    if (pfds[1].revents != 0) read_err();
    if (pfds[0].revents != 0) {
      ssize_t n = ::read(p->out.get(), chunk, sizeof chunk);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
        out_open = false;
      } else if (n > 0) {
        buf.append(chunk, static_cast<size_t>(n));
        consume_frames();
      }
    }
    if (pfds[2].revents != 0) exited = true;
  }
  // Frames the runner wrote just before it exited are still in the pipe.
  while (out_open && protocol_error.empty()) {
    struct pollfd pfd = {p->out.get(), POLLIN, 0};
    if (::poll(&pfd, 1, 0) <= 0) break;
    ssize_t n = ::read(p->out.get(), chunk, sizeof chunk);
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    consume_frames();
  }
  if (!protocol_error.empty()) {
    log::Warnf("%s broke the protocol (%s); killing it", Name(), protocol_error);
    (void)reaper_->Signal(p->pid, SIGKILL);
  }
  // Collect what is left on stderr (bounded: a process of the runner's may hold it open).
  const absl::Time drain_until = absl::Now() + absl::Seconds(1);
  while (err_open && absl::Now() < drain_until) {
    struct pollfd pfd = {p->err.get(), POLLIN, 0};
    int r = ::poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(drain_until - absl::Now())) + 1);
    if (r <= 0) break;
    read_err();
  }
  handle_err_line(errbuf);
  OnDeath(p, protocol_error);
}

std::string Runner::HandleFrame(Proc* p, const std::string& body) {
  absl::StatusOr<RunnerFrame> decoded = DecodeRunnerFrame(body);
  if (!decoded.ok()) return std::string(decoded.status().message());
  RunnerFrame& f = *decoded;
  if (f.type == "ready") {
    {
      absl::MutexLock lock(&mu_);
      start_failures_ = 0;
    }
    absl::MutexLock lock(&p->mu);
    p->ready = true;
    p->ready_frame = std::move(f.json);
    log::Infof("%s is ready (%s %s, pid %d in the sandbox)", Name(), f.runner, f.version, f.pid);
  } else if (f.type == "result") {
    {
      absl::MutexLock lock(&mu_);
      crashes_ = 0;
    }
    std::shared_ptr<Job> job;
    absl::MutexLock lock(&p->mu);
    auto it = p->jobs.find(f.id);
    if (it == p->jobs.end()) return "";  // cancelled earlier; nobody waits
    job = std::move(it->second);
    p->jobs.erase(it);
    job->done = true;
    job->result = std::move(f.json);
    job->hold.reset();
  } else if (f.type == "output") {
    absl::MutexLock lock(&p->mu);
    auto it = p->jobs.find(f.id);
    if (it != p->jobs.end()) it->second->output.emplace_back(f.to_stderr, std::move(f.data));
  } else if (f.type == "pong") {
    absl::MutexLock lock(&p->mu);
    p->pongs.insert(f.id);
  } else if (f.type == "error") {
    log::Warnf("%s reported: %s", Name(), f.message);
    absl::MutexLock lock(&p->mu);
    auto it = p->jobs.find(f.id);
    if (it != p->jobs.end()) {
      std::shared_ptr<Job> job = std::move(it->second);
      p->jobs.erase(it);
      job->done = true;
      job->result = InternalErrorResult(f.id, absl::StrCat("the runner refused the job: ", f.message));
      job->hold.reset();
    }
  } else {
    log::Debugf("%s: ignoring a frame of type %s", Name(), f.type);
  }
  return "";
}

void Runner::OnDeath(const std::shared_ptr<Proc>& p, const std::string& protocol_error) {
  {
    // The exit status normally arrives together with the EOF; wait briefly so the message can name it.
    absl::MutexLock lock(&p->mu);
    auto exited = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu) { return p->exited; };
    p->mu.AwaitWithTimeout(absl::Condition(&exited), absl::Seconds(2));
  }
  std::string reason;
  std::string tail;
  bool was_ready;
  {
    absl::MutexLock lock(&p->mu);
    was_ready = p->ready;
    reason = absl::StrCat(Name(), " ",
                          !protocol_error.empty() ? absl::StrCat("sent ", protocol_error)
                          : p->exited             ? DescribeWait(p->wait_status)
                                                  : std::string("closed its output"),
                          was_ready ? "" : " before it was ready");
    tail = TailForMessage(p->stderr_tail);
  }
  bool stopping;
  {
    absl::MutexLock lock(&mu_);
    stopping = stopped_;
    if (proc_ == p) proc_.reset();
    last_death_ = absl::Now();
    if (!stopping) {
      if (was_ready) {
        ++crashes_;
        last_error_ = reason;
      } else {
        ++start_failures_;
        last_error_ = tail.empty() ? reason : absl::StrCat(reason, "; stderr: ", tail);
      }
    }
    retired_.push_back(p);
  }
  if (stopping) {
    reason = absl::StrCat(Name(), ": runner shutting down");
  } else {
    log::Warnf("%s", tail.empty() || was_ready ? reason : absl::StrCat(reason, "; stderr: ", tail));
  }
  std::map<std::string, std::shared_ptr<Job>> jobs;
  {
    absl::MutexLock lock(&p->mu);
    p->dead = true;
    jobs.swap(p->jobs);
    for (auto& [id, job] : jobs) {
      job->done = true;
      job->result = InternalErrorResult(id, absl::StrCat(reason, " while the snippet ran"));
      job->hold.reset();
    }
  }
  {
    absl::MutexLock lock(&p->write_mu);
    p->in.reset();  // EOF: a runner that outlived its runsc exec process exits too
  }
  (void)reaper_->Signal(p->pid, SIGKILL);
}

}  // namespace gvshim::execute
