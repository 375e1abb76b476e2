// config.json load/save. Saving is atomic: a reader (runsc) sees the old file or the new one, never half of
// one.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "shim/base/json_depth.h"
#include "shim/base/status.h"
#include "shim/oci/hardening.h"
#include "shim/seccomp/profile.h"
#include "shim/sys/fd.h"
#include "shim/sys/file.h"

namespace gvshim::oci {

namespace {

// An OCI spec is a few levels deep. nlohmann's parser is iterative, but copying (hardening) and serialising
// (SaveSpec) a document recurse once per level, so a deeply nested config.json would overflow the stack.
constexpr int kMaxSpecDepth = 256;

}  // namespace

absl::StatusOr<nlohmann::json> ParseSpec(const std::string& text, const std::string& path) {
  try {
    return nlohmann::json::parse(text, DepthLimit(kMaxSpecDepth));
  } catch (const JsonTooDeep&) {
    return absl::InvalidArgumentError(
        absl::StrCat("parse spec ", path, ": nesting deeper than ", kMaxSpecDepth, " levels"));
  } catch (const nlohmann::json::parse_error& e) {
    int line = 0;
    int column = 0;
    seccomp::OffsetToLineColumn(text, e.byte, &line, &column);
    return absl::InvalidArgumentError(
        absl::StrCat("parse spec ", path, ":", line, ":", column, ": ", e.what()));
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("parse spec ", path, ": ", e.what()));
  }
}

absl::StatusOr<nlohmann::json> LoadSpec(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open spec ", path));
  sys::UniqueFd file(fd);
  auto text = sys::ReadAll(file.get(), 64 << 20);
  if (!text.ok()) return Annotate(text.status(), absl::StrCat("read spec ", path));
  return ParseSpec(*text, path);
}

absl::Status SaveSpec(const std::string& path, const nlohmann::json& spec, bool durable) {
  std::string text;
  try {
    text = spec.dump(2);
  } catch (const nlohmann::json::exception& e) {  // e.g. a string that is not UTF-8
    return absl::InvalidArgumentError(absl::StrCat("serialise spec ", path, ": ", e.what()));
  }
  text.push_back('\n');
  mode_t mode = 0644;
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) mode = st.st_mode & 07777;
  // The spec keeps its mode (containerd's bundle files are 0644 or stricter).
  absl::Status st2 = sys::WriteFileAtomic(path, text, mode,
                                          durable ? sys::Durability::kDurable : sys::Durability::kVolatile);
  return st2.ok() ? st2 : Annotate(st2, "save spec");
}

}  // namespace gvshim::oci
