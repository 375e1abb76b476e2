#include "shim/execute/common/interpreter.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "shim/base/status.h"

namespace gvshim::execute {
namespace {

constexpr int kMaxSymlinks = 40;  // as Linux's MAXSYMLINKS

// Pushes the components of `path` so that the first one is popped first.
void PushComponents(const std::string& path, std::vector<std::string>* todo) {
  std::vector<std::string> parts = absl::StrSplit(path, '/', absl::SkipEmpty());
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) todo->push_back(*it);
}

}  // namespace

absl::StatusOr<std::string> ResolveInRoot(const std::string& rootfs, const std::string& path) {
  std::vector<std::string> todo;
  PushComponents(path, &todo);
  std::vector<std::string> done;  // resolved components below the rootfs
  int links = 0;
  while (!todo.empty()) {
    std::string c = std::move(todo.back());
    todo.pop_back();
    if (c == ".") continue;
    if (c == "..") {
      if (!done.empty()) done.pop_back();  // ".." at the root stays at the root, as in the container
      continue;
    }
    std::string inside = absl::StrCat("/", absl::StrJoin(done, "/"), done.empty() ? "" : "/", c);
    std::string host = rootfs + inside;
    struct stat st;
    if (::lstat(host.c_str(), &st) != 0)
      return ErrnoStatus(errno, absl::StrCat("resolve ", path, " in ", rootfs));
    if (S_ISLNK(st.st_mode)) {
      if (++links > kMaxSymlinks) {
        return absl::FailedPreconditionError(
            absl::StrCat("resolve ", path, " in ", rootfs, ": too many symlinks"));
      }
      std::string target(4096, '\0');  // PATH_MAX
      ssize_t n = ::readlink(host.c_str(), target.data(), target.size());
      if (n < 0) return ErrnoStatus(errno, absl::StrCat("readlink ", host));
      target.resize(static_cast<size_t>(n));
      if (!target.empty() && target[0] == '/') done.clear();  // absolute: from the container's root
      PushComponents(target, &todo);
      continue;
    }
    if (!todo.empty() && !S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat("resolve ", path, " in ", rootfs, ": ", inside, " is not a directory"));
    }
    done.push_back(std::move(c));
  }
  return absl::StrCat("/", absl::StrJoin(done, "/"));
}

std::optional<Interpreter> FindInterpreter(const std::string& rootfs, const std::string& name) {
  std::vector<std::string> candidates;
  if (!name.empty() && name[0] == '/') {
    candidates.push_back(name);
  } else if (!name.empty() && name.find('/') == std::string::npos) {
    for (const char* dir : kInterpreterDirs) candidates.push_back(absl::StrCat(dir, "/", name));
  }
  for (const std::string& c : candidates) {
    auto resolved = ResolveInRoot(rootfs, c);
    if (!resolved.ok()) continue;
    struct stat st;
    std::string host = rootfs + *resolved;
    if (::stat(host.c_str(), &st) != 0) continue;  // resolved has no symlinks left, so stat follows none
    if (!S_ISREG(st.st_mode) || (st.st_mode & 0111) == 0) continue;
    return Interpreter{c, *resolved};
  }
  return std::nullopt;
}

}  // namespace gvshim::execute
