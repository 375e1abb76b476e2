// The node's gvshim.toml, made from the chart's values (JSON: Helm keeps every number as a float, so its TOML
// output would turn 4 into 4.0) and checked with gvshim's own parsers before it is written to a node.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace gvshim::node {

struct NodeConfigDefaults {
  std::string runsc_binary;  // [runsc] binary unless the values set it: the installed runsc
  std::string profiles_dir;  // [hardening] profiles_dir unless set: the installed seccomp profiles
};

// JSON object of tables -> TOML text. Integral numbers become integers, other numbers floats. The result is
// parsed back with config::Parse, the [hardening] and [execute] parsers: any key or value the shim would
// refuse at a container's Create is refused here, naming it.
absl::StatusOr<std::string> RenderGvshimToml(const std::string& json_text,
                                             const NodeConfigDefaults& defaults);

}  // namespace gvshim::node
