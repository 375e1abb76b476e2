#include "shim/gateway/run_request.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "shim/gateway/strict_base64.h"

namespace gvshim::gateway {
namespace {

using ojson = nlohmann::ordered_json;

// Deeper nesting is refused (TooDeepAt).
constexpr size_t kMaxJsonDepth = 512;

// Echoed inputs are cut so that a 10 MiB code_b64 is not sent back in a 422.
constexpr size_t kMaxEchoedString = 256;

ojson Echo(const ojson& v) {
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (s.size() > kMaxEchoedString) return ojson(s.substr(0, kMaxEchoedString) + "...");
    return v;
  }
  if (v.is_object()) {
    ojson out = ojson::object();
    for (const auto& [k, item] : v.items()) out[k] = Echo(item);
    return out;
  }
  if (v.is_array()) {
    ojson out = ojson::array();
    for (const auto& item : v) out.push_back(Echo(item));
    return out;
  }
  return v;
}

FieldError Error(std::string type, ojson loc, std::string msg, const ojson& input, ojson ctx = nullptr) {
  return FieldError{std::move(type), std::move(loc), std::move(msg), Echo(input), std::move(ctx)};
}

// The offset of the first '[' or '{' that opens a level deeper than kMaxJsonDepth (outside strings), or npos.
// nlohmann's parser is iterative, but copying, echoing and serialising a document recurse once per level: a
// 16 MiB body of brackets would overflow the connection thread's stack.
size_t TooDeepAt(absl::string_view body) {
  size_t depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return i;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return absl::string_view::npos;
}

// nlohmann's serializer refuses malformed UTF-8 (overlong forms, surrogates, truncated sequences): the same
// bytes Python's strict utf-8 codec refuses.
bool IsValidUtf8(const std::string& s) {
  try {
    (void)ojson(s).dump();
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

}  // namespace

const char* RunLanguageName(RunLanguage l) { return l == RunLanguage::kNodejs ? "nodejs" : "python"; }

bool IsJsonContentType(absl::string_view content_type) {
  absl::string_view media = content_type.substr(0, content_type.find(';'));
  media = absl::StripAsciiWhitespace(media);
  if (media.empty()) return content_type.empty();
  size_t slash = media.find('/');
  if (slash == absl::string_view::npos) return false;
  if (!absl::EqualsIgnoreCase(media.substr(0, slash), "application")) return false;
  absl::string_view subtype = media.substr(slash + 1);
  return absl::EqualsIgnoreCase(subtype, "json") || absl::EndsWithIgnoreCase(subtype, "+json");
}

ParsedRun ParseRunRequest(absl::string_view body, absl::string_view content_type) {
  std::vector<FieldError> errors;
  if (body.empty()) {
    errors.push_back(Error("missing", {"body"}, "Field required", nullptr));
    return errors;
  }
  if (!IsJsonContentType(content_type)) {
    // FastAPI hands a non-JSON body to the model as bytes; the model wants an object.
    errors.push_back(Error("model_attributes_type", {"body"},
                           "Input should be a valid dictionary or object to extract fields from",
                           ojson(std::string(body))));
    return errors;
  }
  if (size_t at = TooDeepAt(body); at != absl::string_view::npos) {
    errors.push_back(Error("json_invalid", {"body", at}, "JSON decode error", ojson::object(),
                           {{"error", absl::StrCat("nesting deeper than ", kMaxJsonDepth, " levels")}}));
    return errors;
  }
  ojson doc;
  try {
    doc = ojson::parse(body.begin(), body.end());
  } catch (const nlohmann::json::parse_error& e) {
    size_t at = e.byte > 0 ? e.byte - 1 : 0;
    errors.push_back(
        Error("json_invalid", {"body", at}, "JSON decode error", ojson::object(), {{"error", e.what()}}));
    return errors;
  } catch (const nlohmann::json::exception& e) {
    // A number too large for a double (out_of_range.406; Python would read inf). No offset is known.
    errors.push_back(
        Error("json_invalid", {"body", 0}, "JSON decode error", ojson::object(), {{"error", e.what()}}));
    return errors;
  }
  if (!doc.is_object()) {
    errors.push_back(Error("model_attributes_type", {"body"},
                           "Input should be a valid dictionary or object to extract fields from", doc));
    return errors;
  }

  RunRequest req;
  // code_b64: required string, strict base64.
  auto code = doc.find("code_b64");
  if (code == doc.end()) {
    errors.push_back(Error("missing", {"body", "code_b64"}, "Field required", doc));
  } else if (!code->is_string()) {
    errors.push_back(Error("string_type", {"body", "code_b64"}, "Input should be a valid string", *code));
  } else {
    auto decoded = DecodeStrictBase64(code->get_ref<const std::string&>());
    if (!decoded.ok()) {
      errors.push_back(
          Error("value_error", {"body", "code_b64"},
                absl::StrCat("Value error, Invalid base64 encoding: ", decoded.status().message()), *code,
                {{"error", ojson::object()}}));
    } else if (!IsValidUtf8(*decoded)) {
      // RAGFlow's handler fails here with an unhandled exception (HTTP 500); a 422 names the problem.
      errors.push_back(Error("value_error", {"body", "code_b64"}, "Value error, code is not valid UTF-8",
                             *code, {{"error", ojson::object()}}));
    } else {
      req.code = std::move(*decoded);
    }
  }
  // language: "python" | "nodejs", default python.
  if (auto lang = doc.find("language"); lang != doc.end()) {
    if (lang->is_string() && *lang == "python") {
      req.language = RunLanguage::kPython;
    } else if (lang->is_string() && *lang == "nodejs") {
      req.language = RunLanguage::kNodejs;
    } else {
      errors.push_back(Error("enum", {"body", "language"}, "Input should be 'python' or 'nodejs'", *lang,
                             {{"expected", "'python' or 'nodejs'"}}));
    }
  }
  // arguments: object or null, default {}.
  if (auto args = doc.find("arguments"); args != doc.end() && !args->is_null()) {
    if (!args->is_object()) {
      errors.push_back(
          Error("dict_type", {"body", "arguments"}, "Input should be a valid dictionary", *args));
    } else {
      req.arguments_json = args->dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
    }
  }
  if (!errors.empty()) return errors;
  return req;
}

ojson ValidationErrorBody(const std::vector<FieldError>& errors) {
  ojson detail = ojson::array();
  for (const FieldError& e : errors) {
    ojson item = {{"type", e.type}, {"loc", e.loc}, {"msg", e.msg}, {"input", e.input}};
    if (!e.ctx.is_null()) item["ctx"] = e.ctx;
    detail.push_back(std::move(item));
  }
  return {{"detail", std::move(detail)}};
}

}  // namespace gvshim::gateway
