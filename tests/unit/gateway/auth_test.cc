#include "shim/gateway/auth.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "absl/time/clock.h"

namespace gvshim::gateway {
namespace {

TEST(Auth, ExtractToken) {
  EXPECT_EQ(ExtractToken("Bearer abc", ""), "abc");
  EXPECT_EQ(ExtractToken("bearer   abc  ", ""), "abc");
  EXPECT_EQ(ExtractToken("BEARER abc", "other"), "abc");  // Bearer wins over X-Sandbox-Token
  EXPECT_EQ(ExtractToken("", " xyz\t"), "xyz");
  EXPECT_EQ(ExtractToken("Basic dXNlcg==", "xyz"), "xyz");  // not Bearer: ignored
  EXPECT_EQ(ExtractToken("Bearer", "xyz"), "xyz");          // no space after the scheme: not Bearer
  EXPECT_EQ(ExtractToken("", ""), "");
}

TEST(Auth, TokensEqual) {
  EXPECT_TRUE(TokensEqual("secret", "secret"));
  EXPECT_FALSE(TokensEqual("secret", "secreT"));
  EXPECT_FALSE(TokensEqual("secret", "secret2"));
  EXPECT_FALSE(TokensEqual("", "secret"));
}

TEST(Auth, TruthyFlag) {
  for (const char* v : {"1", "true", "TRUE", "Yes", "on ", " On"}) EXPECT_TRUE(IsTruthyFlag(v)) << v;
  for (const char* v : {"", "0", "false", "no", "off", "unexpected", "y"}) EXPECT_FALSE(IsTruthyFlag(v)) << v;
}

TEST(Auth, StripLikePython) {
  EXPECT_EQ(StripPythonWhitespace(" \t\r\n\x0b\x0c tok \x1c\x85\xa0"), "tok");
  EXPECT_EQ(StripPythonWhitespace("a b"), "a b");
}

TEST(Auth, TokenConfigured) {
  Authenticator a(TokenSource::Fixed("  s3cret \n"), /*allow_unauthenticated=*/true);
  EXPECT_EQ(a.Check("", ""), AuthResult::kUnauthorized);             // missing
  EXPECT_EQ(a.Check("Bearer nope", ""), AuthResult::kUnauthorized);  // wrong Bearer
  EXPECT_EQ(a.Check("", "nope"), AuthResult::kUnauthorized);         // wrong X-Sandbox-Token
  EXPECT_EQ(a.Check("Bearer s3cret", ""), AuthResult::kAllowed);
  EXPECT_EQ(a.Check("", "s3cret"), AuthResult::kAllowed);
  EXPECT_EQ(a.Check("Bearer nope", "s3cret"), AuthResult::kUnauthorized);  // the opt-in never weakens a token
}

TEST(Auth, NoTokenFailsClosedUnlessAllowed) {
  Authenticator closed(TokenSource::Fixed("   "), false);  // blank = unset
  EXPECT_EQ(closed.Check("", ""), AuthResult::kNotConfigured);
  EXPECT_EQ(closed.Check("Bearer anything", ""), AuthResult::kNotConfigured);
  Authenticator open(TokenSource::Fixed(""), true);
  EXPECT_EQ(open.Check("", ""), AuthResult::kAllowed);
  EXPECT_NE(std::string(kNotConfiguredDetail).find("SANDBOX_EXECUTOR_MANAGER_API_TOKEN"), std::string::npos);
}

TEST(Auth, TokenFileIsReadAgainWhenItChanges) {
  char path[] = "/tmp/gvs-token-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "one\n", 4), 4);
  ::close(fd);
  auto src = TokenSource::FromFile(path);
  ASSERT_TRUE(src.ok()) << src.status();
  Authenticator a(std::move(*src), false);
  EXPECT_EQ(a.Check("Bearer one", ""), AuthResult::kAllowed);
  // A Secret update replaces the file; the new token is in effect for the next request.
  std::string tmp = std::string(path) + ".new";
  std::ofstream(tmp) << "two";
  ASSERT_EQ(::rename(tmp.c_str(), path), 0);
  EXPECT_EQ(a.Check("Bearer one", ""), AuthResult::kUnauthorized);
  EXPECT_EQ(a.Check("Bearer two", ""), AuthResult::kAllowed);
  // A file that becomes unreadable keeps the last token.
  ::unlink(path);
  EXPECT_EQ(a.Check("Bearer two", ""), AuthResult::kAllowed);
  EXPECT_FALSE(TokenSource::FromFile(path).ok());
}

}  // namespace
}  // namespace gvshim::gateway
