// Feeds arbitrary bytes as the gateway's POST /run: the first line is the Content-Type header, the rest the
// body, through gateway::ParseRunRequest (JSON, field validation, strict base64 of code_b64) and, on a 422,
// the answer the service serialises. The body alone also goes to DecodeStrictBase64. Checked: an accepted
// request holds valid UTF-8 code and a JSON object of arguments; every 422 serialises; whatever strict base64
// accepts re-encodes (canonically) to bytes that decode to the same data.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <variant>

#include "absl/strings/escaping.h"
#include "nlohmann/json.hpp"
#include "shim/gateway/run_request.h"
#include "shim/gateway/strict_base64.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nl = input.find('\n');
  const absl::string_view content_type =
      nl == absl::string_view::npos ? absl::string_view() : input.substr(0, nl);
  const absl::string_view body = nl == absl::string_view::npos ? input : input.substr(nl + 1);

  (void)gvshim::gateway::IsJsonContentType(content_type);
  gvshim::gateway::ParsedRun parsed = gvshim::gateway::ParseRunRequest(body, content_type);
  if (auto* errors = std::get_if<std::vector<gvshim::gateway::FieldError>>(&parsed)) {
    Check(!errors->empty());
    for (const auto& e : *errors) Check(!e.type.empty() && !e.msg.empty() && e.loc.is_array());
    // As the service writes a 422 (replacing bytes that are not UTF-8).
    (void)gvshim::gateway::ValidationErrorBody(*errors).dump(-1, ' ', false,
                                                             nlohmann::json::error_handler_t::replace);
  } else {
    const auto& run = std::get<gvshim::gateway::RunRequest>(parsed);
    (void)nlohmann::json(run.code).dump();  // throws (a crash here) if the code is not UTF-8
    Check(nlohmann::json::parse(run.arguments_json).is_object());
  }

  auto decoded = gvshim::gateway::DecodeStrictBase64(body);
  if (!decoded.ok()) {
    Check(!decoded.status().message().empty() && !absl::IsInternal(decoded.status()));
  } else {
    auto again = gvshim::gateway::DecodeStrictBase64(absl::Base64Escape(*decoded));
    Check(again.ok() && *again == *decoded);
  }
  return 0;
}
