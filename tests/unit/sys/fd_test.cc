// Tests of shim/sys/fd.h.
#include "shim/sys/fd.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include "gtest/gtest.h"

namespace gvshim::sys {
namespace {

// With SIGPIPE's default action (as in a test binary or a library user), a write to a pipe without a reader
// ends the process; under the guard it fails with EPIPE and nothing is left pending afterwards.
TEST(ScopedSigpipeGuardTest, AWriteToAPipeWithoutReaderIsEpipeNotDeath) {
  struct sigaction dfl = {}, old = {};
  dfl.sa_handler = SIG_DFL;
  ASSERT_EQ(sigaction(SIGPIPE, &dfl, &old), 0);
  auto p = MakePipe();
  ASSERT_TRUE(p.ok());
  p->read.reset();
  ssize_t n;
  int err;
  {
    ScopedSigpipeGuard guard;
    n = ::write(p->write.get(), "x", 1);
    err = errno;
  }
  EXPECT_EQ(n, -1);
  EXPECT_EQ(err, EPIPE);
  sigset_t pending;
  sigpending(&pending);
  EXPECT_FALSE(sigismember(&pending, SIGPIPE));
  sigset_t mask;
  pthread_sigmask(SIG_SETMASK, nullptr, &mask);
  EXPECT_FALSE(sigismember(&mask, SIGPIPE)) << "the guard must restore the thread's mask";
  sigaction(SIGPIPE, &old, nullptr);
}

}  // namespace
}  // namespace gvshim::sys
