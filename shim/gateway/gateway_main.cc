#include "shim/gateway/gateway_main.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <regex>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "shim/base/log.h"
#include "shim/cli/cli.h"
#include "shim/gateway/auth.h"
#include "shim/gateway/discovery.h"
#include "shim/gateway/http_server.h"
#include "shim/gateway/metrics.h"
#include "shim/gateway/pool.h"
#include "shim/gateway/rate_limit.h"
#include "shim/gateway/service.h"
#include "shim/sys/file.h"

namespace gvshim::gateway {
namespace {

constexpr char kDefaultDir[] = "/run/gvshim/execute";

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

// A rate-limit setting: flag, else environment, else RAGFlow's default; "none" (ours) turns it off.
absl::StatusOr<std::optional<std::vector<Rate>>> RateSetting(const std::string& flag, const char* env,
                                                             const char* fallback, std::string* text_out) {
  std::string text = !flag.empty() ? flag : !Env(env).empty() ? Env(env) : fallback;
  *text_out = text;
  if (absl::AsciiStrToLower(absl::StripAsciiWhitespace(text)) == "none") return std::nullopt;
  auto rates = ParseRates(text);
  if (!rates.ok()) return absl::InvalidArgumentError(absl::StrCat(env, ": ", rates.status().message()));
  return std::optional<std::vector<Rate>>(std::move(*rates));
}

}  // namespace

std::optional<absl::Duration> ParseSandboxTimeout(const std::string& text) {
  static const std::regex kForm(R"(^(?:(\d+)m)?(?:(\d+)s)?$)");
  std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  std::smatch m;
  if (t.empty() || !std::regex_match(t, m, kForm)) return std::nullopt;
  int64_t minutes = 0, seconds = 0;
  if (m[1].matched && !absl::SimpleAtoi(m[1].str(), &minutes)) return std::nullopt;
  if (m[2].matched && !absl::SimpleAtoi(m[2].str(), &seconds)) return std::nullopt;
  absl::Duration d = absl::Minutes(minutes) + absl::Seconds(seconds);
  if (d <= absl::ZeroDuration()) return std::nullopt;
  return d;
}

absl::Status SplitHostPort(const std::string& text, std::string* host, uint16_t* port) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError("--listen wants HOST:PORT, got " + text);
  std::string h = text.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  uint32_t p;
  if (h.empty() || !absl::SimpleAtoi(text.substr(colon + 1), &p) || p > 65535) {
    return absl::InvalidArgumentError("--listen wants HOST:PORT, got " + text);
  }
  *host = h;
  *port = static_cast<uint16_t>(p);
  return absl::OkStatus();
}

CLI::App* AddGatewayCommand(CLI::App& parent, GatewayFlags& f) {
  CLI::App* cmd =
      cli::AddCommand(parent, "gateway",
                      "RAGFlow's sandbox executor-manager API (GET /healthz, POST /run) on the Execute "
                      "services of this node's pool pods (docs/gateway.md)");
  cmd->footer(absl::StrCat(
      "Environment (RAGFlow's names), used when the flag is not given: SANDBOX_EXECUTOR_MANAGER_API_TOKEN,\n"
      "SANDBOX_EXECUTOR_MANAGER_ALLOW_UNAUTHENTICATED, SANDBOX_RUN_RATE_LIMIT (default 120/minute),\n"
      "SANDBOX_RUN_PREAUTH_RATE_LIMIT (default 30/minute), SANDBOX_TIMEOUT (default 10s). --dir defaults to\n"
      "$GVSHIM_EXECUTE_DIR, else ",
      kDefaultDir, "."));
  cmd->add_option("--listen", f.listen, "HOST:PORT or [V6]:PORT to serve on")->capture_default_str();
  cmd->add_option("--dir", f.dir, "discovery directory of the Execute services");
  cmd->add_option("--token-file", f.token_file, "a file holding the API token (re-read when it changes)");
  cmd->add_flag("--allow-unauthenticated", f.allow_unauthenticated, "serve /run without a token configured");
  cmd->add_option("--run-rate-limit", f.run_rate,
                  "requests to /run per client, e.g. 3/minute; none: no limit");
  cmd->add_option("--preauth-rate-limit", f.preauth_rate,
                  "requests before authentication per client, e.g. 30/minute; none: no limit");
  cli::AddUnsigned(*cmd, "--timeout-ms", f.timeout_ms, "wall-clock limit of a snippet (0: SANDBOX_TIMEOUT)");
  cli::AddUnsigned(*cmd, "--memory-bytes", f.memory_bytes, "memory limit of a snippet (0: the pod's)");
  cli::AddUnsigned(*cmd, "--cpu-time-ms", f.cpu_time_ms, "CPU time limit of a snippet (0: the pod's)");
  cli::AddUnsigned(*cmd, "--output-bytes", f.output_bytes, "output limit of a snippet (0: the pod's)");
  cli::AddUnsigned(*cmd, "--max-processes", f.max_processes, "process limit of a snippet (0: the pod's)");
  cli::AddUnsigned(*cmd, "--file-size-bytes", f.file_size_bytes,
                   "file size limit of a snippet (0: the pod's)");
  cmd->add_flag("--allow-network", f.allow_network, "let snippets use the network");
  cli::AddRepeated(*cmd, "--select-annotation", f.select_annotations, "serve only pods with this annotation")
      ->type_name("KEY=VALUE");
  cmd->add_option("--select-pod", f.select_pod, "serve only pods whose NAMESPACE/NAME starts with this")
      ->type_name("NS/PREFIX");
  cli::AddUnsigned(*cmd, "--pod-concurrency", f.pod_concurrency, "snippets at once per pod", 1)
      ->capture_default_str();
  cli::AddUnsigned(*cmd, "--max-queue", f.max_queue, "requests waiting for a pod")->capture_default_str();
  cli::AddUnsigned(*cmd, "--queue-timeout-ms", f.queue_timeout_ms, "how long a request waits for a pod")
      ->capture_default_str();
  cli::AddUnsigned(*cmd, "--max-body-bytes", f.max_body_bytes, "largest request body", 1)
      ->capture_default_str();
  cli::AddUnsigned(*cmd, "--max-connections", f.max_connections, "open connections at once", 1)
      ->capture_default_str();
  cli::AddUnsigned(*cmd, "--health-interval-ms", f.health_interval_ms, "how often the pool pods are checked",
                   1)
      ->capture_default_str();
  cmd->add_option("--log-level", f.log_level, "debug, info, warn or error");
  cmd->add_option("--port-file", f.port_file,
                  "write the bound port here once listening (for --listen HOST:0)");
  return cmd;
}

int RunGateway(const GatewayFlags& f) {
  // Signals first: blocked before any thread exists (every thread inherits the mask), so that only the
  // sigwait at the end sees SIGTERM/SIGINT. Writes to closed connections must not kill the process.
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t stop_set;
  sigemptyset(&stop_set);
  sigaddset(&stop_set, SIGTERM);
  sigaddset(&stop_set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_set, nullptr);
  const std::string& token_file = f.token_file;
  std::string dir = f.dir;
  uint64_t timeout_ms = f.timeout_ms;
  auto fail = [](const std::string& msg) {
    std::fprintf(stderr, "gvshim gateway: %s\n", msg.c_str());
    return 1;
  };
  if (!f.log_level.empty()) {
    log::Level l;
    if (!log::ParseLevel(f.log_level, &l)) return fail("--log-level: unknown level " + f.log_level);
    log::SetLevel(l);
  }
  if (dir.empty()) dir = !Env("GVSHIM_EXECUTE_DIR").empty() ? Env("GVSHIM_EXECUTE_DIR") : kDefaultDir;
  HttpServerOptions http_opts;
  if (auto st = SplitHostPort(f.listen, &http_opts.host, &http_opts.port); !st.ok())
    return fail(std::string(st.message()));
  http_opts.max_body_bytes = f.max_body_bytes;
  http_opts.max_connections = static_cast<int>(f.max_connections);

  // Authentication.
  std::unique_ptr<TokenSource> tokens;
  if (!token_file.empty()) {
    auto t = TokenSource::FromFile(token_file);
    if (!t.ok()) return fail(std::string(t.status().message()));
    tokens = std::move(*t);
  } else {
    tokens = TokenSource::Fixed(Env("SANDBOX_EXECUTOR_MANAGER_API_TOKEN"));
  }
  bool allow_unauth =
      f.allow_unauthenticated || IsTruthyFlag(Env("SANDBOX_EXECUTOR_MANAGER_ALLOW_UNAUTHENTICATED"));
  Authenticator auth(std::move(tokens), allow_unauth);
  if (auth.HasToken()) {
    log::Infof(
        "gateway: /run authentication: shared-secret token configured%s",
        token_file.empty() ? " (SANDBOX_EXECUTOR_MANAGER_API_TOKEN)" : (" (" + token_file + ")").c_str());
  } else if (allow_unauth) {
    log::Warnf(
        "gateway: SECURITY WARNING: no API token is configured and unauthenticated access is allowed: "
        "anyone who can reach this port can run code in the sandbox pool. Set "
        "SANDBOX_EXECUTOR_MANAGER_API_TOKEN or --token-file.");
  } else {
    log::Errorf("gateway: no API token is configured: /run answers 503 until one is. %s",
                kNotConfiguredDetail);
  }

  // Rate limits.
  std::string run_rate_text, preauth_rate_text;
  auto run_rates = RateSetting(f.run_rate, "SANDBOX_RUN_RATE_LIMIT", "120/minute", &run_rate_text);
  if (!run_rates.ok()) return fail(std::string(run_rates.status().message()));
  auto preauth_rates =
      RateSetting(f.preauth_rate, "SANDBOX_RUN_PREAUTH_RATE_LIMIT", "30/minute", &preauth_rate_text);
  if (!preauth_rates.ok()) return fail(std::string(preauth_rates.status().message()));
  if (preauth_rates->has_value() && (*preauth_rates)->size() != 1) {
    return fail("SANDBOX_RUN_PREAUTH_RATE_LIMIT must be a single rate like 30/minute");
  }
  Clock clock = [] { return absl::Now(); };
  std::unique_ptr<FixedWindowLimiter> run_limiter;
  std::unique_ptr<SlidingWindowLimiter> preauth_limiter;
  if (run_rates->has_value()) run_limiter = std::make_unique<FixedWindowLimiter>(**run_rates, clock);
  if (preauth_rates->has_value()) {
    preauth_limiter = std::make_unique<SlidingWindowLimiter>((**preauth_rates)[0], clock);
  }

  // Per-snippet limits: flags, else SANDBOX_TIMEOUT for the wall clock (RAGFlow's 10 s when unset or
  // invalid).
  ServiceOptions svc_opts;
  if (timeout_ms == 0) {
    std::string env = Env("SANDBOX_TIMEOUT");
    auto t = env.empty() ? std::nullopt : ParseSandboxTimeout(env);
    if (!env.empty() && !t.has_value())
      log::Warnf("gateway: SANDBOX_TIMEOUT=%s does not parse, using 10s", env);
    timeout_ms = static_cast<uint64_t>(absl::ToInt64Milliseconds(t.value_or(absl::Seconds(10))));
  }
  svc_opts.limits.set_wall_timeout_ms(timeout_ms);
  svc_opts.limits.set_memory_bytes(f.memory_bytes);
  svc_opts.limits.set_cpu_time_ms(f.cpu_time_ms);
  svc_opts.limits.set_output_bytes(f.output_bytes);
  svc_opts.limits.set_max_processes(f.max_processes);
  svc_opts.limits.set_file_size_bytes(f.file_size_bytes);
  svc_opts.allow_network = f.allow_network;
  svc_opts.queue_timeout = absl::Milliseconds(static_cast<int64_t>(f.queue_timeout_ms));
  svc_opts.max_body_bytes = f.max_body_bytes;

  // The pool.
  auto selector = ParseSelector(f.select_annotations, f.select_pod);
  if (!selector.ok()) return fail(std::string(selector.status().message()));
  PoolOptions pool_opts;
  pool_opts.dir = dir;
  pool_opts.selector = *selector;
  pool_opts.pod_concurrency = static_cast<int>(f.pod_concurrency);
  pool_opts.max_queue = static_cast<int>(f.max_queue);
  Metrics metrics;
  constexpr int kMaxResponseBytes = 256 << 20;
  Pool pool(
      pool_opts, [](const PodRecord& r) { return NewGrpcPodClient(r, kMaxResponseBytes); }, &metrics);

  Service service(svc_opts, &auth, &pool, &metrics, run_limiter.get(), preauth_limiter.get());
  auto server = HttpServer::Listen(http_opts, [&service](const HttpRequest& r) { return service.Handle(r); });
  if (!server.ok()) return fail(std::string(server.status().message()));
  if (!f.port_file.empty()) {
    // For tests and scripts that listen on port 0: the port actually bound, written once listening.
    if (auto st = sys::WriteFileAtomic(f.port_file, absl::StrCat((*server)->port(), "\n")); !st.ok()) {
      return fail(std::string(st.message()));
    }
  }
  pool.Refresh();  // the first scan before the first request
  pool.Start(absl::Milliseconds(static_cast<int64_t>(f.health_interval_ms)));
  (*server)->Start();
  log::Infof(
      "gateway: serving on %s:%d; pool pods from %s (%d ready of %d); wall timeout %d ms; run rate %s; "
      "pre-auth rate %s",
      http_opts.host, (*server)->port(), dir, pool.ReadyCount(), pool.KnownCount(), timeout_ms, run_rate_text,
      preauth_rate_text);

  int sig = 0;
  sigwait(&stop_set, &sig);
  log::Infof("gateway: signal %d: stopping (running requests get up to 30 s)", sig);
  int left = (*server)->Shutdown(absl::Seconds(30));
  pool.Stop();
  if (left > 0) {
    log::Warnf("gateway: %d connections still open after 30 s; exiting anyway", left);
    std::fflush(nullptr);
    ::_exit(0);
  }
  return 0;
}

}  // namespace gvshim::gateway
