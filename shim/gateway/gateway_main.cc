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

int Usage() {
  std::fprintf(
      stderr,
      "usage: gvshim gateway [--listen HOST:PORT] [--dir DISCOVERY_DIR] [--token-file FILE] [options]\n"
      "Serves RAGFlow's sandbox executor-manager API (GET /healthz, POST /run) on top of the Execute "
      "services of\n"
      "the pool pods of this node. docs/gateway.md describes the API and every option:\n"
      "  --allow-unauthenticated  --run-rate-limit R  --preauth-rate-limit R  (R: 3/minute, ...; none)\n"
      "  --timeout-ms N  --memory-bytes N  --cpu-time-ms N  --output-bytes N  --max-processes N\n"
      "  --file-size-bytes N  --allow-network  --select-annotation K=V  --select-pod NS/PREFIX\n"
      "  --pod-concurrency N  --max-queue N  --queue-timeout-ms N  --max-body-bytes N  --max-connections N\n"
      "  --health-interval-ms N  --log-level debug|info|warn|error  --port-file FILE (the bound port)\n"
      "Defaults: --listen 0.0.0.0:9385, --dir $GVSHIM_EXECUTE_DIR or %s. Environment (RAGFlow's names):\n"
      "SANDBOX_EXECUTOR_MANAGER_API_TOKEN, SANDBOX_EXECUTOR_MANAGER_ALLOW_UNAUTHENTICATED, "
      "SANDBOX_RUN_RATE_LIMIT,\n"
      "SANDBOX_RUN_PREAUTH_RATE_LIMIT, SANDBOX_TIMEOUT.\n",
      kDefaultDir);
  return 2;
}

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

int GatewayMain(const std::vector<std::string>& args) {
  // Signals first: blocked before any thread exists (every thread inherits the mask), so that only the
  // sigwait at the end sees SIGTERM/SIGINT. Writes to closed connections must not kill the process.
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t stop_set;
  sigemptyset(&stop_set);
  sigaddset(&stop_set, SIGTERM);
  sigaddset(&stop_set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_set, nullptr);
  std::string listen = "0.0.0.0:9385", dir, token_file, run_rate, preauth_rate, select_pod, level, port_file;
  std::vector<std::string> select_annotations;
  bool allow_unauth_flag = false, allow_network = false;
  uint64_t timeout_ms = 0, memory = 0, cpu_ms = 0, output = 0, procs = 0, fsize = 0;
  uint64_t pod_concurrency = 4, max_queue = 64, queue_timeout_ms = 10000, max_body = 16 << 20;
  uint64_t max_connections = 256, health_ms = 1000;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= args.size()) return false;
      *out = args[++i];
      return true;
    };
    auto number = [&](uint64_t* out) {
      std::string v;
      return value(&v) && absl::SimpleAtoi(v, out);
    };
    bool ok = true;
    if (a == "--listen")
      ok = value(&listen);
    else if (a == "--dir")
      ok = value(&dir);
    else if (a == "--token-file")
      ok = value(&token_file);
    else if (a == "--allow-unauthenticated")
      allow_unauth_flag = true;
    else if (a == "--run-rate-limit")
      ok = value(&run_rate);
    else if (a == "--preauth-rate-limit")
      ok = value(&preauth_rate);
    else if (a == "--timeout-ms")
      ok = number(&timeout_ms);
    else if (a == "--memory-bytes")
      ok = number(&memory);
    else if (a == "--cpu-time-ms")
      ok = number(&cpu_ms);
    else if (a == "--output-bytes")
      ok = number(&output);
    else if (a == "--max-processes")
      ok = number(&procs);
    else if (a == "--file-size-bytes")
      ok = number(&fsize);
    else if (a == "--allow-network")
      allow_network = true;
    else if (a == "--select-annotation") {
      std::string v;
      ok = value(&v);
      select_annotations.push_back(v);
    } else if (a == "--select-pod")
      ok = value(&select_pod);
    else if (a == "--pod-concurrency")
      ok = number(&pod_concurrency) && pod_concurrency > 0;
    else if (a == "--max-queue")
      ok = number(&max_queue);
    else if (a == "--queue-timeout-ms")
      ok = number(&queue_timeout_ms);
    else if (a == "--max-body-bytes")
      ok = number(&max_body) && max_body > 0;
    else if (a == "--max-connections")
      ok = number(&max_connections) && max_connections > 0;
    else if (a == "--health-interval-ms")
      ok = number(&health_ms) && health_ms > 0;
    else if (a == "--log-level")
      ok = value(&level);
    else if (a == "--port-file")
      ok = value(&port_file);
    else if (a == "-h" || a == "--help")
      return Usage();
    else {
      std::fprintf(stderr, "gvshim gateway: unknown option %s\n", a.c_str());
      return Usage();
    }
    if (!ok) {
      std::fprintf(stderr, "gvshim gateway: bad or missing value for %s\n", a.c_str());
      return 2;
    }
  }
  auto fail = [](const std::string& msg) {
    std::fprintf(stderr, "gvshim gateway: %s\n", msg.c_str());
    return 1;
  };
  if (!level.empty()) {
    log::Level l;
    if (!log::ParseLevel(level, &l)) return fail("--log-level: unknown level " + level);
    log::SetLevel(l);
  }
  if (dir.empty()) dir = !Env("GVSHIM_EXECUTE_DIR").empty() ? Env("GVSHIM_EXECUTE_DIR") : kDefaultDir;
  HttpServerOptions http_opts;
  if (auto st = SplitHostPort(listen, &http_opts.host, &http_opts.port); !st.ok())
    return fail(std::string(st.message()));
  http_opts.max_body_bytes = max_body;
  http_opts.max_connections = static_cast<int>(max_connections);

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
      allow_unauth_flag || IsTruthyFlag(Env("SANDBOX_EXECUTOR_MANAGER_ALLOW_UNAUTHENTICATED"));
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
  auto run_rates = RateSetting(run_rate, "SANDBOX_RUN_RATE_LIMIT", "120/minute", &run_rate_text);
  if (!run_rates.ok()) return fail(std::string(run_rates.status().message()));
  auto preauth_rates =
      RateSetting(preauth_rate, "SANDBOX_RUN_PREAUTH_RATE_LIMIT", "30/minute", &preauth_rate_text);
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
  svc_opts.limits.set_memory_bytes(memory);
  svc_opts.limits.set_cpu_time_ms(cpu_ms);
  svc_opts.limits.set_output_bytes(output);
  svc_opts.limits.set_max_processes(procs);
  svc_opts.limits.set_file_size_bytes(fsize);
  svc_opts.allow_network = allow_network;
  svc_opts.queue_timeout = absl::Milliseconds(static_cast<int64_t>(queue_timeout_ms));
  svc_opts.max_body_bytes = max_body;

  // The pool.
  auto selector = ParseSelector(select_annotations, select_pod);
  if (!selector.ok()) return fail(std::string(selector.status().message()));
  PoolOptions pool_opts;
  pool_opts.dir = dir;
  pool_opts.selector = *selector;
  pool_opts.pod_concurrency = static_cast<int>(pod_concurrency);
  pool_opts.max_queue = static_cast<int>(max_queue);
  Metrics metrics;
  constexpr int kMaxResponseBytes = 256 << 20;
  Pool pool(
      pool_opts, [](const PodRecord& r) { return NewGrpcPodClient(r, kMaxResponseBytes); }, &metrics);

  Service service(svc_opts, &auth, &pool, &metrics, run_limiter.get(), preauth_limiter.get());
  auto server = HttpServer::Listen(http_opts, [&service](const HttpRequest& r) { return service.Handle(r); });
  if (!server.ok()) return fail(std::string(server.status().message()));
  if (!port_file.empty()) {
    // For tests and scripts that listen on port 0: the port actually bound, written once listening.
    if (auto st = sys::WriteFileAtomic(port_file, absl::StrCat((*server)->port(), "\n")); !st.ok()) {
      return fail(std::string(st.message()));
    }
  }
  pool.Refresh();  // the first scan before the first request
  pool.Start(absl::Milliseconds(static_cast<int64_t>(health_ms)));
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
