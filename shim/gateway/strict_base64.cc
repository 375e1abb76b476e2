#include "shim/gateway/strict_base64.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace gvshim::gateway {
namespace {

bool IsBase64Data(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

}  // namespace

absl::StatusOr<std::string> DecodeStrictBase64(absl::string_view text) {
  // Python turns a str into bytes with the ascii codec before anything else.
  for (unsigned char c : text) {
    if (c > 0x7f) return absl::InvalidArgumentError("string argument should contain only ASCII characters");
  }
  if (!text.empty() && text[0] == '=') return absl::InvalidArgumentError("Leading padding not allowed");
  // One pass in Python's order, so that the first offending character decides the message. `group` counts the
  // data characters of the current group of four; padding completes a group of 2 (with "==") or of 3 (with
  // "=").
  size_t data_chars = 0, group = 0, pads = 0;
  bool padding_started = false;
  size_t data_end = text.size();  // where the data characters end (the decoder gets no padding)
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char c = text[i];
    if (c == '=') {
      if (!padding_started) data_end = i;
      padding_started = true;
      ++pads;
      if (group >= 2 && group + pads >= 4) {
        if (i + 1 < text.size()) return absl::InvalidArgumentError("Excess data after padding");
        group = 0;
        break;
      }
      continue;  // a pad that completes nothing (after a full group) is ignored, as Python does
    }
    if (!IsBase64Data(c)) return absl::InvalidArgumentError("Only base64 data is allowed");
    if (padding_started) return absl::InvalidArgumentError("Discontinuous padding not allowed");
    pads = 0;
    ++data_chars;
    group = (group + 1) % 4;
  }
  if (group == 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("Invalid base64-encoded string: number of data characters (", data_chars,
                     ") cannot be 1 more than a multiple of 4"));
  }
  if (group != 0) return absl::InvalidArgumentError("Incorrect padding");
  // The structure is valid; the library decodes the data characters (it accepts a missing final padding, and
  // like Python ignores the unused low bits of the last character).
  std::string out;
  if (!absl::Base64Unescape(text.substr(0, data_end), &out)) {
    return absl::InternalError("base64 decoder refused input that passed the strict check");
  }
  return out;
}

}  // namespace gvshim::gateway
