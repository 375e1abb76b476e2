// RAGFlow's CodeExecutionResult (the body of every 200 and 429 answer of POST /run), built from an Execute
// response or for the gateway's own outcomes. Pure functions; docs/gateway.md has the mapping table.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/string_view.h"
#include "gvshim/execute/v1/execute.pb.h"

namespace gvshim::gateway {

// RAGFlow's status names (models/enums.py ResultStatus).
inline constexpr char kStatusSuccess[] = "success";
inline constexpr char kStatusProgramError[] = "program_error";
inline constexpr char kStatusResourceLimit[] = "resource_limit_exceeded";
inline constexpr char kStatusUnauthorizedAccess[] = "unauthorized_access";
inline constexpr char kStatusRunnerError[] = "program_runner_error";

// RAGFlow's exit codes for outcomes that are not the snippet's own exit status.
inline constexpr int kExitTimeout = -124;
inline constexpr int kExitMemoryKilled = -137;
inline constexpr int kExitNoContainer = -10;
inline constexpr int kExitInternal = -3;
inline constexpr int kExitRateLimited = -429;

struct ResultOptions {
  // Snippets run without a network: a failure to reach one is reported as network_access.
  bool network_refused = true;
};

// The answer for an Execute response that came back OK.
nlohmann::ordered_json ResultFromExecute(const execute::v1::ExecuteResponse& r, const ResultOptions& opts);

// program_runner_error answers.
nlohmann::ordered_json NoAvailableContainerResult();
nlohmann::ordered_json InternalErrorResult(absl::string_view stderr_text,
                                           absl::string_view detail = "internal_error");
nlohmann::ordered_json RateLimitedResult();

// The result's "status" field.
std::string ResultStatusOf(const nlohmann::ordered_json& result);

}  // namespace gvshim::gateway
