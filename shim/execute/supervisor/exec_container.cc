#include "shim/execute/supervisor/exec_container.h"

#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "shim/base/log.h"
#include "shim/base/status.h"
#include "shim/execute/common/helpers.h"
#include "shim/oci/hardening.h"
#include "shim/sys/subprocess.h"

namespace gvshim::execute {
namespace {

constexpr char kDefaultPath[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// What the runners need to set snippets up: namespaces and mounts (SYS_ADMIN), the uid/gid drop, chown of a
// snippet's working directory, killing snippets. Snippets themselves run with none.
constexpr const char* kCaps[] = {"CAP_CHOWN",  "CAP_DAC_OVERRIDE", "CAP_FOWNER",   "CAP_KILL",
                                 "CAP_SETGID", "CAP_SETUID",       "CAP_SYS_ADMIN"};

nlohmann::json Tmpfs(const std::string& dest, const std::string& mode, uint64_t bytes, bool noexec) {
  nlohmann::json opts = {"nosuid", "nodev", absl::StrCat("mode=", mode), absl::StrCat("size=", bytes)};
  if (noexec) opts.push_back("noexec");
  return {{"destination", dest}, {"type", "tmpfs"}, {"source", "tmpfs"}, {"options", opts}};
}

}  // namespace

std::vector<std::string> ExecMountPoints() { return {kHelpersMountPoint, kWorkspace, "/tmp", "/var/tmp"}; }

absl::StatusOr<nlohmann::json> ExecContainerSpec(const nlohmann::json& target, const ExecContainerParams& p) {
  if (p.rootfs.empty() || p.rootfs[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("execute container: rootfs \"", p.rootfs, "\" is not absolute"));
  }
  if (p.sandbox_runsc_id.empty() || p.helpers_dir.empty()) {
    return absl::InvalidArgumentError("execute container: sandbox id and helpers directory are required");
  }
  std::string path_env = kDefaultPath;
  std::string hostname = "sandbox";
  nlohmann::json network = {{"type", "network"}};
  if (target.is_object()) {
    if (auto h = target.find("hostname");
        h != target.end() && h->is_string() && !h->get<std::string>().empty())
      hostname = h->get<std::string>();
    if (auto proc = target.find("process"); proc != target.end() && proc->is_object()) {
      if (auto env = proc->find("env"); env != proc->end() && env->is_array()) {
        for (const auto& e : *env) {
          if (e.is_string() && e.get<std::string>().rfind("PATH=", 0) == 0) path_env = e.get<std::string>();
        }
      }
    }
    // The pod's network namespace (CRI gives its path); gVisor runs one network stack per sandbox anyway.
    if (auto lx = target.find("linux"); lx != target.end() && lx->is_object()) {
      if (auto nss = lx->find("namespaces"); nss != lx->end() && nss->is_array()) {
        for (const auto& ns : *nss) {
          if (ns.is_object() && ns.value("type", "") == "network") network = ns;
        }
      }
    }
  }
  nlohmann::json caps = nlohmann::json::array();
  for (const char* c : kCaps) caps.push_back(c);
  const uint64_t small = 1 << 20;
  nlohmann::json mounts = nlohmann::json::array({
      {{"destination", "/proc"},
       {"type", "proc"},
       {"source", "proc"},
       {"options", {"nosuid", "noexec", "nodev"}}},
      {{"destination", "/dev"},
       {"type", "tmpfs"},
       {"source", "tmpfs"},
       {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}},
      {{"destination", "/dev/pts"},
       {"type", "devpts"},
       {"source", "devpts"},
       {"options", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}}},
      Tmpfs("/dev/shm", "1777", small, true),
      Tmpfs("/tmp", "1777", p.tmpfs_bytes, false),
      Tmpfs("/var/tmp", "1777", small, false),
      Tmpfs(kWorkspace, "755", small, false),
      {{"destination", kHelpersMountPoint},
       {"type", "bind"},
       {"source", p.helpers_dir},
       {"options", {"rbind", "ro", "nosuid", "nodev"}}},
  });
  return nlohmann::json{
      {"ociVersion", "1.0.2"},
      {"process",
       {{"terminal", false},
        {"user", {{"uid", 0}, {"gid", 0}}},
        {"args", {absl::StrCat(kHelpersMountPoint, "/", kLauncherName), "init"}},
        {"env", {path_env}},
        {"cwd", "/"},
        {"capabilities", {{"bounding", caps}, {"effective", caps}, {"permitted", caps}}},
        {"noNewPrivileges", true},
        {"rlimits", {{{"type", "RLIMIT_NOFILE"}, {"hard", 65536}, {"soft", 65536}}}}}},
      {"root", {{"path", p.rootfs}, {"readonly", true}}},
      {"hostname", hostname},
      {"mounts", mounts},
      {"annotations",
       {{"io.kubernetes.cri.container-type", "container"},
        {"io.kubernetes.cri.sandbox-id", p.sandbox_runsc_id}}},
      {"linux",
       {{"namespaces",
         {{{"type", "pid"}}, {{"type", "ipc"}}, {{"type", "uts"}}, {{"type", "mount"}}, network}}}},
  };
}

absl::Status MakeMountPoints(const std::string& rootfs) {
  for (const std::string& dir : ExecMountPoints()) {
    // mkdir -p, never following a link the image put on the way (the paths are relative to the rootfs).
    for (size_t end = 1; end <= dir.size(); ++end) {
      if (end != dir.size() && dir[end] != '/') continue;
      const std::string p = rootfs + dir.substr(0, end);
      struct stat st;
      if (::lstat(p.c_str(), &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return absl::FailedPreconditionError(p + " exists and is not a directory");
        continue;
      }
      if (::mkdir(p.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoStatus(errno, "mkdir " + p);
    }
  }
  return absl::OkStatus();
}

bool RunscNeedsMountPoints(const std::string& binary, sys::ProcessWatcher* reaper) {
  static absl::Mutex mu(absl::kConstInit);
  static auto* cache = new std::map<std::string, bool>();
  absl::MutexLock lock(&mu);
  if (auto it = cache->find(binary); it != cache->end()) return it->second;
  bool old = false;
  sys::SpawnOptions o;
  o.argv = {binary, "--version"};
  auto r = sys::RunSubprocess(reaper, std::move(o), absl::Seconds(10));
  // "runsc version 0.0~20240729.0" (Debian) or "runsc version release-20240729.0".
  if (r.ok() && r->exit_code == 0) {
    const std::string& out = r->out;
    for (size_t i = 0; i + 8 <= out.size(); ++i) {
      int date = 0;
      if (absl::SimpleAtoi(out.substr(i, 8), &date) && date > 20000000 && date < 30000000) {
        old = date < 20240729;
        break;
      }
    }
  }
  (*cache)[binary] = old;
  return old;
}

absl::Status CreateExecContainer(runsc::Runsc& runsc, const std::string& target_id, const std::string& bundle,
                                 const ExecContainerParams& p) {
  const std::string id = ExecContainerId(target_id);
  ASSIGN_OR_RETURN(nlohmann::json target, oci::LoadSpec(bundle + "/config.json"));
  ASSIGN_OR_RETURN(nlohmann::json spec, ExecContainerSpec(target, p));
  const std::string dir = absl::StrCat(bundle, "/", kExecBundleDir);
  auto cleanup_dir = [&] {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  };
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoStatus(errno, "mkdir " + dir);
  if (absl::Status st = oci::SaveSpec(dir + "/config.json", spec); !st.ok()) {
    cleanup_dir();
    return st;
  }
  runsc::CreateOptions co;
  co.bundle = dir;
  absl::Status st = runsc.Create(id, co);
  if (st.ok()) st = runsc.Start(id, runsc::Stdio{});
  if (!st.ok()) {
    (void)runsc.Delete(id, /*force=*/true);
    cleanup_dir();
    return Annotate(st, absl::StrCat("execute container for ", target_id));
  }
  return absl::OkStatus();
}

absl::Status DeleteExecContainer(runsc::Runsc& runsc, const std::string& target_id,
                                 const std::string& bundle) {
  const std::string dir = absl::StrCat(bundle, "/", kExecBundleDir);
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) return absl::OkStatus();
  absl::Status del = runsc.Delete(ExecContainerId(target_id), /*force=*/true);
  if (del.code() == absl::StatusCode::kNotFound) del = absl::OkStatus();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (!del.ok()) return Annotate(del, absl::StrCat("delete the execute container of ", target_id));
  if (ec) return absl::InternalError(absl::StrCat("remove ", dir, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace gvshim::execute
