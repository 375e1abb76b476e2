// Helpers shared by the oci unit tests: the repository's test data and a policy without a seccomp profile.
#pragma once

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "shim/oci/hardening.h"

namespace gvshim::oci::testing {

inline std::string SourceDir() {
  const char* dir = std::getenv("GVSHIM_SOURCE_DIR");
  return dir != nullptr ? dir : ".";
}

// containerd's CRI spec for an app container (tests/testdata).
inline nlohmann::json CriSpec() {
  auto spec = LoadSpec(SourceDir() + "/tests/testdata/seccomp/cri-container-spec.json");
  EXPECT_TRUE(spec.ok()) << spec.status();
  return spec.ok() ? *spec : nlohmann::json();
}

inline HardeningPolicy NoProfile() {
  HardeningPolicy p;
  p.profiles_dir = SourceDir() + "/seccomp-profiles";
  return p;
}

inline std::string Msg(const absl::Status& s) { return std::string(s.message()); }

}  // namespace gvshim::oci::testing
