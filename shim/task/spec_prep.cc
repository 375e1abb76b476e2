#include "shim/task/spec_prep.h"

#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "shim/base/log.h"
#include "shim/base/status.h"
#include "shim/oci/hardening.h"
#include "shim/seccomp/profile.h"
#include "shim/sys/file.h"
#include "shim/task/netns.h"
#include "shim/task/wrap.h"

namespace gvshim::task {
namespace {

absl::StatusOr<nlohmann::json> ReadJson(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, sys::ReadFileToString(path));
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError(path + ": not a JSON object");
  return j;
}

}  // namespace

std::string OomCounterFile(const std::string& cgroup_root, const std::string& cgroups_path) {
  if (cgroups_path.empty() || cgroups_path[0] != '/' || cgroups_path.find("..") != std::string::npos)
    return "";
  struct stat st;
  if (::stat((cgroup_root + "/memory").c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return cgroup_root + "/memory" + cgroups_path + "/memory.oom_control";
  }
  if (::stat((cgroup_root + "/cgroup.controllers").c_str(), &st) == 0) {
    return cgroup_root + cgroups_path + "/memory.events";
  }
  return "";
}

absl::StatusOr<nlohmann::json> ProfileCache::Get(const std::string& path) {
  absl::MutexLock lock(&mu_);
  auto it = profiles_.find(path);
  if (it != profiles_.end()) return it->second;
  ASSIGN_OR_RETURN(seccomp::ValidatedProfile profile, seccomp::LoadProfileFile(path));
  ASSIGN_OR_RETURN(nlohmann::json oci, seccomp::ToOciSeccomp(profile));
  profiles_[path] = oci;
  return oci;
}

absl::StatusOr<std::string> ProfileCache::Bpf(const nlohmann::json& oci_seccomp) {
  std::string key = oci_seccomp.dump();
  absl::MutexLock lock(&mu_);
  auto it = bpf_.find(key);
  if (it != bpf_.end()) return it->second;
  ASSIGN_OR_RETURN(std::string bpf, seccomp::CompileBpf(oci_seccomp, "linux.seccomp"));
  bpf_[key] = bpf;
  return bpf;
}

absl::StatusOr<PreparedSpec> PrepareSpec(const std::string& bundle, const config::Config& cfg,
                                         ProfileCache* profiles, const std::string& runsc_root,
                                         const std::string& wrap) {
  const std::string path = bundle + "/config.json";
  ASSIGN_OR_RETURN(nlohmann::json spec, oci::LoadSpec(path));
  oci::HardeningPolicy policy;
  if (cfg.hardening != nullptr) {
    ASSIGN_OR_RETURN(policy, oci::ParseHardeningTable(*cfg.hardening, cfg.source));
  }
  auto annotations_or = oci::SpecAnnotations(spec);
  if (!annotations_or.ok()) return Annotate(annotations_or.status(), path);
  auto annotations = std::move(*annotations_or);
  ASSIGN_OR_RETURN(policy, oci::ApplyAnnotations(policy, annotations));
  std::optional<nlohmann::json> seccomp_profile;
  if (policy.enabled) {
    ASSIGN_OR_RETURN(std::string profile_path, oci::ResolveProfilePath(policy));
    if (!profile_path.empty()) {
      ASSIGN_OR_RETURN(seccomp_profile, profiles->Get(profile_path));
    }
  }
  auto hardened_or = oci::HardenWithProfile(spec, policy, seccomp_profile);
  if (!hardened_or.ok()) return Annotate(hardened_or.status(), path);
  oci::HardeningResult hardened = std::move(*hardened_or);
  spec = std::move(hardened.spec);
  const bool joins = [&] {
    auto type = annotations.find(kContainerTypeAnnotation);
    return type != annotations.end() && type->second == "container";
  }();
  if (auto sb = annotations.find(kSandboxIdAnnotation);
      joins && !runsc_root.empty() && sb != annotations.end()) {
    spec["annotations"][kSandboxIdAnnotation] = runsc::ContainerId(runsc_root, sb->second);
  }
  const bool pod_sandbox = [&] {
    auto type = annotations.find(kContainerTypeAnnotation);
    return type != annotations.end() && type->second == "sandbox";
  }();
  PreparedSpec out;
  const nlohmann::json* seccomp = nullptr;
  if (auto lx = spec.find("linux"); lx != spec.end() && lx->is_object() && lx->contains("seccomp")) {
    seccomp = &(*lx)["seccomp"];
  }
  if (!wrap.empty() && !pod_sandbox) {
    if (seccomp != nullptr) {
      // The init gets the profile from runsc; execs get it from the wrapper, as BPF compiled here.
      auto bpf = profiles->Bpf(*seccomp);
      if (!bpf.ok()) return Annotate(bpf.status(), absl::StrCat(path, ": compiling linux.seccomp for execs"));
      out.exec_seccomp_bpf = std::move(*bpf);
    }
    if (absl::Status st = AddWrap(&spec, wrap); !st.ok()) return Annotate(st, path);
    out.wrap = true;
  } else if (seccomp != nullptr && !pod_sandbox) {
    out.exec_needs_wrap = true;
  }
  if (policy.enabled && oci::UsesHostNetwork(spec)) {
    if (policy.host_network == "host") {
      out.network = "host";
    } else if (cfg.runsc.network == "sandbox") {
      // "isolated": gVisor's own loopback-only network. --network=sandbox would take the node's interfaces.
      out.network = "none";
    }
  }
  if (!joins && (out.network.empty() ? cfg.runsc.network : out.network) == "sandbox") {
    auto hide = SandboxNetnsIsNotTheNodes(spec);
    if (!hide.ok()) return Annotate(hide.status(), path);
    out.hide_net_sysctls = *hide;
    log::Debugf("%s: --network=sandbox, the pod's network namespace is %s; /proc/sys/net %s from runsc",
                bundle, *hide ? "not the node's" : "unknown (init's unreadable)",
                *hide ? "hidden" : "left visible");
  }
  auto resources = ResourcesFromSpec(spec);
  if (!resources.ok()) return Annotate(resources.status(), path);
  // The bundle lives in containerd's state directory (gone after a reboot, as are its containers): no fsync.
  RETURN_IF_ERROR(oci::SaveSpec(path, spec, /*durable=*/false));
  for (const std::string& note : hardened.notes) log::Debugf("harden %s: %s", bundle, note);
  out.creates_sandbox = !joins;
  // A profile from the policy, or one the client put in the spec (e.g. a pod's RuntimeDefault), is enforced
  // by runsc only with --oci-seccomp.
  out.oci_seccomp = hardened.needs_oci_seccomp;
  out.annotations = annotations;
  out.resources = *resources;
  out.policy = policy;
  out.privileged = hardened.privileged;
  if (auto it = annotations.find(kSandboxIdAnnotation); it != annotations.end()) out.sandbox_id = it->second;
  out.rootfs = bundle + "/rootfs";
  if (auto root = spec.find("root"); root != spec.end() && root->is_object()) {
    auto p = root->find("path");
    if (p != root->end() && p->is_string() && !p->get<std::string>().empty()) {
      std::string rp = p->get<std::string>();
      out.rootfs = rp[0] == '/' ? rp : bundle + "/" + rp;
    }
  }
  if (auto lx = spec.find("linux"); lx != spec.end() && lx->is_object()) {
    if (lx->contains("seccomp")) out.oci_seccomp = true;
    auto cg = lx->find("cgroupsPath");
    if (cg != lx->end() && cg->is_string())
      out.oom_counter_file = OomCounterFile("/sys/fs/cgroup", cg->get<std::string>());
  }
  return out;
}

runsc::GlobalOptions RunscOptions(const config::Config& cfg, const std::string& ns) {
  runsc::GlobalOptions g;
  g.binary = cfg.runsc.binary;
  g.root = absl::StrCat(cfg.runsc.root, "/", ns);
  g.platform = cfg.runsc.platform;
  g.network = cfg.runsc.network;
  g.debug = cfg.runsc.debug;
  g.debug_log = cfg.runsc.debug_log;
  g.extra_flags = cfg.runsc.extra_flags;
  return g;
}

absl::Status WriteDeleteInfo(const std::string& bundle, const runsc::GlobalOptions& g) {
  nlohmann::json j = {{"binary", g.binary},
                      {"root", g.root},
                      {"platform", g.platform},
                      {"network", g.network},
                      {"extra_flags", g.extra_flags}};
  return sys::WriteFileAtomic(bundle + "/" + kDeleteInfoFile, j.dump(), 0644, sys::Durability::kVolatile);
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

namespace gvshim::task {

void FillMetrics(const runsc::Stats& s, io::containerd::cgroups::v1::Metrics* m) {
  auto* cpu = m->mutable_cpu()->mutable_usage();
  cpu->set_total(s.cpu_total_ns);
  cpu->set_user(s.cpu_user_ns);
  cpu->set_kernel(s.cpu_kernel_ns);
  for (uint64_t v : s.cpu_per_cpu_ns) cpu->add_per_cpu(v);
  auto* mem = m->mutable_memory();
  mem->set_cache(s.memory_cache);
  mem->set_rss(s.memory_rss);
  mem->mutable_usage()->set_usage(s.memory_usage);
  mem->mutable_usage()->set_max(s.memory_max);
  mem->mutable_usage()->set_limit(s.memory_limit);
  mem->mutable_usage()->set_failcnt(s.memory_failcnt);
  mem->mutable_swap()->set_usage(s.swap_usage);
  mem->mutable_swap()->set_limit(s.swap_limit);
  mem->mutable_kernel()->set_usage(s.kernel_usage);
  m->mutable_pids()->set_current(s.pids_current);
  m->mutable_pids()->set_limit(s.pids_limit);
}

}  // namespace gvshim::task
