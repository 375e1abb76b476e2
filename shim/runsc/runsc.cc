#include "shim/runsc/runsc.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <optional>
#include <regex>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "shim/base/hash.h"
#include "shim/base/log.h"
#include "shim/base/status.h"
#include "shim/sys/fd.h"
#include "shim/sys/spawn.h"
#include "shim/sys/subprocess.h"

namespace gvshim::runsc {
namespace {

using json = nlohmann::json;

// How much of runsc's message goes into a Status, and how much of the log is searched for one.
constexpr size_t kMaxMessage = 2048;
constexpr off_t kMaxLogScan = 64 << 10;

std::optional<json> ParseJson(const std::string& text) {
  json j = json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

template <typename T>
T Get(const json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->template get<T>();
  } catch (const json::exception&) {
    return fallback;
  }
}

uint64_t U64(const json& j, std::initializer_list<const char*> path) {
  const json* cur = &j;
  for (const char* key : path) {
    if (!cur->is_object()) return 0;
    auto it = cur->find(key);
    if (it == cur->end()) return 0;
    cur = &*it;
  }
  return cur->is_number_unsigned() || cur->is_number_integer() ? cur->get<uint64_t>() : 0;
}

std::string Shorten(std::string msg) {
  msg = std::string(absl::StripAsciiWhitespace(msg));
  if (msg.size() > kMaxMessage) msg = absl::StrCat("...", msg.substr(msg.size() - kMaxMessage));
  return msg;
}

// Splits text into its top-level JSON objects: runsc's JSON log has no separators between records.
std::vector<std::string> SplitObjects(const std::string& text) {
  std::vector<std::string> out;
  int depth = 0;
  bool in_string = false, escaped = false;
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = depth > 0;
    } else if (c == '{') {
      if (depth++ == 0) start = i;
    } else if (c == '}' && depth > 0) {
      if (--depth == 0) out.push_back(text.substr(start, i - start + 1));
    }
  }
  return out;
}

off_t FileSize(const std::string& path) {
  struct stat st;
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return 0;
  return st.st_size;
}

// What runsc appended to its log since `from` (the tail of it, at most kMaxLogScan bytes).
std::string ReadLogSince(const std::string& path, off_t from) {
  if (path.empty()) return "";
  sys::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return "";
  off_t end = FileSize(path);
  if (end <= from) return "";
  off_t begin = std::max(from, end - kMaxLogScan);
  if (::lseek(fd.get(), begin, SEEK_SET) < 0) return "";
  auto text = sys::ReadAll(fd.get(), static_cast<size_t>(end - begin));
  return text.ok() ? *text : "";
}

class RunscCli : public Runsc {
 public:
  RunscCli(GlobalOptions opts, sys::ProcessWatcher* reaper) : g_(std::move(opts)), reaper_(reaper) {}

  absl::Status Create(const std::string& id, const CreateOptions& o) override {
    std::vector<std::string> args = {"create"};
    AddFlag(args, "--bundle", o.bundle);
    AddFlag(args, "--pid-file", o.pid_file);
    AddFlag(args, "--console-socket", o.console_socket);
    AddFlag(args, "--user-log", o.user_log);
    args.push_back(Rid(id));
    return Invoke("create", id, std::move(args), &o.stdio, g_.timeout).status();
  }

  absl::Status Start(const std::string& id, const Stdio& stdio) override {
    return Invoke("start", id, {"start", Rid(id)}, &stdio, g_.timeout).status();
  }

  absl::StatusOr<pid_t> StartExec(const std::string& id, const ExecOptions& o) override {
    RETURN_IF_ERROR(CheckRoot("exec", id));
    std::vector<std::string> args = {"exec"};
    AddFlag(args, "--process", o.process_json);
    AddFlag(args, "--console-socket", o.console_socket);
    AddFlag(args, "--pid-file", o.pid_file);
    AddFlag(args, "--internal-pid-file", o.internal_pid_file);
    args.push_back(Rid(id));
    sys::SpawnOptions opts;
    opts.argv = Argv(std::move(args));
    opts.stdin_fd = o.stdio.in;
    opts.stdout_fd = o.stdio.out;
    opts.stderr_fd = o.stdio.err;
    opts.new_session = o.new_session;
    // The exec may outlive the thread that starts it; PDEATHSIG is tied to that thread.
    opts.pdeathsig = 0;
    auto pid = sys::Spawn(opts, reaper_);
    if (!pid.ok()) return Annotate(pid.status(), absl::StrCat("runsc exec ", id));
    return *pid;
  }

  absl::StatusOr<int> Wait(const std::string& id) override {
    ASSIGN_OR_RETURN(auto r, Invoke("wait", id, {"wait", Rid(id)}, nullptr, absl::InfiniteDuration()));
    auto code = ParseWait(r.out);
    if (!code.ok()) return Annotate(code.status(), absl::StrCat("runsc wait ", id));
    return code;
  }

  absl::Status Kill(const std::string& id, int signal, bool all, int pid) override {
    std::vector<std::string> args = {"kill"};
    if (all) args.push_back("--all");
    if (pid != 0) {
      args.push_back("--pid");
      args.push_back(absl::StrCat(pid));
    }
    args.push_back(Rid(id));
    args.push_back(absl::StrCat(signal));
    return Invoke("kill", id, std::move(args), nullptr, g_.timeout).status();
  }

  absl::Status Delete(const std::string& id, bool force) override {
    std::vector<std::string> args = {"delete"};
    if (force) args.push_back("--force");
    args.push_back(Rid(id));
    return Invoke("delete", id, std::move(args), nullptr, g_.timeout).status();
  }

  absl::StatusOr<State> GetState(const std::string& id) override {
    ASSIGN_OR_RETURN(auto r, Invoke("state", id, {"state", Rid(id)}, nullptr, g_.timeout));
    auto st = ParseState(r.out);
    if (!st.ok()) return Annotate(st.status(), absl::StrCat("runsc state ", id));
    return st;
  }

  absl::StatusOr<std::vector<ProcessInfo>> Ps(const std::string& id) override {
    ASSIGN_OR_RETURN(auto r, Invoke("ps", id, {"ps", Rid(id)}, nullptr, g_.timeout));
    auto ps = ParsePsTable(r.out);
    if (!ps.ok()) return Annotate(ps.status(), absl::StrCat("runsc ps ", id));
    return ps;
  }

  absl::Status Pause(const std::string& id) override {
    return Invoke("pause", id, {"pause", Rid(id)}, nullptr, g_.timeout).status();
  }

  absl::Status Resume(const std::string& id) override {
    return Invoke("resume", id, {"resume", Rid(id)}, nullptr, g_.timeout).status();
  }

  absl::StatusOr<Stats> GetStats(const std::string& id) override {
    ASSIGN_OR_RETURN(auto r, Invoke("events", id, {"events", "--stats", Rid(id)}, nullptr, g_.timeout));
    auto stats = ParseStats(r.out);
    if (!stats.ok()) return Annotate(stats.status(), absl::StrCat("runsc events --stats ", id));
    return stats;
  }

  absl::StatusOr<std::vector<State>> List() override {
    ASSIGN_OR_RETURN(auto r, Invoke("list", "", {"list", "--format", "json"}, nullptr, g_.timeout));
    auto list = ParseList(r.out);
    if (!list.ok()) return Annotate(list.status(), "runsc list");
    return list;
  }

 private:
  static void AddFlag(std::vector<std::string>& args, const char* flag, const std::string& value) {
    if (value.empty()) return;
    args.push_back(flag);
    args.push_back(value);
  }

  std::string Rid(const std::string& id) const { return g_.map_ids ? ContainerId(g_.root, id) : id; }

  // "runsc start web" (the caller's id; runsc's own is in runsc's log and `gvshim runsc-id`).
  static std::string What(absl::string_view cmd, absl::string_view id) {
    return id.empty() ? absl::StrCat("runsc ", cmd) : absl::StrCat("runsc ", cmd, " ", id);
  }

  absl::Status CheckRoot(absl::string_view cmd, absl::string_view id) const {
    if (g_.root.empty())
      return absl::FailedPreconditionError(absl::StrCat(What(cmd, id), ": no --root configured"));
    return absl::OkStatus();
  }

  std::vector<std::string> Argv(std::vector<std::string> args) const {
    std::vector<std::string> argv = {g_.binary};
    for (auto& a : GlobalArgs(g_)) argv.push_back(std::move(a));
    for (auto& a : args) argv.push_back(std::move(a));
    return argv;
  }

  // Runs one runsc command to completion. With `stdio` the command's stdio is the caller's (create and start
  // hand it to the sandbox, which must not hold our capture pipes), so error text comes from the log.
  absl::StatusOr<sys::SubprocessResult> Invoke(absl::string_view cmd, absl::string_view id,
                                               std::vector<std::string> args, const Stdio* stdio,
                                               absl::Duration timeout) {
    RETURN_IF_ERROR(CheckRoot(cmd, id));
    sys::SpawnOptions opts;
    opts.argv = Argv(std::move(args));
    // runsc sets the sandbox's network up at create (0.0~20221219) or start (0.0~20240729).
    opts.hide_proc_sys_net = g_.hide_net_sysctls && (cmd == "create" || cmd == "start");
    sys::UniqueFd dev_null;
    if (stdio != nullptr) {
      dev_null.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
      if (!dev_null.valid()) return ErrnoStatus(errno, absl::StrCat(What(cmd, id), ": open /dev/null"));
      opts.stdin_fd = stdio->in;
      opts.stdout_fd = stdio->out >= 0 ? stdio->out : dev_null.get();
      opts.stderr_fd = stdio->err >= 0 ? stdio->err : dev_null.get();
    }
    const off_t log_start = FileSize(g_.log_path);
    const absl::Time t0 = absl::Now();
    auto r = sys::RunSubprocess(reaper_, std::move(opts), timeout);
    log::Debugf("%s: %.1f ms", What(cmd, id), absl::ToDoubleMilliseconds(absl::Now() - t0));
    if (!r.ok()) return Annotate(r.status(), What(cmd, id));
    if (r->exit_code == 0) return r;

    std::string msg = Shorten(stdio == nullptr ? r->err : "");
    if (msg.empty() && g_.log_format == "json") {
      msg = Shorten(LastLogError(ReadLogSince(g_.log_path, log_start)).value_or(""));
    }
    if (msg.empty()) msg = "(no message from runsc)";
    return absl::Status(ClassifyError(msg), absl::StrCat(What(cmd, id), ": exit ", r->exit_code, ": ", msg));
  }

  GlobalOptions g_;
  sys::ProcessWatcher* const reaper_;  // not owned; null in a process without a reaper
};

}  // namespace

std::string ContainerId(const std::string& root, const std::string& id) {
  // Two FNV-1a-64 runs with different offsets over "root\0id": 128 bits, fixed width.
  const std::string key = absl::StrCat(root, absl::string_view("\0", 1), id);
  return absl::StrCat("gv", absl::Hex(Fnv1a64(key), absl::kZeroPad16),
                      absl::Hex(Fnv1a64(key, kFnv64Offset ^ 0x9e3779b97f4a7c15ull), absl::kZeroPad16));
}

std::unique_ptr<Runsc> NewRunscCli(GlobalOptions opts, sys::ProcessWatcher* reaper) {
  return std::make_unique<RunscCli>(std::move(opts), reaper);
}

std::vector<std::string> GlobalArgs(const GlobalOptions& o) {
  std::vector<std::string> args = {"--root", o.root};
  if (!o.log_path.empty()) {
    args.insert(args.end(), {"--log", o.log_path});
    if (!o.log_format.empty()) args.insert(args.end(), {"--log-format", o.log_format});
  }
  if (o.debug) {
    args.push_back("--debug");
    if (!o.debug_log.empty()) args.insert(args.end(), {"--debug-log", o.debug_log});
  }
  if (!o.platform.empty()) args.insert(args.end(), {"--platform", o.platform});
  if (!o.network.empty()) args.insert(args.end(), {"--network", o.network});
  if (o.oci_seccomp) args.push_back("--oci-seccomp");
  args.insert(args.end(), o.extra_flags.begin(), o.extra_flags.end());
  return args;
}

namespace {

// runsc's own wording of "no such container" and "not in a state for that", as printed by 0.0~20221219 and
// 0.0~20240729 (tests/unit/runsc/runsc_test.cc records them). A phrase counts only as a whole segment of
// runsc's message: at its start or after ": ", and at its end or before a newline or LastLogError's " (first
// error: ...)". Everything else, e.g. a workload's "executable file not found" or a mount "already exists",
// is UNKNOWN.
struct Phrase {
  std::regex re;
  absl::StatusCode code;
};

const std::vector<Phrase>& Phrases() {
  static const auto* phrases = [] {
    auto* v = new std::vector<Phrase>();
    auto add = [v](const std::string& phrase, absl::StatusCode code) {
      v->push_back(
          {std::regex("(^|: |\n)" + phrase + "($|\n| \\(first error: )", std::regex::optimize), code});
    };
    const std::string id = "\"[^\"\n]*\"";
    const std::string state = "(creating|created|running|paused|stopped)";
    add("loading (container|sandbox)( " + id + ")?: file does not exist", absl::StatusCode::kNotFound);
    add("container not found", absl::StatusCode::kNotFound);
    add("cannot [a-z ]+ container " + id + " in state " + state, absl::StatusCode::kFailedPrecondition);
    add("cannot signal a process inside container " + id + " in state " + state,
        absl::StatusCode::kFailedPrecondition);
    add("container " + id + " not started", absl::StatusCode::kFailedPrecondition);
    add("sandbox is not running", absl::StatusCode::kFailedPrecondition);
    add("sandbox no longer running and its exit status is unavailable",
        absl::StatusCode::kFailedPrecondition);
    add("cannot delete container that is not stopped without --force flag",
        absl::StatusCode::kFailedPrecondition);
    add("container already exists", absl::StatusCode::kAlreadyExists);
    return v;
  }();
  return *phrases;
}

}  // namespace

absl::StatusCode ClassifyError(const std::string& message) {
  for (const Phrase& p : Phrases()) {
    if (std::regex_search(message, p.re)) return p.code;
  }
  return absl::StatusCode::kUnknown;
}

namespace {

State StateFromJson(const json& j) {
  State s;
  s.id = Get<std::string>(j, "id", "");
  s.status = Get<std::string>(j, "status", "");
  s.pid = Get<int>(j, "pid", 0);
  s.bundle = Get<std::string>(j, "bundle", "");
  return s;
}

}  // namespace

absl::StatusOr<State> ParseState(const std::string& text) {
  auto j = ParseJson(text);
  if (!j || !j->is_object() || !j->contains("id")) {
    return absl::InternalError(absl::StrCat("unexpected state output: ", Shorten(text)));
  }
  return StateFromJson(*j);
}

absl::StatusOr<std::vector<State>> ParseList(const std::string& text) {
  auto j = ParseJson(text);
  if (!j || !(j->is_array() || j->is_null())) {
    return absl::InternalError(absl::StrCat("unexpected list output: ", Shorten(text)));
  }
  std::vector<State> out;
  if (j->is_null()) return out;  // runsc prints `null` when there are no containers
  for (const json& e : *j) {
    if (e.is_object()) out.push_back(StateFromJson(e));
  }
  return out;
}

absl::StatusOr<std::vector<ProcessInfo>> ParsePsTable(const std::string& table) {
  std::vector<std::string> lines = absl::StrSplit(table, '\n', absl::SkipWhitespace());
  if (lines.empty()) return absl::InternalError("empty ps output");
  std::vector<std::string> header = absl::StrSplit(lines[0], ' ', absl::SkipEmpty());
  auto col = [&](absl::string_view name) -> int {
    auto it = std::find(header.begin(), header.end(), name);
    return it == header.end() ? -1 : static_cast<int>(it - header.begin());
  };
  const int pid_col = col("PID"), ppid_col = col("PPID"), uid_col = col("UID"), tty_col = col("TTY"),
            stime_col = col("STIME"), time_col = col("TIME"), cmd_col = col("CMD");
  if (pid_col < 0) return absl::InternalError(absl::StrCat("unexpected ps header: ", lines[0]));
  std::vector<ProcessInfo> out;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> f = absl::StrSplit(lines[i], ' ', absl::SkipEmpty());
    auto field = [&](int c) -> std::string { return c >= 0 && c < static_cast<int>(f.size()) ? f[c] : ""; };
    ProcessInfo p;
    if (!absl::SimpleAtoi(field(pid_col), &p.pid)) {
      return absl::InternalError(absl::StrCat("unexpected ps line: ", lines[i]));
    }
    if (!absl::SimpleAtoi(field(ppid_col), &p.ppid)) p.ppid = 0;
    if (!absl::SimpleAtoi(field(uid_col), &p.uid)) p.uid = 0;
    p.tty = field(tty_col);
    p.stime = field(stime_col);
    p.time = field(time_col);
    // The command is the last column and may contain spaces.
    if (cmd_col >= 0 && cmd_col < static_cast<int>(f.size())) {
      p.cmd = absl::StrJoin(f.begin() + cmd_col, f.end(), " ");
    }
    out.push_back(std::move(p));
  }
  return out;
}

absl::StatusOr<Stats> ParseStats(const std::string& text) {
  auto objects = SplitObjects(text);
  std::optional<json> event;
  if (!objects.empty()) event = ParseJson(objects.front());
  if (!event || !event->is_object() || !event->contains("data") || !(*event)["data"].is_object()) {
    return absl::InternalError(absl::StrCat("unexpected events output: ", Shorten(text)));
  }
  const json& d = (*event)["data"];
  Stats s;
  s.cpu_total_ns = U64(d, {"cpu", "usage", "total"});
  s.cpu_user_ns = U64(d, {"cpu", "usage", "user"});
  s.cpu_kernel_ns = U64(d, {"cpu", "usage", "kernel"});
  if (auto it = d.find("cpu"); it != d.end() && it->is_object()) {
    if (auto u = it->find("usage"); u != it->end() && u->is_object()) {
      if (auto p = u->find("percpu"); p != u->end() && p->is_array()) {
        for (const json& v : *p) s.cpu_per_cpu_ns.push_back(v.is_number() ? v.get<uint64_t>() : 0);
      }
    }
  }
  s.memory_usage = U64(d, {"memory", "usage", "usage"});
  s.memory_max = U64(d, {"memory", "usage", "max"});
  s.memory_limit = U64(d, {"memory", "usage", "limit"});
  s.memory_failcnt = U64(d, {"memory", "usage", "failcnt"});
  s.swap_usage = U64(d, {"memory", "swap", "usage"});
  s.swap_limit = U64(d, {"memory", "swap", "limit"});
  s.kernel_usage = U64(d, {"memory", "kernel", "usage"});
  s.memory_cache = U64(d, {"memory", "cache"});
  if (s.memory_cache == 0) s.memory_cache = U64(d, {"memory", "raw", "cache"});
  s.memory_rss = U64(d, {"memory", "raw", "rss"});
  s.pids_current = U64(d, {"pids", "current"});
  s.pids_limit = U64(d, {"pids", "limit"});
  s.raw = d;
  return s;
}

absl::StatusOr<int> ParseWait(const std::string& text) {
  auto j = ParseJson(text);
  if (!j || !j->is_object() || !j->contains("exitStatus") || !(*j)["exitStatus"].is_number_integer()) {
    return absl::InternalError(absl::StrCat("unexpected wait output: ", Shorten(text)));
  }
  return (*j)["exitStatus"].get<int>();
}

std::optional<std::string> LastLogError(const std::string& log_chunk) {
  std::vector<std::string> errors;
  for (const std::string& obj : SplitObjects(log_chunk)) {
    auto j = ParseJson(obj);
    if (!j || !j->is_object()) continue;
    std::string level = Get<std::string>(*j, "level", "");
    std::string msg = Get<std::string>(*j, "msg", "");
    if ((level == "error" || level == "fatal" || level == "panic") && !msg.empty()) errors.push_back(msg);
  }
  if (errors.empty()) return std::nullopt;
  // runsc's last word is often a generic "cannot create sandbox: ... EOF"; the sandbox's first error names
  // the cause.
  if (errors.size() > 1 && errors.front() != errors.back()) {
    return absl::StrCat(errors.back(), " (first error: ", errors.front(), ")");
  }
  return errors.back();
}

}  // namespace gvshim::runsc
