// The reaper of a unit test binary: made and started before any test (by test_main.cc in gvshim_reaper_test
// binaries, by a global test environment in binaries that need it as a subreaper), as the shim's main does,
// and handed to the code under test like main hands it down. Defined once per binary.
#pragma once

#include "shim/sys/reaper.h"

namespace gvshim::testing {

sys::Reaper& TestReaper();

}  // namespace gvshim::testing
