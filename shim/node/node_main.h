// `gvshim node ...`: the node installer's command line (run by the chart's DaemonSet and its pre-delete
// hook).
#pragma once

#include <string>
#include <vector>

namespace gvshim::node {

// args: everything after "node". Returns the process exit code.
int NodeMain(const std::vector<std::string>& args);

}  // namespace gvshim::node
