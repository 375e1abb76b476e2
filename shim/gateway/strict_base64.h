// Base64 as RAGFlow's executor manager accepts it: Python's base64.b64decode(s, validate=True), i.e. CPython
// 3.11's binascii.a2b_base64 in strict mode (RAGFlow's image runs python:3.11). docs/gateway.md lists the
// rules.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gvshim::gateway {

// Decodes `text` or returns INVALID_ARGUMENT whose message is the reason Python gives (e.g. "Incorrect
// padding", "Only base64 data is allowed"), so the 422 answer reads like RAGFlow's.
absl::StatusOr<std::string> DecodeStrictBase64(absl::string_view text);

}  // namespace gvshim::gateway
