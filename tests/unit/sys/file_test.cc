// Tests of shim/sys/file.h: the one atomic file write.
#include "shim/sys/file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace gvshim::sys {
namespace {

namespace fs = std::filesystem;

class FileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gvfile-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  // Names in dir_ other than `keep`.
  std::vector<std::string> Others(const std::string& keep) {
    std::vector<std::string> v;
    for (const auto& e : fs::directory_iterator(dir_))
      if (e.path().filename() != keep) v.push_back(e.path().filename());
    return v;
  }
  std::string dir_;
};

TEST_F(FileTest, ReplacesWithExactlyTheModeWhateverTheUmaskOrAStaleTemporaryFile) {
  const std::string path = dir_ + "/process.json";
  std::ofstream(path) << "old";
  std::ofstream(path + ".tmp") << "stale";  // what an earlier writer could have left
  ::chmod((path + ".tmp").c_str(), 0644);
  const mode_t old_umask = ::umask(0);
  absl::Status st = WriteFileAtomic(path, "secret env", 0600);
  ::umask(old_umask);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(*ReadFileToString(path), "secret env");
  struct stat sb;
  ASSERT_EQ(::stat(path.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 07777, 0600u);
  // Only the stale file someone else left; no temporary file of ours.
  EXPECT_EQ(Others("process.json"), std::vector<std::string>{"process.json.tmp"});
}

TEST_F(FileTest, AFailedFillLeavesTheOldFileAndNoTemporaryFile) {
  const std::string path = dir_ + "/spec.json";
  std::ofstream(path) << "old";
  absl::Status st = WriteFileAtomicWith(path, 0644, [](int fd, const std::string& tmp) {
    (void)!::write(fd, "half", 4);
    return absl::DataLossError("checksum mismatch in " + tmp);
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(*ReadFileToString(path), "old");
  EXPECT_TRUE(Others("spec.json").empty());
}

// kVolatile (bundle files under containerd's state directory) skips only the fsyncs: the file is still
// replaced whole, with its mode, and no temporary file is left, also when the fill fails.
TEST_F(FileTest, AVolatileWriteStillReplacesAtomicallyAndCleansUp) {
  const std::string path = dir_ + "/exec-1.json";
  std::ofstream(path) << "old";
  absl::Status st = WriteFileAtomic(path, "new process", 0600, Durability::kVolatile);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(*ReadFileToString(path), "new process");
  struct stat sb;
  ASSERT_EQ(::stat(path.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 07777, 0600u);
  EXPECT_TRUE(Others("exec-1.json").empty());
  st = WriteFileAtomicWith(
      path, 0600, [](int, const std::string&) { return absl::InternalError("fill failed"); },
      Durability::kVolatile);
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(*ReadFileToString(path), "new process");
  EXPECT_TRUE(Others("exec-1.json").empty());
}

TEST_F(FileTest, AMissingDirectoryIsNamed) {
  absl::Status st = WriteFileAtomic(dir_ + "/no/such/file", "x");
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(st.message().find(dir_ + "/no/such/file"), absl::string_view::npos) << st;
}

}  // namespace
}  // namespace gvshim::sys
