#include "shim/gateway/auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "shim/base/log.h"
#include "shim/base/status.h"
#include "shim/sys/file.h"

namespace gvshim::gateway {

const char kNotConfiguredDetail[] =
    "Sandbox executor authentication is not configured; refusing unauthenticated /run. Set "
    "SANDBOX_EXECUTOR_MANAGER_API_TOKEN (or gvshim gateway --token-file) to a shared secret and give RAGFlow "
    "the "
    "same value, or accept the risk explicitly with SANDBOX_EXECUTOR_MANAGER_ALLOW_UNAUTHENTICATED=true.";

namespace {

bool IsPythonSpace(unsigned char c) {
  // str.isspace() for code points below 256.
  return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f) || c == 0x85 || c == 0xa0;
}

bool SameFile(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_size == b.st_size &&
         a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
}

}  // namespace

absl::string_view StripPythonWhitespace(absl::string_view s) {
  while (!s.empty() && IsPythonSpace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && IsPythonSpace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::unique_ptr<TokenSource> TokenSource::Fixed(std::string token) {
  std::unique_ptr<TokenSource> t(new TokenSource());
  absl::MutexLock lock(&t->mu_);
  t->token_ = std::string(StripPythonWhitespace(token));
  return t;
}

absl::StatusOr<std::unique_ptr<TokenSource>> TokenSource::FromFile(std::string path) {
  std::unique_ptr<TokenSource> t(new TokenSource());
  t->path_ = std::move(path);
  struct stat st;
  if (::stat(t->path_.c_str(), &st) != 0) return ErrnoStatus(errno, "token file " + t->path_);
  auto text = sys::ReadFileToString(t->path_);
  if (!text.ok()) return Annotate(text.status(), "token file " + t->path_);
  absl::MutexLock lock(&t->mu_);
  t->token_ = std::string(StripPythonWhitespace(*text));
  t->seen_ = st;
  return t;
}

std::string TokenSource::Current() {
  absl::MutexLock lock(&mu_);
  if (path_.empty()) return token_;
  struct stat st;
  if (::stat(path_.c_str(), &st) == 0 && !SameFile(st, seen_)) {
    auto text = sys::ReadFileToString(path_);
    if (text.ok()) {
      token_ = std::string(StripPythonWhitespace(*text));
      seen_ = st;
      log::Infof("gateway: token file %s re-read (%s)", path_, token_.empty() ? "now blank" : "token set");
    } else {
      log::Warnf("gateway: token file %s changed but cannot be read, keeping the previous token: %s", path_,
                 text.status().message());
    }
  }
  return token_;
}

std::string ExtractToken(absl::string_view authorization, absl::string_view x_sandbox_token) {
  if (authorization.size() >= 7 && absl::EqualsIgnoreCase(authorization.substr(0, 7), "bearer ")) {
    return std::string(StripPythonWhitespace(authorization.substr(7)));
  }
  return std::string(StripPythonWhitespace(x_sandbox_token));
}

bool TokensEqual(absl::string_view a, absl::string_view b) {
  unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(a.data()), a.size(), da);
  SHA256(reinterpret_cast<const unsigned char*>(b.data()), b.size(), db);
  return CRYPTO_memcmp(da, db, sizeof(da)) == 0;
}

bool IsTruthyFlag(absl::string_view value) {
  std::string v = absl::AsciiStrToLower(StripPythonWhitespace(value));
  return v == "1" || v == "true" || v == "yes" || v == "on";
}

AuthResult Authenticator::Check(absl::string_view authorization, absl::string_view x_sandbox_token) {
  std::string configured = tokens_->Current();
  if (configured.empty()) return allow_unauthenticated_ ? AuthResult::kAllowed : AuthResult::kNotConfigured;
  std::string provided = ExtractToken(authorization, x_sandbox_token);
  if (provided.empty() || !TokensEqual(provided, configured)) return AuthResult::kUnauthorized;
  return AuthResult::kAllowed;
}

}  // namespace gvshim::gateway
