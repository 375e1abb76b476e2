// The body of RAGFlow's POST /run (CodeExecutionRequest) and its validation errors in FastAPI's 422 shape.
// Pure functions; docs/gateway.md has the table of fields and error types.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/string_view.h"

namespace gvshim::gateway {

enum class RunLanguage { kPython, kNodejs };

// RAGFlow's name of a language ("python", "nodejs").
const char* RunLanguageName(RunLanguage l);

struct RunRequest {
  std::string code;  // decoded from code_b64, valid UTF-8
  RunLanguage language = RunLanguage::kPython;
  std::string arguments_json = "{}";  // always a JSON object
};

// One entry of FastAPI's {"detail": [...]} list (pydantic v2 wording).
struct FieldError {
  std::string type;
  nlohmann::ordered_json loc;  // e.g. ["body", "code_b64"]
  std::string msg;
  nlohmann::ordered_json input;
  nlohmann::ordered_json ctx;  // null when absent
};

using ParsedRun = std::variant<RunRequest, std::vector<FieldError>>;

// Validates a /run body. `content_type` is the request's Content-Type header ("" when absent): as in FastAPI,
// the body is parsed as JSON only when it is absent or names application/json or application/*+json.
ParsedRun ParseRunRequest(absl::string_view body, absl::string_view content_type);

// {"detail": [...]} for a 422 answer.
nlohmann::ordered_json ValidationErrorBody(const std::vector<FieldError>& errors);

// Whether a Content-Type value selects JSON parsing (FastAPI's rule; parameters such as charset ignored).
bool IsJsonContentType(absl::string_view content_type);

}  // namespace gvshim::gateway
