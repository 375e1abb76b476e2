#include "shim/sys/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

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

absl::Status WriteFileAtomicWith(const std::string& path, mode_t mode,
                                 absl::FunctionRef<absl::Status(int fd, const std::string& tmp)> fill,
                                 Durability durability) {
  const bool durable = durability == Durability::kDurable;
  std::string tmp = path + ".tmp-XXXXXX";
  UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, "create a temporary file for " + path);
  absl::Status st;
  if (::fchmod(fd.get(), mode) != 0) st = ErrnoStatus(errno, "chmod " + tmp);
  if (st.ok()) st = fill(fd.get(), tmp);
  if (st.ok() && durable && ::fsync(fd.get()) != 0) st = ErrnoStatus(errno, "fsync " + tmp);
  fd.reset();
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0)
    st = ErrnoStatus(errno, "rename " + tmp + " to " + path);
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  if (!durable) return absl::OkStatus();
  // The rename is durable once the directory is.
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  UniqueFd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d || ::fsync(d.get()) != 0) return ErrnoStatus(errno, "fsync directory " + dir);
  return absl::OkStatus();
}

absl::Status WriteFileAtomic(const std::string& path, const std::string& data, mode_t mode,
                             Durability durability) {
  return WriteFileAtomicWith(
      path, mode,
      [&](int fd, const std::string& tmp) {
        absl::Status st = WriteAll(fd, data.data(), data.size());
        return st.ok() ? st : Annotate(st, "write " + tmp);
      },
      durability);
}

}  // namespace gvshim::sys
