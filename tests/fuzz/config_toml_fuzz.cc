// Feeds arbitrary bytes as the shim's gvshim.toml through every parser of it: config::Parse ([runsc], [shim]
// and the table layout), then the [hardening] table (oci::ParseHardeningTable) and the [execute] table
// (execute::ParseExecuteTable), as the shim does at start. The config is written by the node's operator
// (or rendered from Helm values by `gvshim node`): malformed text must be an error naming file and line,
// never a crash, an uncaught toml++ exception or a silent default.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "shim/config/config.h"
#include "shim/execute/common/config.h"
#include "shim/oci/hardening.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto cfg = gvshim::config::Parse(text, "gvshim.toml");
  if (!cfg.ok()) {
    // Errors name the file.
    Check(cfg.status().message().find("gvshim.toml") != absl::string_view::npos);
    return 0;
  }
  Check(cfg->source == "gvshim.toml");
  Check(!cfg->runsc.root.empty() && cfg->runsc.root[0] == '/');
  Check(cfg->shim.memory_check_ms >= 0);
  if (cfg->hardening != nullptr) {
    auto policy = gvshim::oci::ParseHardeningTable(*cfg->hardening, cfg->source);
    if (!policy.ok()) {
      Check(!policy.status().message().empty());
    } else {
      for (const auto& t : policy->tmpfs) Check(gvshim::oci::ValidateTmpfs(t).ok());
      (void)gvshim::oci::ResolveProfilePath(*policy);
    }
  }
  auto execute = gvshim::execute::ParseExecuteTable(cfg->execute.get(), cfg->source);
  if (!execute.ok()) Check(!execute.status().message().empty());
  return 0;
}
