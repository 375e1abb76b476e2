// Mount option parsing (pure) and, where the test may mount, Rootfs mount/unmount.
#include "shim/process/rootfs.h"

#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace gvshim::process {
namespace {

struct MountCase {
  const char* name;
  std::string type;
  std::vector<std::string> options;
  unsigned long flags;
  std::string data;
  bool bind;
};

TEST(ParseMountOptionsTest, Table) {
  const MountCase cases[] = {
      {"no options", "overlay", {}, 0, "", false},
      {"ro", "ext4", {"ro"}, MS_RDONLY, "", false},
      {"rw clears an earlier ro", "ext4", {"ro", "rw"}, 0, "", false},
      {"ro after rw wins", "ext4", {"rw", "ro"}, MS_RDONLY, "", false},
      {"nosuid nodev noexec",
       "tmpfs",
       {"nosuid", "nodev", "noexec"},
       MS_NOSUID | MS_NODEV | MS_NOEXEC,
       "",
       false},
      {"suid/dev/exec clear", "tmpfs", {"nosuid", "suid", "nodev", "dev", "noexec", "exec"}, 0, "", false},
      {"bind option", "none", {"bind"}, MS_BIND, "", true},
      {"rbind option", "none", {"rbind", "ro"}, MS_BIND | MS_REC | MS_RDONLY, "", true},
      {"bind type without option", "bind", {"ro"}, MS_BIND | MS_RDONLY, "", true},
      {"overlay data",
       "overlay",
       {"index=off", "workdir=/w", "upperdir=/u", "lowerdir=/l1:/l2"},
       0,
       "index=off,workdir=/w,upperdir=/u,lowerdir=/l1:/l2",
       false},
      {"flags and data mixed, data keeps its order",
       "tmpfs",
       {"size=64m", "nosuid", "mode=755", "noatime"},
       MS_NOSUID | MS_NOATIME,
       "size=64m,mode=755",
       false},
      {"unknown words are data", "ext4", {"errors=remount-ro", "foo"}, 0, "errors=remount-ro,foo", false},
      {"remount and relatime", "ext4", {"remount", "relatime"}, MS_REMOUNT | MS_RELATIME, "", false},
  };
  for (const MountCase& c : cases) {
    SCOPED_TRACE(c.name);
    MountArgs a = ParseMountOptions(c.type, c.options);
    EXPECT_EQ(a.flags, c.flags);
    EXPECT_EQ(a.data, c.data);
    EXPECT_EQ(a.bind, c.bind);
  }
}

// True if anything at or below dir is a mount point (per /proc/self/mountinfo).
bool HasMountsUnder(const std::string& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mountpoint;
    fields >> id >> parent >> devno >> root >> mountpoint;
    if (mountpoint == dir || mountpoint.rfind(dir + "/", 0) == 0) return true;
  }
  return false;
}

// A temporary directory removed with everything in it at the end of the test, unless something is still
// mounted below it (then removing could reach into a bind-mounted source; the test has failed anyway).
class ScopedTempDir {
 public:
  ScopedTempDir() {
    std::string tmpl = ::testing::TempDir() + "/rootfs-XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~ScopedTempDir() {
    if (!path_.empty() && !HasMountsUnder(path_)) std::filesystem::remove_all(path_);
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;
  operator const std::string&() const { return path_; }

 private:
  std::string path_;
};

bool IsMountPoint(const std::string& path) {
  struct stat a, b;
  if (::stat(path.c_str(), &a) != 0 || ::stat((path + "/..").c_str(), &b) != 0) return false;
  return a.st_dev != b.st_dev;
}

TEST(RootfsTest, EmptyListMountsNothing) {
  ScopedTempDir tmp;
  const std::string& dir = tmp;
  ASSERT_FALSE(dir.empty());
  auto r = Rootfs::Mount({}, dir + "/rootfs");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(IsMountPoint(dir + "/rootfs"));
  EXPECT_TRUE((*r)->Unmount().ok());
}

// Needs CAP_SYS_ADMIN in the mount namespace; skips otherwise.
TEST(RootfsTest, TmpfsMountAndUnmount) {
  ScopedTempDir tmp;
  const std::string& dir = tmp;
  ASSERT_FALSE(dir.empty());
  const std::string target = dir + "/rootfs";
  auto r = Rootfs::Mount({{"tmpfs", "tmpfs", {"size=1m", "nosuid"}}}, target);
  if (!r.ok() && r.status().code() == absl::StatusCode::kPermissionDenied) GTEST_SKIP() << r.status();
  ASSERT_TRUE(r.ok()) << r.status();
  struct statfs fs;
  ASSERT_EQ(::statfs(target.c_str(), &fs), 0);
  EXPECT_EQ(fs.f_type, TMPFS_MAGIC);
  EXPECT_TRUE(fs.f_flags & ST_NOSUID);
  ASSERT_TRUE((*r)->Unmount().ok());
  EXPECT_FALSE(IsMountPoint(target));
  EXPECT_TRUE((*r)->Unmount().ok());  // idempotent
}

TEST(RootfsTest, ReadOnlyBindIsRemountedReadOnly) {
  ScopedTempDir tmp;
  const std::string& dir = tmp;
  ASSERT_FALSE(dir.empty());
  ASSERT_EQ(::mkdir((dir + "/src").c_str(), 0755), 0);
  std::ofstream(dir + "/src/file") << "x";
  const std::string target = dir + "/rootfs";
  {
    auto r = Rootfs::Mount({{"bind", dir + "/src", {"rbind", "ro"}}}, target);
    if (!r.ok() && r.status().code() == absl::StatusCode::kPermissionDenied) GTEST_SKIP() << r.status();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(::access((target + "/file").c_str(), F_OK), 0);
    struct statfs fs;
    ASSERT_EQ(::statfs(target.c_str(), &fs), 0);
    EXPECT_TRUE(fs.f_flags & ST_RDONLY);
    // The destructor unmounts.
  }
  EXPECT_NE(::access((target + "/file").c_str(), F_OK), 0);
}

TEST(RootfsTest, FailedMountNamesTheMount) {
  ScopedTempDir tmp;
  const std::string& dir = tmp;
  ASSERT_FALSE(dir.empty());
  auto r = Rootfs::Mount({{"bind", dir + "/missing-source", {"rbind"}}}, dir + "/rootfs");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("missing-source"), absl::string_view::npos) << r.status();
}

TEST(UnmountAllTest, NotAMountPointIsOk) {
  ScopedTempDir tmp;
  const std::string& dir = tmp;
  ASSERT_FALSE(dir.empty());
  EXPECT_TRUE(UnmountAll(dir).ok());
  EXPECT_TRUE(UnmountAll(dir + "/missing").ok());
}

TEST(UnmountAllTest, RemovesStackedMounts) {
  ScopedTempDir tmp;
  const std::string& dir = tmp;
  ASSERT_FALSE(dir.empty());
  for (int i = 0; i < 2; ++i) {
    if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=1m") != 0) {
      if (errno == EPERM) GTEST_SKIP() << "mount: EPERM";
      FAIL() << "mount tmpfs: " << std::strerror(errno);
    }
  }
  ASSERT_TRUE(IsMountPoint(dir));
  EXPECT_TRUE(UnmountAll(dir).ok());
  EXPECT_FALSE(IsMountPoint(dir));
}

}  // namespace
}  // namespace gvshim::process
