// Shared-secret authentication of POST /run, as RAGFlow's executor manager does it (services/auth.py): the
// token comes from SANDBOX_EXECUTOR_MANAGER_API_TOKEN or a file (a mounted Secret, re-read when it changes),
// the caller sends it as "Authorization: Bearer <t>" or "X-Sandbox-Token: <t>", and it is compared in
// constant time. With no token configured /run fails closed unless unauthenticated access was explicitly
// allowed.
#pragma once

#include <sys/stat.h>

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace gvshim::gateway {

// The token in effect: a fixed value (from the environment) or the contents of a file, whitespace-stripped.
class TokenSource {
 public:
  // A fixed token ("" = none configured).
  static std::unique_ptr<TokenSource> Fixed(std::string token);
  // The file's contents; the file must be readable now. It is read again whenever its inode, size or mtime
  // changes; if a later read fails, the last token stays in effect.
  static absl::StatusOr<std::unique_ptr<TokenSource>> FromFile(std::string path);

  // The token; "" when none is configured (unset or blank).
  std::string Current();

 private:
  TokenSource() = default;
  std::string path_;  // "" for a fixed token
  absl::Mutex mu_;
  std::string token_ ABSL_GUARDED_BY(mu_);
  struct stat seen_ ABSL_GUARDED_BY(mu_) = {};
};

enum class AuthResult {
  kAllowed,
  kUnauthorized,   // 401: a token is configured and the caller's is missing or different
  kNotConfigured,  // 503: no token configured and unauthenticated access not allowed
};

class Authenticator {
 public:
  Authenticator(std::unique_ptr<TokenSource> tokens, bool allow_unauthenticated)
      : tokens_(std::move(tokens)), allow_unauthenticated_(allow_unauthenticated) {}

  // `authorization` and `x_sandbox_token` are the header values ("" when absent).
  AuthResult Check(absl::string_view authorization, absl::string_view x_sandbox_token);
  // Whether a token is configured now.
  bool HasToken() { return !tokens_->Current().empty(); }
  bool allow_unauthenticated() const { return allow_unauthenticated_; }

 private:
  std::unique_ptr<TokenSource> tokens_;
  const bool allow_unauthenticated_;
};

// The 401 and 503 details (RAGFlow's wording).
inline constexpr char kUnauthorizedDetail[] = "Missing or invalid sandbox executor API token";
extern const char kNotConfiguredDetail[];

// The caller's token: the rest of a "Bearer " Authorization header (scheme word in any case), else the
// X-Sandbox-Token header; whitespace-stripped as Python's str.strip() would.
std::string ExtractToken(absl::string_view authorization, absl::string_view x_sandbox_token);

// Equal-time comparison: both sides are hashed (SHA-256) and the digests compared with CRYPTO_memcmp, so the
// time depends on neither the contents nor the length of the configured token.
bool TokensEqual(absl::string_view a, absl::string_view b);

// "1", "true", "yes", "on" in any case, surrounding whitespace ignored (RAGFlow's truthy flag values).
bool IsTruthyFlag(absl::string_view value);

// Python's str.strip() for Latin-1 text (what header values and environment values are).
absl::string_view StripPythonWhitespace(absl::string_view s);

}  // namespace gvshim::gateway
