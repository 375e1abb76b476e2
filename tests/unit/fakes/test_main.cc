// main() for unit tests that need the process-wide reaper: like the shim, start it before any other thread
// exists (it blocks SIGCHLD in the calling thread, and every later thread inherits that mask).
#include <cstdio>

#include "gtest/gtest.h"
#include "shim/sys/reaper.h"

int main(int argc, char** argv) {
  if (absl::Status st = gvshim::sys::Reaper::Get().Start(/*subreaper=*/false); !st.ok()) {
    std::fprintf(stderr, "start reaper: %s\n", st.ToString().c_str());
    return 1;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
