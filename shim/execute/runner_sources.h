// The runner programs (shim/execute/runners/), embedded into the shim binary at build time.
#pragma once

#include <string_view>

namespace gvshim::execute {

std::string_view PythonRunnerSource();
std::string_view NodeRunnerSource();

}  // namespace gvshim::execute
