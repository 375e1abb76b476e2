// The runner programs (shim/execute/sandbox/python, sandbox/node), each bundled into one source text
// (sandbox/bundle.py) and embedded into the gvshim binary at build time.
#pragma once

#include <string_view>

namespace gvshim::execute {

std::string_view PythonRunnerSource();
std::string_view NodeRunnerSource();

}  // namespace gvshim::execute
