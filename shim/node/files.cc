#include "shim/node/files.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "shim/base/status.h"
#include "shim/sys/fd.h"
#include "shim/sys/file.h"

namespace gvshim::node {
namespace {

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

std::string Hex(const unsigned char* d, unsigned n) {
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(d), n));
}

absl::Status MakeParents(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("mkdir -p ", std::filesystem::path(path).parent_path().string(), ": ", ec.message()));
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, const std::string& data, const std::string& what) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("write ", what));
    off += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

std::string Sha256(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  return Hex(md, n);
}

absl::StatusOr<std::string> Sha256File(const std::string& path) {
  sys::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat("open ", path));
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return absl::InternalError("sha256: cannot initialise OpenSSL digest");
  }
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("read ", path));
    if (n == 0) break;
    EVP_DigestUpdate(ctx.get(), buf, static_cast<size_t>(n));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  return Hex(md, len);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) { return sys::ReadFileToString(path); }

absl::StatusOr<Change> InstallContent(const std::string& dst, const std::string& data, mode_t mode) {
  struct stat st;
  if (::stat(dst.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == mode &&
      static_cast<size_t>(st.st_size) == data.size()) {
    ASSIGN_OR_RETURN(std::string have, Sha256File(dst));
    if (have == Sha256(data)) return Change::kUnchanged;
  }
  RETURN_IF_ERROR(MakeParents(dst));
  std::string tmp = absl::StrCat(dst, ".gvshim-tmp");
  sys::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat("create ", tmp));
  absl::Status st2 = WriteAll(fd.get(), data, tmp);
  if (st2.ok() && ::fchmod(fd.get(), mode) != 0) st2 = ErrnoStatus(errno, absl::StrCat("chmod ", tmp));
  if (st2.ok() && ::fsync(fd.get()) != 0) st2 = ErrnoStatus(errno, absl::StrCat("fsync ", tmp));
  fd.reset();
  if (st2.ok() && ::rename(tmp.c_str(), dst.c_str()) != 0) {
    st2 = ErrnoStatus(errno, absl::StrCat("rename ", tmp, " -> ", dst));
  }
  if (!st2.ok()) {
    ::unlink(tmp.c_str());
    return st2;
  }
  return Change::kWritten;
}

absl::StatusOr<Change> InstallFile(const std::string& src, const std::string& dst, mode_t mode) {
  ASSIGN_OR_RETURN(std::string want, Sha256File(src));
  struct stat st;
  if (::stat(dst.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == mode) {
    auto have = Sha256File(dst);
    if (have.ok() && *have == want) return Change::kUnchanged;
  }
  RETURN_IF_ERROR(MakeParents(dst));
  // Streamed (runsc is tens of MiB): src -> temp file next to dst -> rename.
  sys::UniqueFd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.valid()) return ErrnoStatus(errno, absl::StrCat("open ", src));
  std::string tmp = absl::StrCat(dst, ".gvshim-tmp");
  sys::UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!out.valid()) return ErrnoStatus(errno, absl::StrCat("create ", tmp));
  absl::Status st2;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(in.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      st2 = ErrnoStatus(errno, absl::StrCat("read ", src));
      break;
    }
    if (n == 0) break;
    st2 = WriteAll(out.get(), std::string(buf, static_cast<size_t>(n)), tmp);
    if (!st2.ok()) break;
  }
  if (st2.ok() && ::fchmod(out.get(), mode) != 0) st2 = ErrnoStatus(errno, absl::StrCat("chmod ", tmp));
  if (st2.ok() && ::fsync(out.get()) != 0) st2 = ErrnoStatus(errno, absl::StrCat("fsync ", tmp));
  out.reset();
  if (st2.ok()) {
    // The copy is checked before it replaces anything.
    auto got = Sha256File(tmp);
    if (!got.ok()) {
      st2 = got.status();
    } else if (*got != want) {
      st2 = absl::DataLossError(absl::StrCat("copy ", src, " -> ", tmp, ": checksum ", *got, " != ", want));
    }
  }
  if (st2.ok() && ::rename(tmp.c_str(), dst.c_str()) != 0) {
    st2 = ErrnoStatus(errno, absl::StrCat("rename ", tmp, " -> ", dst));
  }
  if (!st2.ok()) {
    ::unlink(tmp.c_str());
    return st2;
  }
  return Change::kWritten;
}

absl::StatusOr<bool> RemoveFile(const std::string& path) {
  if (::unlink(path.c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  return ErrnoStatus(errno, absl::StrCat("remove ", path));
}

}  // namespace gvshim::node
