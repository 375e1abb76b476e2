#include "shim/task/netns.h"

#include <sys/stat.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "shim/base/status.h"

namespace gvshim::task {
namespace {

struct NsId {
  dev_t dev;
  ino_t ino;
  bool operator==(const NsId& o) const { return dev == o.dev && ino == o.ino; }
};

absl::StatusOr<NsId> Identify(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("stat ", path));
  return NsId{st.st_dev, st.st_ino};
}

}  // namespace

absl::StatusOr<bool> SandboxNetnsIsNotTheNodes(const nlohmann::json& spec, const NetnsPaths& paths) {
  absl::StatusOr<NsId> init = Identify(paths.init);
  if (!init.ok()) return false;

  // The namespace runsc will use: the spec's path; a fresh one when the spec asks for a network namespace
  // without a path; the shim's own when the spec lists namespaces but no network one (hostNetwork), or none.
  bool listed = false;
  std::string path;
  if (auto lx = spec.find("linux"); lx != spec.end() && lx->is_object()) {
    if (auto nss = lx->find("namespaces"); nss != lx->end() && nss->is_array()) {
      for (const nlohmann::json& n : *nss) {
        if (!n.is_object() || n.value("type", "") != "network") continue;
        listed = true;
        if (auto p = n.find("path"); p != n.end() && p->is_string()) path = p->get<std::string>();
      }
    }
  }
  if (listed && path.empty()) return true;
  const std::string& used = listed ? path : paths.self;
  absl::StatusOr<NsId> ns = Identify(used);
  if (!ns.ok()) return Annotate(ns.status(), "the pod's network namespace for runsc --network=sandbox");
  if (*ns == *init) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the pod sandbox would run in the node's network namespace (",
        listed ? absl::StrCat("linux.namespaces network path ", path) : "hostNetwork: no network namespace",
        ") with [runsc] network = \"sandbox\", which hands the namespace's interfaces to gVisor: refused (a "
        "hostNetwork pod needs [hardening] host_network = \"isolated\" or \"host\")"));
  }
  return true;
}

}  // namespace gvshim::task
