#include "shim/execute/common/helpers.h"

#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace gvshim::execute {

absl::Status CheckHelpersDir(const std::string& dir) {
  for (const char* name : {kLauncherName, kPyIsolateName}) {
    const std::string p = absl::StrCat(dir, "/", name);
    struct stat st;
    if (::stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return absl::NotFoundError(absl::StrCat("gvshim helper ", p, " is missing"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> FindHelpersDir(const std::string& configured) {
  if (!configured.empty()) {
    if (absl::Status st = CheckHelpersDir(configured); !st.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("[execute] helpers_dir = \"", configured, "\": ", st.message()));
    }
    return configured;
  }
  std::vector<std::string> tried;
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) {
    const std::string self(buf, static_cast<size_t>(n));
    const std::string bin = self.substr(0, self.rfind('/'));
    for (const std::string& dir : {bin + "/gvshim-helpers", bin + "/../lib/gvshim"}) {
      if (CheckHelpersDir(dir).ok()) return dir;
      tried.push_back(dir);
    }
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "gvshim's sandbox helpers (", kLauncherName, ", ", kPyIsolateName, ") were not found in ",
      tried.empty() ? std::string("(the shim's own path is unknown)") : absl::StrJoin(tried, " or "),
      "; install them (scripts/install.sh) or set [execute] helpers_dir"));
}

std::string ExecContainerId(const std::string& target_id) { return target_id + "/execute"; }

}  // namespace gvshim::execute
