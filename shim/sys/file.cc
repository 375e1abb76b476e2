#include "shim/sys/file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "shim/base/status.h"
#include "shim/sys/fd.h"

namespace gvshim::sys {

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, "open " + path);
  auto data = ReadAll(fd.get());
  if (!data.ok()) return Annotate(data.status(), path);
  return data;
}

absl::Status WriteFileAtomic(const std::string& path, const std::string& data, mode_t mode) {
  const std::string tmp = path + ".tmp";
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
    if (!fd) return ErrnoStatus(errno, "create " + tmp);
    if (absl::Status st = WriteAll(fd.get(), data.data(), data.size()); !st.ok()) {
      ::unlink(tmp.c_str());
      return Annotate(st, tmp);
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, "rename " + tmp);
  }
  return absl::OkStatus();
}

}  // namespace gvshim::sys
