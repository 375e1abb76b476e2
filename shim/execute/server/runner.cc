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
#include "shim/execute/server/runner_internal.h"
#include "shim/execute/server/runner_sources.h"
#include "shim/sys/file.h"

namespace gvshim::execute {
namespace {

constexpr char kPath[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// What the runner uses to set a job up: namespaces and mounts (SYS_ADMIN), dropping to the job's uid/gid,
// owning the job's working directory, killing job process trees.
constexpr const char* kRunnerCaps[] = {"CAP_CHOWN",  "CAP_DAC_OVERRIDE", "CAP_FOWNER",   "CAP_KILL",
                                       "CAP_SETGID", "CAP_SETUID",       "CAP_SYS_ADMIN"};

}  // namespace

using runner_internal::kMaxFrame;

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

Runner::Runner(RunnerOptions opts, std::unique_ptr<runsc::Runsc> runsc, sys::ProcessWatcher* reaper)
    : opts_(std::move(opts)), runsc_(std::move(runsc)), reaper_(reaper) {}

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
  if (absl::Status nb = sys::SetNonBlocking(in.write.get()); !nb.ok()) {
    return Annotate(nb, absl::StrCat("start ", Name()));
  }
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
  reaper_->Watch(p->pid, [weak, wake_write](int ws) {
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
      (void)reaper_->Signal(p->pid, SIGKILL);
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
  const nlohmann::json& iso =
      p->ready_frame.is_object() ? p->ready_frame.value("isolation", nlohmann::json()) : nlohmann::json();
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
      if (auto m = iso->find("mode"); m != iso->end() && m->is_string())
        s.isolation_mode = m->get<std::string>();
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
    if (!gone) (void)reaper_->Signal(p->pid, SIGKILL);
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
