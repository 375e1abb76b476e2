#include "shim/gateway/run_request.h"

#include <gtest/gtest.h>

#include "absl/strings/escaping.h"

namespace gvshim::gateway {
namespace {

using ojson = nlohmann::ordered_json;

std::string B64(const std::string& s) { return absl::Base64Escape(s); }

RunRequest Ok(const std::string& body, const std::string& ct = "application/json") {
  ParsedRun p = ParseRunRequest(body, ct);
  if (auto* errs = std::get_if<std::vector<FieldError>>(&p)) {
    ADD_FAILURE() << body << ": " << ValidationErrorBody(*errs).dump();
    return {};
  }
  return std::get<RunRequest>(p);
}

ojson Errors(const std::string& body, const std::string& ct = "application/json") {
  ParsedRun p = ParseRunRequest(body, ct);
  if (!std::holds_alternative<std::vector<FieldError>>(p)) {
    ADD_FAILURE() << body << " was accepted";
    return ojson::array();
  }
  return ValidationErrorBody(std::get<std::vector<FieldError>>(p))["detail"];
}

TEST(RunRequest, DefaultsAndIgnoredKeys) {
  RunRequest r = Ok(ojson({{"code_b64", B64("print(1)")}, {"extra", 5}}).dump());
  EXPECT_EQ(r.code, "print(1)");
  EXPECT_EQ(r.language, RunLanguage::kPython);
  EXPECT_EQ(r.arguments_json, "{}");
}

TEST(RunRequest, LanguageAndArguments) {
  RunRequest r = Ok(
      ojson({{"code_b64", B64("x")}, {"language", "nodejs"}, {"arguments", {{"a", 1}, {"b", "s"}}}}).dump());
  EXPECT_EQ(r.language, RunLanguage::kNodejs);
  EXPECT_EQ(r.arguments_json, R"({"a":1,"b":"s"})");
  // null arguments are the default {}
  r = Ok(ojson({{"code_b64", B64("x")}, {"arguments", nullptr}}).dump());
  EXPECT_EQ(r.arguments_json, "{}");
  // an absent Content-Type and a +json type are JSON too
  Ok(ojson({{"code_b64", B64("x")}}).dump(), "");
  Ok(ojson({{"code_b64", B64("x")}}).dump(), "Application/Merge-Patch+JSON; charset=utf-8");
}

TEST(RunRequest, MissingCodeIsFieldRequired) {
  ojson d = Errors(R"({"language":"python"})");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0]["type"], "missing");
  EXPECT_EQ(d[0]["loc"], ojson({"body", "code_b64"}));
  EXPECT_EQ(d[0]["msg"], "Field required");
  EXPECT_EQ(d[0]["input"], ojson({{"language", "python"}}));
  EXPECT_FALSE(d[0].contains("ctx"));
}

TEST(RunRequest, BadBase64CarriesPythonsReason) {
  ojson d = Errors(R"({"code_b64":"cHJpbnQoMSk"})");  // missing padding
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0]["type"], "value_error");
  EXPECT_EQ(d[0]["loc"], ojson({"body", "code_b64"}));
  EXPECT_EQ(d[0]["msg"], "Value error, Invalid base64 encoding: Incorrect padding");
  EXPECT_EQ(d[0]["input"], "cHJpbnQoMSk");
  EXPECT_EQ(d[0]["ctx"], ojson({{"error", ojson::object()}}));
  d = Errors(R"({"code_b64":"cHJp bnQo"})");
  EXPECT_EQ(d[0]["msg"], "Value error, Invalid base64 encoding: Only base64 data is allowed");
}

TEST(RunRequest, TypeErrors) {
  ojson d = Errors(R"({"code_b64":5,"language":"ruby","arguments":[1]})");
  ASSERT_EQ(d.size(), 3u);  // every error, in field order
  EXPECT_EQ(d[0]["type"], "string_type");
  EXPECT_EQ(d[0]["msg"], "Input should be a valid string");
  EXPECT_EQ(d[0]["input"], 5);
  EXPECT_EQ(d[1]["type"], "enum");
  EXPECT_EQ(d[1]["loc"], ojson({"body", "language"}));
  EXPECT_EQ(d[1]["msg"], "Input should be 'python' or 'nodejs'");
  EXPECT_EQ(d[1]["ctx"], ojson({{"expected", "'python' or 'nodejs'"}}));
  EXPECT_EQ(d[2]["type"], "dict_type");
  EXPECT_EQ(d[2]["loc"], ojson({"body", "arguments"}));
  EXPECT_EQ(d[2]["msg"], "Input should be a valid dictionary");
  // language is case-sensitive and null is not the default
  EXPECT_EQ(Errors(R"({"code_b64":"","language":"Python"})")[0]["type"], "enum");
  EXPECT_EQ(Errors(R"({"code_b64":"","language":null})")[0]["type"], "enum");
}

TEST(RunRequest, BodyShapes) {
  ojson d = Errors("");
  EXPECT_EQ(d[0]["type"], "missing");
  EXPECT_EQ(d[0]["loc"], ojson({"body"}));
  EXPECT_TRUE(d[0]["input"].is_null());

  d = Errors("{\"code_b64\": ");
  EXPECT_EQ(d[0]["type"], "json_invalid");
  EXPECT_EQ(d[0]["msg"], "JSON decode error");
  EXPECT_EQ(d[0]["loc"][0], "body");
  EXPECT_TRUE(d[0]["loc"][1].is_number());
  EXPECT_TRUE(d[0]["ctx"]["error"].is_string());

  d = Errors("[1,2]");
  EXPECT_EQ(d[0]["type"], "model_attributes_type");
  EXPECT_EQ(d[0]["loc"], ojson({"body"}));
  EXPECT_EQ(d[0]["msg"], "Input should be a valid dictionary or object to extract fields from");

  d = Errors(R"({"code_b64":"eA=="})", "text/plain");  // not taken as JSON
  EXPECT_EQ(d[0]["type"], "model_attributes_type");
}

// nlohmann's parser throws out_of_range (not parse_error) for a number too large for a double; uncaught, it
// ended the gateway (found by tests/fuzz/gateway_run_fuzz). Python would read inf; the gateway answers a 422.
TEST(RunRequest, NumberOverflowIsJsonInvalid) {
  for (const std::string body : {"1e400", R"({"code_b64":"eA==","arguments":{"x":-1E999}})"}) {
    ojson d;
    ASSERT_NO_THROW(d = Errors(body)) << body;
    ASSERT_EQ(d.size(), 1u) << body;
    EXPECT_EQ(d[0]["type"], "json_invalid") << body;
    EXPECT_EQ(d[0]["msg"], "JSON decode error") << body;
    EXPECT_EQ(d[0]["loc"][0], "body") << body;
    EXPECT_TRUE(d[0]["ctx"]["error"].is_string()) << body;
  }
}

// Deep nesting within the body limit: the parser is iterative, but echoing, copying and serialising the
// document recurse, and a 16 MiB body of brackets overflowed the connection thread's stack (the whole gateway
// died). Nesting deeper than kMaxJsonDepth is refused as invalid JSON at the offending bracket.
TEST(RunRequest, DeepNestingIsJsonInvalid) {
  const size_t n = 1000000;
  const std::string deep = std::string(n, '[') + std::string(n, ']');
  for (const std::string& body : {deep, R"({"code_b64":"eA==","arguments":{"a":)" + deep + "}}",
                                  R"({"code_b64":"eA==","x":)" + deep + "}"}) {
    ojson d = Errors(body);
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0]["type"], "json_invalid");
    EXPECT_EQ(d[0]["loc"][0], "body");
    EXPECT_TRUE(d[0]["loc"][1].is_number());
    EXPECT_EQ(d[0]["ctx"]["error"], "nesting deeper than 512 levels");
  }
  // Brackets inside strings do not count; 512 levels (the body's object, arguments, 510 arrays) are fine.
  const std::string ok = std::string(510, '[') + std::string(510, ']');
  RunRequest r = Ok(R"({"code_b64":"eA==","arguments":{"s":"[[[[[[[[{{{{\"[[[","a":)" + ok + "}}");
  EXPECT_EQ(r.code, "x");
}

TEST(RunRequest, CodeMustBeUtf8) {
  ojson d = Errors(ojson({{"code_b64", B64("print('\xff')")}}).dump());
  EXPECT_EQ(d[0]["type"], "value_error");
  EXPECT_EQ(d[0]["msg"], "Value error, code is not valid UTF-8");
  Ok(ojson({{"code_b64", B64("print('h\xc3\xa9')")}}).dump());  // é
}

TEST(RunRequest, LongInputsAreCutInTheEcho) {
  std::string big(5000, 'x');
  ojson d = Errors(ojson({{"code_b64", big}}).dump());
  std::string echoed = d[0]["input"];
  EXPECT_LT(echoed.size(), 300u);
  EXPECT_EQ(echoed.substr(0, 10), "xxxxxxxxxx");
}

TEST(RunRequest, JsonContentTypes) {
  EXPECT_TRUE(IsJsonContentType("application/json"));
  EXPECT_TRUE(IsJsonContentType("application/json; charset=utf-8"));
  EXPECT_TRUE(IsJsonContentType("application/problem+json"));
  EXPECT_TRUE(IsJsonContentType(""));
  EXPECT_FALSE(IsJsonContentType("text/json"));
  EXPECT_FALSE(IsJsonContentType("application/x-www-form-urlencoded"));
  EXPECT_FALSE(IsJsonContentType("json"));
}

}  // namespace
}  // namespace gvshim::gateway
