#include "shim/execute/server/runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "shim/base/log.h"
#include "shim/base/status.h"
#include "shim/execute/server/runner_sources.h"
#include "shim/sys/file.h"
#include "shim/sys/reaper.h"

namespace gvshim::execute {
namespace {

constexpr size_t kMaxFrame = 64 << 20;  // as the runners
constexpr size_t kStderrTail = 4096;
constexpr char kPath[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// What the runner uses to set a job up: namespaces and mounts (SYS_ADMIN), dropping to the job's uid/gid,
// owning and removing job directories, killing job process trees, rlimits.
constexpr const char* kRunnerCaps[] = {"CAP_CHOWN",  "CAP_DAC_OVERRIDE", "CAP_FOWNER",   "CAP_KILL",
                                       "CAP_SETGID", "CAP_SETUID",       "CAP_SYS_ADMIN"};

std::string DescribeWait(int ws) {
  if (WIFSIGNALED(ws)) return absl::StrCat("was killed by signal ", WTERMSIG(ws));
  if (WIFEXITED(ws)) return absl::StrCat("exited with code ", WEXITSTATUS(ws));
  return absl::StrCat("ended (wait status ", ws, ")");
}

nlohmann::json InternalErrorResult(const std::string& id, const std::string& error) {
  return nlohmann::json{{"type", "result"},     {"id", id},          {"status", "internal_error"},
                        {"exit_code", nullptr}, {"signal", nullptr}, {"stdout", ""},
                        {"stderr", ""},         {"error", error}};
}

// The last non-empty line of the runner's stderr, for one-line messages.
std::string TailForMessage(const std::string& tail) {
  std::string t(absl::StripTrailingAsciiWhitespace(tail));
  if (t.size() > 1024) t = "..." + t.substr(t.size() - 1024);
  return t;
}

}  // namespace

const char* LanguageName(Language lang) { return lang == Language::kPython ? "python" : "javascript"; }

std::vector<std::string> RunnerArgv(const RunnerOptions& opts) {
  std::vector<std::string> argv;
  if (opts.language == Language::kPython) {
    argv = {opts.interpreter, "-I", "-c", std::string(PythonRunnerSource())};
  } else {
    argv = {opts.interpreter, "-e", std::string(NodeRunnerSource()), "--"};
  }
  argv.insert(argv.end(), opts.runner_args.begin(), opts.runner_args.end());
  return argv;
}

nlohmann::json RunnerProcessSpec(const RunnerOptions& opts) {
  nlohmann::json caps = nlohmann::json::array();
  for (const char* c : kRunnerCaps) caps.push_back(c);
  return nlohmann::json{
      {"terminal", false},
      {"user", {{"uid", 0}, {"gid", 0}}},
      {"args", RunnerArgv(opts)},
      {"env", {kPath}},
      {"cwd", "/"},
      {"capabilities", {{"bounding", caps}, {"effective", caps}, {"permitted", caps}}},
      {"noNewPrivileges", true},
  };
}

Runner::Runner(RunnerOptions opts, std::unique_ptr<runsc::Runsc> runsc)
    : opts_(std::move(opts)), runsc_(std::move(runsc)) {}

Runner::~Runner() { Stop(); }

std::string Runner::Name() const {
  return absl::StrCat(LanguageName(opts_.language), " runner for ",
                      opts_.served.empty() ? opts_.container_id : opts_.served);
}

absl::StatusOr<std::shared_ptr<Runner::Proc>> Runner::StartLocked() {
  const std::string base = absl::StrCat(opts_.bundle, "/execute-", LanguageName(opts_.language));
  const std::string spec_path = base + ".json";
  if (absl::Status st = sys::WriteFileAtomic(spec_path, RunnerProcessSpec(opts_).dump(), 0600); !st.ok()) {
    return Annotate(st, absl::StrCat("start ", Name()));
  }
  ASSIGN_OR_RETURN(sys::PipePair in, sys::MakePipe());
  ASSIGN_OR_RETURN(sys::PipePair out, sys::MakePipe());
  ASSIGN_OR_RETURN(sys::PipePair err, sys::MakePipe());
  // Our write end never blocks for good: Send polls so that a wedged runner cannot hold a request forever.
  ::fcntl(in.write.get(), F_SETFL, ::fcntl(in.write.get(), F_GETFL) | O_NONBLOCK);
  ASSIGN_OR_RETURN(sys::PipePair wake, sys::MakePipe(O_CLOEXEC | O_NONBLOCK));
  runsc::ExecOptions eo;
  eo.process_json = spec_path;
  eo.internal_pid_file = base + ".pid";
  eo.stdio = {in.read.get(), out.write.get(), err.write.get()};
  auto pid = runsc_->StartExec(opts_.container_id, eo);
  if (!pid.ok()) return Annotate(pid.status(), absl::StrCat("start ", Name()));
  auto p = std::make_shared<Proc>();
  p->pid = *pid;
  p->started = absl::Now();
  p->in = std::move(in.write);
  p->out = std::move(out.read);
  p->err = std::move(err.read);
  p->wake_read = std::move(wake.read);
  auto wake_write = std::make_shared<sys::UniqueFd>(std::move(wake.write));
  std::weak_ptr<Proc> weak = p;
  // Exits are also signalled through the wake pipe: a killed `runsc exec` may leave the runner's stdout open.
  sys::Reaper::Get().Watch(p->pid, [weak, wake_write](int ws) {
    if (auto sp = weak.lock()) {
      absl::MutexLock lock(&sp->mu);
      sp->exited = true;
      sp->wait_status = ws;
    }
    char b = 1;
    (void)!::write(wake_write->get(), &b, 1);
  });
  ++starts_;
  log::Infof("started %s (runsc exec pid %d)", Name(), p->pid);
  p->io = std::thread(&Runner::IoLoop, this, p);
  return p;
}

void Runner::Prestart() {
  absl::MutexLock lock(&mu_);
  if (stopped_ || proc_ != nullptr || start_failures_ >= kMaxStartFailures) return;
  auto p = StartLocked();
  if (!p.ok()) {
    ++start_failures_;
    last_death_ = absl::Now();
    last_error_ = std::string(p.status().message());
    log::Warnf("%s", last_error_);
    return;
  }
  proc_ = *p;
}

absl::Status Runner::EnsureReady(absl::Time deadline) { return Ready(deadline, nullptr).status(); }

absl::StatusOr<std::shared_ptr<Runner::Proc>> Runner::Ready(absl::Time deadline,
                                                            const std::function<bool()>& cancelled) {
  while (true) {
    {
      std::vector<std::shared_ptr<Proc>> retired;
      {
        absl::MutexLock lock(&mu_);
        retired.swap(retired_);
      }
      for (auto& r : retired) {
        absl::MutexLock lock(&r->join_mu);
        if (r->io.joinable()) r->io.join();
      }
    }
    std::shared_ptr<Proc> p;
    absl::Time backoff_until = absl::InfinitePast();
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return absl::UnavailableError(absl::StrCat(Name(), ": the execute service is stopping"));
      const absl::Time now = absl::Now();
      if (proc_ != nullptr) {
        p = proc_;
      } else {
        if (start_failures_ >= kMaxStartFailures) {
          if (now < last_death_ + opts_.startup_cooldown) {
            return absl::FailedPreconditionError(absl::StrFormat("%s failed to start %d times in a row: %s",
                                                                 Name(), start_failures_, last_error_));
          }
          start_failures_ = kMaxStartFailures - 1;  // cool-down over: one more attempt
        }
        const int failures = start_failures_ + crashes_;
        if (failures > 0) {
          backoff_until = last_death_ + std::min(absl::Milliseconds(100) * (1 << std::min(failures - 1, 5)),
                                                 absl::Seconds(2));
        }
        if (now >= backoff_until) {
          auto started = StartLocked();
          if (!started.ok()) {
            ++start_failures_;
            last_death_ = now;
            last_error_ = std::string(started.status().message());
            log::Warnf("%s", last_error_);
            continue;  // counted; the next round backs off or gives up
          }
          proc_ = p = *started;
        }
      }
    }
    if (p == nullptr) {
      // Backing off before a restart.
      if (backoff_until > deadline) {
        return absl::UnavailableError(absl::StrCat(Name(), " is restarting after a failure: ", LastError()));
      }
      if (cancelled && cancelled())
        return absl::CancelledError(absl::StrCat("cancelled while starting ", Name()));
      absl::SleepFor(std::min(backoff_until - absl::Now(), poll_));
      continue;
    }
    const absl::Time ready_deadline = p->started + opts_.ready_timeout;
    bool too_slow = false;
    {
      absl::MutexLock lock(&p->mu);
      auto settled = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu) { return p->ready || p->dead; };
      while (!settled()) {
        const absl::Time now = absl::Now();
        if (now >= ready_deadline) {
          too_slow = true;
          break;
        }
        if (now >= deadline) return absl::DeadlineExceededError(absl::StrCat(Name(), " is not ready yet"));
        if (cancelled && cancelled()) {
          return absl::CancelledError(absl::StrCat("cancelled while starting ", Name()));
        }
        p->mu.AwaitWithDeadline(absl::Condition(&settled), std::min({deadline, ready_deadline, now + poll_}));
      }
      if (!too_slow && p->ready && !p->dead) return p;
    }
    if (too_slow) {
      log::Warnf("%s: not ready after %s; killing it", Name(), absl::FormatDuration(opts_.ready_timeout));
      (void)sys::Reaper::Get().Signal(p->pid, SIGKILL);
      absl::MutexLock lock(&p->mu);
      auto dead = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu) { return p->dead; };
      p->mu.Await(absl::Condition(&dead));
    }
    // It died; OnDeath updated the counters before marking it dead. Go round again.
  }
}

absl::Status Runner::CheckIsolation(Proc* p) {
  if (opts_.allow_weak_isolation) return absl::OkStatus();
  absl::MutexLock lock(&p->mu);
  const nlohmann::json& iso = p->ready_frame.is_object() ? p->ready_frame.value("isolation", nlohmann::json())
                                                         : nlohmann::json();
  if (iso.is_object() && iso.value("complete", false)) return absl::OkStatus();
  std::vector<std::string> missing;
  if (iso.is_object() && iso.contains("missing") && iso["missing"].is_array()) {
    for (const auto& m : iso["missing"]) {
      if (m.is_string()) missing.push_back(m.get<std::string>());
    }
  }
  std::string notes;
  if (iso.is_object() && iso.contains("notes") && iso["notes"].is_array()) {
    for (const auto& n : iso["notes"]) {
      if (n.is_string()) absl::StrAppend(&notes, "; ", n.get<std::string>());
    }
  }
  auto has = [&](const char* m) { return std::find(missing.begin(), missing.end(), m) != missing.end(); };
  std::string hint;
  if (has("native") || has("launcher")) {
    hint = "; gvshim's helpers are not usable in the execute container (see [execute] helpers_dir)";
  } else if (has("mount_ns")) {
    hint = "; mounts are not private to a mount namespace here: runsc 0.0~20240729 or later is needed";
  }
  return absl::FailedPreconditionError(absl::StrCat(
      Name(), ": this sandbox cannot isolate snippets (missing: ",
      missing.empty() ? std::string("unknown") : absl::StrJoin(missing, ", "), notes, ")", hint,
      ". Set [execute] allow_weak_isolation = true to run snippets anyway (they can then see each other's "
      "files under /tmp and the execute container's processes)"));
}

absl::StatusOr<nlohmann::json> Runner::Run(nlohmann::json exec, const JobControl& ctl) {
  ASSIGN_OR_RETURN(std::shared_ptr<Proc> p, Ready(ctl.deadline, ctl.cancelled));
  RETURN_IF_ERROR(CheckIsolation(p.get()));
  auto job = std::make_shared<Job>();
  {
    absl::MutexLock lock(&mu_);
    job->id = absl::StrCat("j", ++next_id_);
  }
  job->hold = ctl.hold;
  exec["type"] = "exec";
  exec["id"] = job->id;
  exec["stream"] = static_cast<bool>(ctl.on_output);
  {
    absl::MutexLock lock(&p->mu);
    if (p->dead) return absl::UnavailableError(absl::StrCat(Name(), " went away before it took the job"));
    p->jobs[job->id] = job;
  }
  if (absl::Status st = Send(p.get(), exec); !st.ok()) {
    absl::MutexLock lock(&p->mu);
    p->jobs.erase(job->id);
    return absl::UnavailableError(absl::StrCat("send job to ", Name(), ": ", st.message()));
  }
  while (true) {
    std::deque<std::pair<bool, std::string>> chunks;
    bool done = false;
    nlohmann::json result;
    {
      absl::MutexLock lock(&p->mu);
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu) { return job->done || !job->output.empty(); };
      p->mu.AwaitWithDeadline(absl::Condition(&ready), std::min(ctl.deadline, absl::Now() + ctl.poll));
      chunks.swap(job->output);
      if (job->done) {
        done = true;
        result = std::move(job->result);
      }
    }
    if (ctl.on_output) {
      for (auto& [is_err, data] : chunks) ctl.on_output(is_err, data);
    }
    if (done) return result;
    const bool cancelled = ctl.cancelled && ctl.cancelled();
    if (cancelled || absl::Now() >= ctl.deadline) {
      // The runner kills the job's process tree and still answers; the job (and ctl.hold) stays registered
      // until then, so its slot stays taken while the snippet is being killed.
      (void)Send(p.get(), nlohmann::json{{"type", "cancel"}, {"id", job->id}});
      if (cancelled) return absl::CancelledError("execution cancelled by the client");
      return absl::DeadlineExceededError("deadline passed while the snippet ran");
    }
  }
}

absl::Status Runner::Send(Proc* p, const nlohmann::json& frame) {
  std::string body = frame.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (body.size() > kMaxFrame) {
    return absl::InvalidArgumentError(
        absl::StrFormat("frame of %d bytes exceeds %d", body.size(), kMaxFrame));
  }
  const uint32_t n = static_cast<uint32_t>(body.size());
  std::string data;
  data.reserve(body.size() + 4);
  data.push_back(static_cast<char>(n >> 24));
  data.push_back(static_cast<char>(n >> 16));
  data.push_back(static_cast<char>(n >> 8));
  data.push_back(static_cast<char>(n));
  data += body;
  absl::MutexLock lock(&p->write_mu);
  size_t off = 0;
  while (off < data.size()) {
    if (!p->in.valid()) return absl::UnavailableError("runner input is closed");
    ssize_t w = ::write(p->in.get(), data.data() + off, data.size() - off);
    if (w > 0) {
      off += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno != EAGAIN) return ErrnoStatus(errno, "write to runner");
    {
      absl::MutexLock l(&p->mu);
      if (p->dead) return absl::UnavailableError("runner died");
    }
    struct pollfd pfd = {p->in.get(), POLLOUT, 0};
    (void)::poll(&pfd, 1, 100);
  }
  return absl::OkStatus();
}

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
    size_t off = 0;
    while (buf.size() - off >= 4 && protocol_error.empty()) {
      const auto* b = reinterpret_cast<const unsigned char*>(buf.data() + off);
      const size_t len = (size_t{b[0]} << 24) | (size_t{b[1]} << 16) | (size_t{b[2]} << 8) | size_t{b[3]};
      if (len > kMaxFrame) {
        protocol_error = absl::StrFormat("a frame of %d bytes", len);
        break;
      }
      if (buf.size() - off - 4 < len) break;
      std::string err = HandleFrame(p.get(), buf.substr(off + 4, len));
      if (!err.empty()) protocol_error = err;
      off += 4 + len;
    }
    buf.erase(0, off);
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
    (void)sys::Reaper::Get().Signal(p->pid, SIGKILL);
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
  nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return "a frame that is not a JSON object";
  auto str = [&](const char* key) -> std::string {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  const std::string type = str("type");
  const std::string id = str("id");
  if (type == "ready") {
    {
      absl::MutexLock lock(&mu_);
      start_failures_ = 0;
    }
    absl::MutexLock lock(&p->mu);
    p->ready = true;
    p->ready_frame = j;
    log::Infof("%s is ready (%s %s, pid %d in the sandbox)", Name(), str("runner"), str("version"),
               j.value("pid", 0));
  } else if (type == "result") {
    {
      absl::MutexLock lock(&mu_);
      crashes_ = 0;
    }
    std::shared_ptr<Job> job;
    absl::MutexLock lock(&p->mu);
    auto it = p->jobs.find(id);
    if (it == p->jobs.end()) return "";  // cancelled earlier; nobody waits
    job = std::move(it->second);
    p->jobs.erase(it);
    job->done = true;
    job->result = std::move(j);
    job->hold.reset();
  } else if (type == "output") {
    std::string data;
    if (!absl::Base64Unescape(str("data"), &data)) return "an output frame with invalid base64";
    absl::MutexLock lock(&p->mu);
    auto it = p->jobs.find(id);
    if (it != p->jobs.end()) it->second->output.emplace_back(str("stream") == "stderr", std::move(data));
  } else if (type == "pong") {
    absl::MutexLock lock(&p->mu);
    p->pongs.insert(id);
  } else if (type == "error") {
    log::Warnf("%s reported: %s", Name(), str("message"));
    absl::MutexLock lock(&p->mu);
    auto it = p->jobs.find(id);
    if (it != p->jobs.end()) {
      std::shared_ptr<Job> job = std::move(it->second);
      p->jobs.erase(it);
      job->done = true;
      job->result = InternalErrorResult(id, absl::StrCat("the runner refused the job: ", str("message")));
      job->hold.reset();
    }
  } else {
    log::Debugf("%s: ignoring a frame of type %s", Name(), type);
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
  (void)sys::Reaper::Get().Signal(p->pid, SIGKILL);
}

absl::Status Runner::Ping(absl::Duration timeout) {
  std::shared_ptr<Proc> p;
  std::string id;
  {
    absl::MutexLock lock(&mu_);
    p = proc_;
    id = absl::StrCat("p", ++next_id_);
  }
  if (p == nullptr) return absl::UnavailableError(absl::StrCat(Name(), " is not running"));
  {
    absl::MutexLock lock(&p->mu);
    if (!p->ready) return absl::UnavailableError(absl::StrCat(Name(), " is not ready"));
  }
  RETURN_IF_ERROR(Send(p.get(), nlohmann::json{{"type", "ping"}, {"id", id}}));
  absl::MutexLock lock(&p->mu);
  auto answered = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu) { return p->dead || p->pongs.contains(id); };
  if (!p->mu.AwaitWithTimeout(absl::Condition(&answered), timeout)) {
    return absl::DeadlineExceededError(absl::StrCat(Name(), " did not answer a ping"));
  }
  if (p->dead) return absl::UnavailableError(absl::StrCat(Name(), " died"));
  p->pongs.erase(id);
  return absl::OkStatus();
}

std::string Runner::LastError() {
  absl::MutexLock lock(&mu_);
  return last_error_;
}

RunnerStatus Runner::Status() {
  RunnerStatus s;
  std::shared_ptr<Proc> p;
  {
    absl::MutexLock lock(&mu_);
    p = proc_;
    s.last_error = last_error_;
    s.failing = start_failures_ >= kMaxStartFailures && absl::Now() < last_death_ + opts_.startup_cooldown;
  }
  if (p == nullptr) return s;
  s.started = true;
  s.pid = p->pid;
  absl::MutexLock lock(&p->mu);
  s.ready = p->ready && !p->dead;
  if (p->ready_frame.is_object()) {
    auto v = p->ready_frame.find("version");
    if (v != p->ready_frame.end() && v->is_string()) s.version = v->get<std::string>();
    auto iso = p->ready_frame.find("isolation");
    if (iso != p->ready_frame.end() && iso->is_object()) {
      for (auto& [k, val] : iso->items()) {
        if (val.is_boolean() && val.get<bool>() && k != "complete" && k != "root") s.isolation.push_back(k);
      }
      if (auto m = iso->find("mode"); m != iso->end() && m->is_string()) s.isolation_mode = m->get<std::string>();
      if (auto m = iso->find("missing"); m != iso->end() && m->is_array()) {
        for (const auto& x : *m) {
          if (x.is_string()) s.missing.push_back(x.get<std::string>());
        }
      }
    }
  }
  return s;
}

void Runner::Stop() {
  std::shared_ptr<Proc> p;
  std::vector<std::shared_ptr<Proc>> retired;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_ && proc_ == nullptr && retired_.empty()) return;
    stopped_ = true;
    p = proc_;
  }
  if (p != nullptr) {
    (void)Send(p.get(), nlohmann::json{{"type", "shutdown"}});
    {
      absl::MutexLock lock(&p->write_mu);
      p->in.reset();
    }
    bool gone;
    {
      absl::MutexLock lock(&p->mu);
      auto ended = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu) { return p->exited; };
      gone = p->mu.AwaitWithTimeout(absl::Condition(&ended), opts_.stop_grace);
    }
    if (!gone) (void)sys::Reaper::Get().Signal(p->pid, SIGKILL);
    absl::MutexLock lock(&p->join_mu);
    if (p->io.joinable()) p->io.join();
  }
  {
    absl::MutexLock lock(&mu_);
    retired.swap(retired_);
  }
  for (auto& r : retired) {
    absl::MutexLock lock(&r->join_mu);
    if (r->io.joinable()) r->io.join();
  }
  ::unlink(absl::StrCat(opts_.bundle, "/execute-", LanguageName(opts_.language), ".json").c_str());
  ::unlink(absl::StrCat(opts_.bundle, "/execute-", LanguageName(opts_.language), ".pid").c_str());
}

}  // namespace gvshim::execute
