#include "shim/execute/server/runner_frames.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace gvshim::execute {
namespace {

std::string Framed(const std::string& body) {
  const size_t n = body.size();
  std::string out{static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
                  static_cast<char>(n)};
  return out + body;
}

TEST(SplitRunnerFrames, HandsOverCompleteFramesAndKeepsThePartialOne) {
  std::string buf = Framed("{\"a\":1}") + Framed("") + Framed("xyz").substr(0, 5);
  std::vector<std::string> got;
  EXPECT_EQ(SplitRunnerFrames(&buf, 1024,
                              [&](const std::string& body) {
                                got.push_back(body);
                                return std::string();
                              }),
            "");
  EXPECT_EQ(got, (std::vector<std::string>{"{\"a\":1}", ""}));
  EXPECT_EQ(buf, Framed("xyz").substr(0, 5));
  buf += "yz";
  got.clear();
  EXPECT_EQ(SplitRunnerFrames(&buf, 1024,
                              [&](const std::string& body) {
                                got.push_back(body);
                                return std::string();
                              }),
            "");
  EXPECT_EQ(got, (std::vector<std::string>{"xyz"}));
  EXPECT_EQ(buf, "");
}

TEST(SplitRunnerFrames, RefusesALengthOverTheLimitWithoutWaitingForIt) {
  std::string buf = Framed(std::string(17, 'x')).substr(0, 4);
  int calls = 0;
  EXPECT_EQ(SplitRunnerFrames(&buf, 16,
                              [&](const std::string&) {
                                ++calls;
                                return std::string();
                              }),
            "a frame of 17 bytes");
  EXPECT_EQ(calls, 0);
}

TEST(SplitRunnerFrames, StopsAtTheFirstErrorTheHandlerReturns) {
  std::string buf = Framed("1") + Framed("2") + Framed("3");
  std::vector<std::string> got;
  EXPECT_EQ(SplitRunnerFrames(&buf, 16,
                              [&](const std::string& body) {
                                got.push_back(body);
                                return body == "2" ? std::string("bad") : std::string();
                              }),
            "bad");
  EXPECT_EQ(got, (std::vector<std::string>{"1", "2"}));
}

TEST(DecodeRunnerFrame, RefusesWhatIsNotAJsonObject) {
  for (const char* body : {"", "[1]", "\"ready\"", "{\"type\":", "{} x"}) {
    auto f = DecodeRunnerFrame(body);
    ASSERT_FALSE(f.ok()) << body;
    EXPECT_EQ(f.status().message(), "a frame that is not a JSON object") << body;
  }
}

TEST(DecodeRunnerFrame, DecodesOutput) {
  auto f = DecodeRunnerFrame(R"({"type":"output","id":"j1","stream":"stderr","data":"aGk="})");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->type, "output");
  EXPECT_EQ(f->id, "j1");
  EXPECT_TRUE(f->to_stderr);
  EXPECT_EQ(f->data, "hi");
  auto bad = DecodeRunnerFrame(R"({"type":"output","id":"j1","data":"a*"})");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "an output frame with invalid base64");
}

TEST(DecodeRunnerFrame, DecodesReadyAndIgnoresFieldsOfTheWrongType) {
  auto f = DecodeRunnerFrame(R"({"type":"ready","runner":"python","version":"3.11","pid":7})");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->runner, "python");
  EXPECT_EQ(f->version, "3.11");
  EXPECT_EQ(f->pid, 7);
  auto g = DecodeRunnerFrame(R"({"type":5,"id":["x"]})");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->type, "");
  EXPECT_EQ(g->id, "");
}

// A ready frame's pid is only logged: one that is not an int must not throw (nlohmann's value() did: an
// uncaught type_error ended the server's I/O thread and so the whole Execute server) nor convert out of range
// (UB).
TEST(DecodeRunnerFrame, ReadyWithAPidThatIsNotAnIntIsDecodedWithoutIt) {
  for (const char* pid : {"\"12\"", "null", "[1]", "1e300", "-1e300", "4294967296", "-2147483649", "1.5"}) {
    const std::string body = std::string(R"({"type":"ready","runner":"python","pid":)") + pid + "}";
    absl::StatusOr<RunnerFrame> f;
    ASSERT_NO_THROW(f = DecodeRunnerFrame(body)) << body;
    ASSERT_TRUE(f.ok()) << body << ": " << f.status();
    EXPECT_EQ(f->pid, 0) << body;
    EXPECT_EQ(f->runner, "python") << body;
  }
  auto f = DecodeRunnerFrame(R"({"type":"ready","pid":-3})");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->pid, -3);
}

// Copying a deeply nested ready frame (runner.cc copies its isolation object) overflowed the server's stack.
TEST(DecodeRunnerFrame, RefusesNestingDeeperThan64Levels) {
  const size_t n = 1000000;
  auto deep =
      DecodeRunnerFrame(R"({"type":"ready","isolation":)" + std::string(n, '[') + std::string(n, ']') + "}");
  ASSERT_FALSE(deep.ok());
  EXPECT_EQ(deep.status().message(), "a frame nested deeper than 64 levels");
  // 64 levels (the frame's object and 63 arrays) are fine.
  EXPECT_TRUE(DecodeRunnerFrame(R"({"x":)" + std::string(63, '[') + std::string(63, ']') + "}").ok());
  EXPECT_FALSE(DecodeRunnerFrame(R"({"x":)" + std::string(64, '[') + std::string(64, ']') + "}").ok());
}

}  // namespace
}  // namespace gvshim::execute
