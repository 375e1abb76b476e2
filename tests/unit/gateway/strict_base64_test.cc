#include "shim/gateway/strict_base64.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_split.h"

namespace gvshim::gateway {
namespace {

struct Case {
  std::string in;
  bool ok;
  std::string want;  // decoded bytes, or Python's reason
};

// Verdicts of CPython 3.11's base64.b64decode(s, validate=True) (checked on this machine's python3).
TEST(StrictBase64, MatchesPythonOnTable) {
  const std::vector<Case> cases = {
      {"", true, ""},
      {"YQ==", true, "a"},
      {"YWI=", true, "ab"},
      {"YWJj", true, "abc"},
      {"aGVsbG8gd29ybGQ=", true, "hello world"},
      {"YWJj=", true, "abc"},  // a pad after a complete group is ignored
      {"YWJj==", true, "abc"},
      {"QUJD=====", true, "ABC"},
      {"YR==", true, "a"},  // unused bits set
      {"YQ=", false, "Incorrect padding"},
      {"YQ", false, "Incorrect padding"},
      {"YWI", false, "Incorrect padding"},
      {"Y", false,
       "Invalid base64-encoded string: number of data characters (1) cannot be 1 more than a multiple of 4"},
      {"YWJjZ", false,
       "Invalid base64-encoded string: number of data characters (5) cannot be 1 more than a multiple of 4"},
      {"Y===", false,
       "Invalid base64-encoded string: number of data characters (1) cannot be 1 more than a multiple of 4"},
      {"YWI==", false, "Excess data after padding"},
      {"YQ===", false, "Excess data after padding"},
      {"YQ==YQ==", false, "Excess data after padding"},
      {"YQ==\n", false, "Excess data after padding"},
      {"YQ=a", false, "Discontinuous padding not allowed"},
      {"YWJj=YQ==", false, "Discontinuous padding not allowed"},
      {"=", false, "Leading padding not allowed"},
      {"==YQ", false, "Leading padding not allowed"},
      {" YQ==", false, "Only base64 data is allowed"},
      {"YQ\n==", false, "Only base64 data is allowed"},
      {"YQ-_", false, "Only base64 data is allowed"},
      {"\xc3\xa9", false, "string argument should contain only ASCII characters"},
  };
  for (const Case& c : cases) {
    auto got = DecodeStrictBase64(c.in);
    if (c.ok) {
      ASSERT_TRUE(got.ok()) << "\"" << absl::CEscape(c.in) << "\": " << got.status();
      EXPECT_EQ(*got, c.want) << absl::CEscape(c.in);
    } else {
      ASSERT_FALSE(got.ok()) << "\"" << absl::CEscape(c.in) << "\" decoded to " << absl::CEscape(*got);
      EXPECT_EQ(got.status().message(), c.want) << absl::CEscape(c.in);
    }
  }
}

TEST(StrictBase64, RoundTripsBinary) {
  std::mt19937 rng(7);
  for (int len = 0; len < 64; ++len) {
    std::string bytes(len, '\0');
    for (char& ch : bytes) ch = static_cast<char>(rng());
    auto got = DecodeStrictBase64(absl::Base64Escape(bytes));
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, bytes);
  }
}

// Differential test against the python3 on this machine: every string over a small alphabet up to length 6,
// plus random longer ones, must get the same verdict, the same bytes and the same reason.
TEST(StrictBase64, MatchesLocalPython) {
  const char* py = "/usr/bin/python3";
  if (::access(py, X_OK) != 0) GTEST_SKIP() << "no " << py;
  std::vector<std::string> inputs;
  const std::string alphabet = "AQw+/=-";  // '-' is not base64
  std::vector<std::string> layer = {""};
  for (int len = 1; len <= 6; ++len) {
    std::vector<std::string> next;
    for (const std::string& s : layer) {
      for (char c : alphabet) next.push_back(s + c);
    }
    inputs.insert(inputs.end(), next.begin(), next.end());
    layer.swap(next);
  }
  std::mt19937 rng(11);
  const std::string wide = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/====  \n-_";
  for (int i = 0; i < 20000; ++i) {
    std::string s(rng() % 24, 'A');
    for (char& c : s) c = wide[rng() % wide.size()];
    inputs.push_back(s);
  }
  char path[] = "/tmp/gvs-b64-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  {
    std::ofstream f(path);
    for (const std::string& s : inputs) f << absl::BytesToHexString(s) << "\n";
  }
  std::string script = std::string(py) +
                       " -c '\n"
                       "import base64, binascii, sys\n"
                       "for line in open(sys.argv[1]):\n"
                       "    s = bytes.fromhex(line.strip()).decode(\"latin-1\")\n"
                       "    try:\n"
                       "        print(\"OK \" + base64.b64decode(s, validate=True).hex())\n"
                       "    except Exception as e:\n"
                       "        print(\"ERR \" + str(e))\n"
                       "' " +
                       path;
  FILE* p = ::popen(script.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  ASSERT_EQ(::pclose(p), 0);
  ::unlink(path);
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), inputs.size());
  int mismatches = 0;
  for (size_t i = 0; i < inputs.size() && mismatches < 10; ++i) {
    auto got = DecodeStrictBase64(inputs[i]);
    std::string ours =
        got.ok() ? "OK " + absl::BytesToHexString(*got) : "ERR " + std::string(got.status().message());
    if (ours != lines[i]) {
      ++mismatches;
      ADD_FAILURE() << "\"" << absl::CEscape(inputs[i]) << "\": python says [" << lines[i] << "], we say ["
                    << ours << "]";
    }
  }
}

}  // namespace
}  // namespace gvshim::gateway
