// `gvshim gateway`: flags and environment -> the pieces of shim/gateway, serving until SIGTERM/SIGINT.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace CLI {
class App;
}  // namespace CLI

namespace gvshim::gateway {

// RAGFlow's SANDBOX_TIMEOUT notation: "90s", "2m", "1m30s" (case-insensitive). nullopt when it does not parse
// or is zero (RAGFlow then uses its 10 s default).
std::optional<absl::Duration> ParseSandboxTimeout(const std::string& text);

// HOST:PORT, [V6]:PORT.
absl::Status SplitHostPort(const std::string& text, std::string* host, uint16_t* port);

// `gvshim gateway`'s command line. Defaults are the flags' defaults; settings with a RAGFlow environment
// variable (token, rate limits, timeout) are resolved by RunGateway: the flag, else the variable, else
// RAGFlow's default.
struct GatewayFlags {
  std::string listen = "0.0.0.0:9385";
  std::string dir;  // empty: $GVSHIM_EXECUTE_DIR, else /run/gvshim/execute
  std::string token_file, run_rate, preauth_rate, select_pod, log_level, port_file;
  std::vector<std::string> select_annotations;
  bool allow_unauthenticated = false, allow_network = false;
  uint64_t timeout_ms = 0, memory_bytes = 0, cpu_time_ms = 0, output_bytes = 0, max_processes = 0,
           file_size_bytes = 0;
  uint64_t pod_concurrency = 4, max_queue = 64, queue_timeout_ms = 10000, max_body_bytes = 16 << 20;
  uint64_t max_connections = 256, health_interval_ms = 1000;
};

// Declares the `gateway` subcommand of `parent`, parsing into `f` (which must outlive the parse).
CLI::App* AddGatewayCommand(CLI::App& parent, GatewayFlags& f);

// Runs the gateway until SIGTERM/SIGINT; returns the process exit code (1 when a setting is invalid or the
// port cannot be bound).
int RunGateway(const GatewayFlags& f);

}  // namespace gvshim::gateway
