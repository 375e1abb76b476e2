// main() for unit tests that need a reaper: like the shim, make and start it before any other thread exists
// (it blocks SIGCHLD in the calling thread, and every later thread inherits that mask). Tests reach it with
// TestReaper() and hand it to the code under test.
#include <cstdio>

#include "gtest/gtest.h"
#include "tests/unit/fakes/test_reaper.h"

namespace gvshim::testing {

sys::Reaper& TestReaper() {
  // Never deleted: its thread runs until the process exits.
  static sys::Reaper* const reaper = new sys::Reaper();
  return *reaper;
}

}  // namespace gvshim::testing

int main(int argc, char** argv) {
  if (absl::Status st = gvshim::testing::TestReaper().Start(/*subreaper=*/false); !st.ok()) {
    std::fprintf(stderr, "start reaper: %s\n", st.ToString().c_str());
    return 1;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
