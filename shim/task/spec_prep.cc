#include "shim/task/spec_prep.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "shim/base/status.h"

namespace gvshim::task {
namespace {

absl::StatusOr<nlohmann::json> ReadJson(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("open ", path, ": ", std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError(path + ": not a JSON object");
  return j;
}

}  // namespace

absl::StatusOr<PreparedSpec> PrepareSpec(const std::string& bundle, const config::Config& cfg) {
  const std::string path = bundle + "/config.json";
  ASSIGN_OR_RETURN(nlohmann::json spec, ReadJson(path));
  PreparedSpec out;
  auto ann = spec.find("annotations");
  if (ann != spec.end() && ann->is_object()) {
    auto type = ann->find(kContainerTypeAnnotation);
    if (type != ann->end() && type->is_string() && type->get<std::string>() == "container") {
      out.creates_sandbox = false;
    }
  }
  if (auto linux = spec.find("linux"); linux != spec.end() && linux->is_object() && linux->contains("seccomp")) {
    out.oci_seccomp = true;
  }
  return out;
}

absl::Status WriteDeleteInfo(const std::string& bundle, const runsc::GlobalOptions& g) {
  nlohmann::json j = {{"binary", g.binary}, {"root", g.root},       {"platform", g.platform},
                      {"network", g.network}, {"extra_flags", g.extra_flags}};
  const std::string path = bundle + "/" + kDeleteInfoFile;
  std::ofstream out(path, std::ios::trunc);
  out << j.dump();
  if (!out.good()) return absl::InternalError("write " + path);
  return absl::OkStatus();
}

absl::StatusOr<runsc::GlobalOptions> ReadDeleteInfo(const std::string& bundle) {
  ASSIGN_OR_RETURN(nlohmann::json j, ReadJson(bundle + "/" + kDeleteInfoFile));
  runsc::GlobalOptions g;
  try {
    g.binary = j.at("binary").get<std::string>();
    g.root = j.at("root").get<std::string>();
    g.platform = j.at("platform").get<std::string>();
    g.network = j.at("network").get<std::string>();
    g.extra_flags = j.at("extra_flags").get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(bundle, "/", kDeleteInfoFile, ": ", e.what()));
  }
  return g;
}

}  // namespace gvshim::task
