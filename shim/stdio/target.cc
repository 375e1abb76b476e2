#include "shim/stdio/target.h"

#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "shim/base/status.h"

namespace gvshim::stdio {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Splits "scheme://authority/path?query#fragment" (scheme already removed) into path and query. The authority
// (normally empty: "binary:///usr/bin/x") is ignored, as containerd's shims use only the URL's path.
void SplitPathQuery(absl::string_view rest, absl::string_view* path, absl::string_view* query) {
  if (size_t hash = rest.find('#'); hash != absl::string_view::npos) rest = rest.substr(0, hash);
  *query = absl::string_view();
  if (size_t q = rest.find('?'); q != absl::string_view::npos) {
    *query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  size_t slash = rest.find('/');
  *path = slash == absl::string_view::npos ? absl::string_view() : rest.substr(slash);
}

}  // namespace

absl::StatusOr<std::string> PercentDecode(absl::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      int hi = i + 2 < in.size() ? HexValue(in[i + 1]) : -1;
      int lo = i + 2 < in.size() ? HexValue(in[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return absl::InvalidArgumentError(absl::StrCat("bad percent escape in \"", in, "\""));
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<Target> ParseTarget(absl::string_view spec) {
  Target t;
  if (spec.empty()) return t;
  size_t sep = spec.find("://");
  if (sep == absl::string_view::npos) {
    if (spec[0] != '/') {
      return absl::InvalidArgumentError(absl::StrCat("stdio path \"", spec, "\" is not absolute"));
    }
    t.kind = Target::Kind::kPath;
    t.path = std::string(spec);
    return t;
  }
  absl::string_view scheme = spec.substr(0, sep);
  absl::string_view path, query;
  SplitPathQuery(spec.substr(sep + 3), &path, &query);
  if (path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("stdio URI \"", spec, "\" has no absolute path"));
  }
  ASSIGN_OR_RETURN(t.path, PercentDecode(path, /*plus_is_space=*/false));

  if (scheme == "file") {
    t.kind = Target::Kind::kFile;
    return t;
  }
  if (scheme == "binary" || scheme == "binary-v2") {
    t.kind = Target::Kind::kBinary;
    t.strict_ready = scheme == "binary-v2";
    std::set<std::string> seen;
    for (absl::string_view part : absl::StrSplit(query, '&', absl::SkipEmpty())) {
      absl::string_view key = part, value;
      if (size_t eq = part.find('='); eq != absl::string_view::npos) {
        key = part.substr(0, eq);
        value = part.substr(eq + 1);
      }
      ASSIGN_OR_RETURN(std::string k, PercentDecode(key, /*plus_is_space=*/true));
      ASSIGN_OR_RETURN(std::string v, PercentDecode(value, /*plus_is_space=*/true));
      if (!seen.insert(k).second) continue;
      t.args.push_back(std::move(k));
      t.args.push_back(std::move(v));
    }
    return t;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported stdio scheme \"", scheme, "\" in \"", spec, "\""));
}

}  // namespace gvshim::stdio
