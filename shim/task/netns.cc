#include "shim/task/netns.h"

#include <sys/stat.h>
#include <sys/utsname.h>

#include <cerrno>
#include <cstdio>
#include <optional>

#include "absl/strings/str_cat.h"
#include "shim/base/log.h"
#include "shim/base/status.h"

namespace gvshim::task {
namespace {

// NET_NS_INIT_INO (linux/nsfs.h): the inode of the node's network namespace from Linux 6.18 on.
constexpr ino_t kInitNetInode = 0xEFFFFFF9;

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

bool KernelNumbersInitNetFixed(const std::string& release) {
  int major = 0, minor = 0;
  if (std::sscanf(release.c_str(), "%d.%d", &major, &minor) != 2) return false;
  return major > 6 || (major == 6 && minor >= 18);
}

absl::StatusOr<bool> SandboxNetnsIsNotTheNodes(const nlohmann::json& spec, const NetnsPaths& paths) {
  std::optional<NsId> init;
  if (absl::StatusOr<NsId> id = Identify(paths.init); id.ok()) {
    init = *id;
  } else {
    std::string release = paths.kernel_release;
    if (struct utsname u{}; release.empty() && ::uname(&u) == 0) release = u.release;
    absl::StatusOr<NsId> self = Identify(paths.self);
    if (!KernelNumbersInitNetFixed(release) || !self.ok()) {
      log::Warnf(
          "runsc --network=sandbox: cannot tell the node's network namespace (%s; kernel %s); runsc's own "
          "check decides",
          id.status().ToString(), release);
      return false;
    }
    // pid 1 may be out of reach (another user namespace, or no ptrace access); from 6.18 on the node's
    // network namespace has a fixed inode on the namespace filesystem.
    init = NsId{self->dev, kInitNetInode};
  }

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
