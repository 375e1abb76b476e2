// `gvshim gateway`: flags and environment -> the pieces of shim/gateway, serving until SIGTERM/SIGINT.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace gvshim::gateway {

// RAGFlow's SANDBOX_TIMEOUT notation: "90s", "2m", "1m30s" (case-insensitive). nullopt when it does not parse
// or is zero (RAGFlow then uses its 10 s default).
std::optional<absl::Duration> ParseSandboxTimeout(const std::string& text);

// HOST:PORT, [V6]:PORT.
absl::Status SplitHostPort(const std::string& text, std::string* host, uint16_t* port);

// Runs the gateway; returns the process exit code.
int GatewayMain(const std::vector<std::string>& args);

}  // namespace gvshim::gateway
