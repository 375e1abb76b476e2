#include "shim/node/installer.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "shim/base/log.h"
#include "shim/base/status.h"
#include "shim/node/files.h"
#include "shim/node/node_config.h"

namespace gvshim::node {
namespace {

namespace fs = std::filesystem;
constexpr const char* kBinaries[] = {"containerd-shim-gvisor-v1", "gvshim", "runsc"};

std::string Dir(const std::string& p) { return fs::path(p).parent_path().string(); }

}  // namespace

// Everything Install decides before it touches the host.
struct Installer::Plan {
  Schema schema = Schema::kV2;
  RuntimeEntry entry;
  std::string before_dump;
  std::string dropin_path, dropin_text;
  std::optional<std::string> old_dropin;  // current content (nullopt: absent)
  RootConfig root;
  std::string root_text;                // current bytes ("" when absent)
  std::optional<std::string> new_root;  // set when the root config must import the drop-in
  std::string gvshim_toml;
  std::vector<std::pair<std::string, std::string>> files;  // (source in payload, host path)
  nlohmann::json record;                                   // the existing install record, or null
};

Installer::Installer(InstallerOptions opts, Host& host, Cri& cri, KubeApi* kube)
    : o_(std::move(opts)), host_(host), cri_(cri), kube_(kube) {}

std::string Installer::DropInPath(Schema s) const {
  // 2.x reads conf.d; 1.x gets a file of its own, imported explicitly and so merged after the root's own
  // imports.
  return s == Schema::kV3 ? absl::StrCat(Dir(o_.containerd_config), "/conf.d/gvshim-gvisor.toml")
                          : absl::StrCat(Dir(o_.containerd_config), "/gvshim/cri-gvisor.toml");
}

absl::StatusOr<CommandResult> Installer::HostRun(const std::vector<std::string>& argv,
                                                 const std::string& what) {
  auto r = host_.Run(argv, o_.command_timeout);
  if (!r.ok()) return Annotate(r.status(), what);
  if (r->exit_code != 0)
    return absl::FailedPreconditionError(absl::StrCat(what, ": ", DescribeFailure(argv, *r)));
  return r;
}

absl::StatusOr<std::string> Installer::ConfigDump(const std::string& what) {
  ASSIGN_OR_RETURN(auto r,
                   HostRun({o_.containerd_binary, "--config", o_.containerd_config, "config", "dump"}, what));
  return r.out;
}

absl::StatusOr<Installer::Plan> Installer::MakePlan() {
  Plan p;
  auto root_text = ReadFile(H(o_.containerd_config));
  if (!root_text.ok() && !absl::IsNotFound(root_text.status())) return root_text.status();
  p.root_text = root_text.ok() ? *root_text : "";
  ASSIGN_OR_RETURN(p.root, ParseRootConfig(p.root_text, root_text.ok(), o_.containerd_config));
  ASSIGN_OR_RETURN(auto ver, HostRun({o_.containerd_binary, "--version"}, "containerd version"));
  ASSIGN_OR_RETURN(int major, ParseContainerdMajor(ver.out));
  ASSIGN_OR_RETURN(p.schema, ChooseSchema(major, p.root));

  p.entry.handler = o_.handler;
  p.entry.runtime_path = absl::StrCat(o_.install_dir, "/containerd-shim-gvisor-v1");
  p.entry.config_path = o_.gvshim_config;
  ASSIGN_OR_RETURN(p.before_dump, ConfigDump("containerd config dump (current config)"));
  ASSIGN_OR_RETURN(p.dropin_text, BuildDropIn(p.schema, p.before_dump, p.entry));
  p.dropin_path = DropInPath(p.schema);
  auto old = ReadFile(H(p.dropin_path));
  if (old.ok()) p.old_dropin = *old;
  if (!ImportsCover(p.root, Dir(o_.containerd_config), p.dropin_path)) {
    ASSIGN_OR_RETURN(std::string t, AddImport(p.root_text, p.root, p.schema, p.dropin_path));
    p.new_root = t;
  }

  std::string json = "{}";
  if (!o_.node_config_json.empty()) {
    ASSIGN_OR_RETURN(json, ReadFile(o_.node_config_json));
  }
  ASSIGN_OR_RETURN(p.gvshim_toml,
                   RenderGvshimToml(json, {absl::StrCat(o_.install_dir, "/runsc"), o_.profiles_dir}));

  for (const char* b : kBinaries) {
    p.files.emplace_back(absl::StrCat(o_.payload_dir, "/", b), absl::StrCat(o_.install_dir, "/", b));
  }
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(absl::StrCat(o_.payload_dir, "/seccomp-profiles"), ec)) {
    if (e.path().extension() == ".json") {
      p.files.emplace_back(e.path().string(),
                           absl::StrCat(o_.profiles_dir, "/", e.path().filename().string()));
    }
  }
  if (ec) return absl::FailedPreconditionError(absl::StrCat("payload ", o_.payload_dir, ": ", ec.message()));
  // Execute's in-sandbox helpers: the shim looks for them in gvshim-helpers/ next to its own binary.
  // (gvshim-wrap too: the terminal pty and the execs' seccomp filter, mounted into every container.)
  for (const char* h : {"gvshim-launch", "_gvshim_isolate.abi3.so", "gvshim-wrap"}) {
    p.files.emplace_back(absl::StrCat(o_.payload_dir, "/gvshim-helpers/", h),
                         absl::StrCat(o_.install_dir, "/gvshim-helpers/", h));
  }
  auto rec = ReadFile(H(absl::StrCat(o_.state_dir, "/install.json")));
  if (rec.ok()) p.record = nlohmann::json::parse(*rec, nullptr, false);
  return p;
}

absl::Status Installer::Restart() {
  std::vector<std::string> cmd = o_.restart_command;
  if (cmd.empty()) cmd = {"systemctl", "restart", "containerd"};
  return HostRun(cmd, "restart containerd").status();
}

absl::StatusOr<bool> Installer::HasLabel() {
  if (kube_ == nullptr || o_.node_name.empty()) return false;
  ASSIGN_OR_RETURN(auto node, kube_->Get(NodePath(o_.node_name)));
  if (!node) return absl::NotFoundError(absl::StrCat("node ", o_.node_name, " does not exist"));
  const auto& labels = (*node)["metadata"].value("labels", nlohmann::json::object());
  return labels.contains(o_.label_key) && labels[o_.label_key] == o_.label_value;
}

absl::StatusOr<PodResult> Installer::RunCanary() {
  PodRun pod;
  pod.handler = o_.handler;
  pod.image = o_.canary_image;
  pod.command = o_.canary_command;
  pod.host_network = o_.canary_host_network;
  pod.timeout = o_.canary_timeout;
  pod.log_dir = absl::StrCat(o_.state_dir, "/canary-logs");
  pod.log_dir_local = H(pod.log_dir);
  std::error_code ec;
  fs::remove_all(pod.log_dir_local, ec);
  fs::create_directories(pod.log_dir_local, ec);
  auto r = cri_.RunPod(pod);
  fs::remove_all(pod.log_dir_local, ec);
  return r;
}

absl::StatusOr<InstallReport> Installer::Install() {
  if (o_.canary_image.empty()) return absl::InvalidArgumentError("install: no canary image (--canary-image)");
  ASSIGN_OR_RETURN(Plan p, MakePlan());
  InstallReport rep;
  rep.schema = SchemaName(p.schema);
  const bool first_install = p.record.is_discarded() || p.record.is_null();
  rep.config_changed = p.new_root.has_value() || p.old_dropin != p.dropin_text;

  // 1. Files: binaries, profiles, gvshim.toml. New files change nothing containerd runs until the drop-in
  // exists.
  nlohmann::json files = nlohmann::json::object();
  std::vector<std::string> created;
  // Directories this install creates (kept from the first install's record), removed again by uninstall.
  nlohmann::json created_dirs =
      first_install ? nlohmann::json::array() : p.record.value("created_dirs", nlohmann::json::array());
  for (const std::string& d :
       {absl::StrCat(o_.install_dir, "/gvshim-helpers"), o_.install_dir, o_.profiles_dir, o_.state_dir,
        Dir(p.dropin_path), Dir(o_.gvshim_config), o_.shim_link_dir}) {
    for (fs::path x = d; x.has_relative_path() && !fs::exists(H(x.string())); x = x.parent_path()) {
      if (std::find(created_dirs.begin(), created_dirs.end(), x.string()) == created_dirs.end()) {
        created_dirs.push_back(x.string());
      }
    }
  }
  auto remove_dirs = [&](const nlohmann::json& dirs) {
    std::vector<std::string> v = dirs.get<std::vector<std::string>>();
    std::sort(v.begin(), v.end(), [](const auto& x, const auto& y) { return x.size() > y.size(); });
    std::error_code ec;
    for (const auto& d : v) fs::remove(H(d), ec);  // only empty ones go
  };
  auto undo_files = [&] {
    if (!first_install) return;  // an upgrade keeps the new binaries (the old config still points at them)
    for (const auto& f : created) (void)RemoveFile(H(f));
    (void)RemoveFile(H(absl::StrCat(o_.state_dir, "/config.toml.orig")));
    remove_dirs(created_dirs);
  };
  for (const auto& [src, dst] : p.files) {
    bool existed = fs::exists(H(dst));
    auto ch = InstallFile(src, H(dst), dst.rfind(o_.install_dir, 0) == 0 ? 0755 : 0644);
    if (!ch.ok()) {
      undo_files();
      return Annotate(ch.status(), "install files (nothing else changed)");
    }
    if (*ch == Change::kWritten) rep.written.push_back(dst);
    if (!existed) created.push_back(dst);
    ASSIGN_OR_RETURN(files[dst], Sha256File(H(dst)));
  }
  {
    bool existed = fs::exists(H(o_.gvshim_config));
    auto ch = InstallContent(H(o_.gvshim_config), p.gvshim_toml, 0644);
    if (!ch.ok()) {
      undo_files();
      return Annotate(ch.status(), "write gvshim.toml (nothing else changed)");
    }
    if (*ch == Change::kWritten) rep.written.push_back(o_.gvshim_config);
    if (!existed) created.push_back(o_.gvshim_config);
    files[o_.gvshim_config] = Sha256(p.gvshim_toml);
  }

  // The shim by name on containerd's PATH: a symlink to the installed one. Someone else's file there is
  // refused.
  nlohmann::json links = nlohmann::json::array();
  if (!o_.shim_link_dir.empty()) {
    const std::string link = absl::StrCat(o_.shim_link_dir, "/containerd-shim-gvisor-v1");
    const std::string target = absl::StrCat(o_.install_dir, "/containerd-shim-gvisor-v1");
    std::error_code ec;
    fs::path have = fs::read_symlink(H(link), ec);
    if (ec && fs::exists(fs::symlink_status(H(link)))) {
      undo_files();
      return absl::FailedPreconditionError(absl::StrCat(link,
                                                        " exists and is not gvshim's symlink; remove it (or "
                                                        "set --shim-link-dir) and re-run; nothing changed"));
    }
    if (ec || have != target) {
      if (!ec) fs::remove(H(link), ec);  // our older link pointing elsewhere
      std::error_code mk;
      fs::create_directories(H(o_.shim_link_dir), mk);
      fs::create_symlink(target, H(link), mk);
      if (mk) {
        undo_files();
        return absl::InternalError(absl::StrCat("symlink ", link, " -> ", target, ": ", mk.message()));
      }
      rep.written.push_back(link);
      if (first_install) created.push_back(link);
    }
    links.push_back(link);
  }

  // 2. Config: the root's original bytes are kept once (the first install's), then drop-in and root written.
  const std::string backup = absl::StrCat(o_.state_dir, "/config.toml.orig");
  nlohmann::json root_rec = first_install ? nlohmann::json{{"action", "none"}}
                                          : p.record.value("root", nlohmann::json{{"action", "none"}});
  auto restore_config = [&]() -> absl::Status {
    absl::Status st;
    if (p.old_dropin) {
      st.Update(InstallContent(H(p.dropin_path), *p.old_dropin, 0644).status());
    } else {
      st.Update(RemoveFile(H(p.dropin_path)).status());
    }
    if (p.new_root) {
      if (p.root.exists) {
        st.Update(InstallContent(H(o_.containerd_config), p.root_text, 0644).status());
      } else {
        st.Update(RemoveFile(H(o_.containerd_config)).status());
      }
    }
    return st;
  };
  auto fail = [&](const absl::Status& why, const std::string& state) -> absl::Status {
    absl::Status back = restore_config();
    undo_files();
    std::string msg = absl::StrCat(why.message(), "; ",
                                   back.ok() ? "original containerd config restored"
                                             : absl::StrCat("RESTORING THE CONFIG FAILED: ", back.message()),
                                   "; ", state);
    return absl::Status(why.code(), msg);
  };
  if (rep.config_changed) {
    if (p.new_root) {
      if (p.root.exists) {
        if (root_rec.value("action", "none") == "none") {
          RETURN_IF_ERROR(InstallContent(H(backup), p.root_text, 0600).status());
          root_rec = {{"action", "modified"}, {"backup", backup}};
        }
      } else {
        root_rec = {{"action", "created"}};
      }
      root_rec["written_sha"] = Sha256(*p.new_root);
    }
    absl::Status w = InstallContent(H(p.dropin_path), p.dropin_text, 0644).status();
    if (w.ok() && p.new_root) w = InstallContent(H(o_.containerd_config), *p.new_root, 0644).status();
    if (!w.ok()) return fail(w, "containerd not restarted, node not labelled");
    // 3. containerd itself must accept the merged config, and it must differ only by our runtime.
    auto after = ConfigDump("validate the new config (containerd config dump)");
    absl::Status v =
        after.ok() ? CheckOnlyRuntimeAdded(p.schema, p.before_dump, *after, p.entry) : after.status();
    if (!v.ok()) return fail(v, "containerd not restarted, node not labelled");
    // 4. Restart (never SIGHUP) and wait for the CRI to answer.
    absl::Status r = Restart();
    if (r.ok()) r = cri_.WaitReady(o_.command_timeout);
    if (!r.ok()) return fail(r, "containerd may be down: check it on the node; node not labelled");
    rep.restarted = true;
  }

  // 5. Canary (when something changed or the node is not labelled yet), then the label.
  ASSIGN_OR_RETURN(bool labelled, HasLabel());
  // Verified before: the node carries the label, or (outside a cluster) a previous install completed.
  const bool verified = labelled || ((kube_ == nullptr || o_.node_name.empty()) && !first_install);
  if (rep.config_changed || !verified || !rep.written.empty()) {
    auto c = RunCanary();
    absl::Status cs = c.status();
    if (c.ok() && c->exit_code != 0) {
      cs = absl::FailedPreconditionError(absl::StrCat("canary pod under handler \"", o_.handler, "\" exited ",
                                                      c->exit_code, " (", c->reason, "): ", c->output));
    }
    if (!cs.ok()) {
      return fail(cs, rep.restarted
                          ? "containerd keeps the handler until its next restart (not restarted again); "
                            "node not labelled, so no pod is scheduled with it"
                          : "node not labelled");
    }
    rep.canary_ran = true;
    rep.canary_output = c->output;
  }
  if (!labelled && kube_ != nullptr && !o_.node_name.empty()) {
    absl::Status l = SetNodeLabel(*kube_, o_.node_name, o_.label_key, o_.label_value);
    if (!l.ok()) return fail(l, "node not labelled");
    rep.labelled = true;
  }

  // 6. The record uninstall and status work from.
  nlohmann::json rec = {{"schema", SchemaName(p.schema)},
                        {"dropin", p.dropin_path},
                        {"files", files},
                        {"created_dirs", created_dirs},
                        {"links", links},
                        {"root", root_rec},
                        {"handler", o_.handler},
                        {"containerd_config", o_.containerd_config}};
  RETURN_IF_ERROR(
      InstallContent(H(absl::StrCat(o_.state_dir, "/install.json")), rec.dump(2) + "\n", 0644).status());
  return rep;
}

absl::Status Installer::Uninstall() {
  // 1. No new pods: the label goes first.
  if (kube_ != nullptr && !o_.node_name.empty()) {
    RETURN_IF_ERROR(SetNodeLabel(*kube_, o_.node_name, o_.label_key, std::nullopt));
  }
  const std::string rec_path = absl::StrCat(o_.state_dir, "/install.json");
  auto rec_text = ReadFile(H(rec_path));
  if (absl::IsNotFound(rec_text.status())) return absl::OkStatus();  // nothing of ours on this node
  if (!rec_text.ok()) return rec_text.status();
  nlohmann::json rec = nlohmann::json::parse(*rec_text, nullptr, false);
  if (rec.is_discarded())
    return absl::DataLossError(absl::StrCat(rec_path, ": not JSON; remove gvshim by hand"));

  // 2. Config back: drop-in removed, root restored (bytes when untouched since, else only our import
  // removed).
  const std::string dropin = rec.value("dropin", "");
  auto old_dropin = ReadFile(H(dropin));
  auto root_now = ReadFile(H(o_.containerd_config));
  const nlohmann::json root = rec.value("root", nlohmann::json::object());
  const std::string action = root.value("action", "none");
  std::optional<std::string> new_root;  // nullopt: leave the root as it is; "" with created: delete it
  bool delete_root = false;
  if (action != "none" && root_now.ok()) {
    if (Sha256(*root_now) == root.value("written_sha", "")) {
      if (action == "created") {
        delete_root = true;
      } else {
        ASSIGN_OR_RETURN(new_root, ReadFile(H(root.value("backup", ""))));
      }
    } else {
      log::Warnf("node uninstall: %s changed since install; removing only our import from it",
                 o_.containerd_config.c_str());
      ASSIGN_OR_RETURN(new_root, RemoveImport(*root_now, dropin));
    }
  }
  RETURN_IF_ERROR(RemoveFile(H(dropin)).status());
  if (delete_root) RETURN_IF_ERROR(RemoveFile(H(o_.containerd_config)).status());
  if (new_root) RETURN_IF_ERROR(InstallContent(H(o_.containerd_config), *new_root, 0644).status());
  auto check = ConfigDump("validate the restored config (containerd config dump)");
  if (!check.ok()) {
    // Put our files back rather than restart containerd into a config it refuses.
    if (old_dropin.ok()) (void)InstallContent(H(dropin), *old_dropin, 0644);
    if (root_now.ok()) (void)InstallContent(H(o_.containerd_config), *root_now, 0644);
    return Annotate(check.status(), "uninstall stopped, gvshim's config put back, containerd not restarted");
  }

  // 3. Files, then the record, then containerd restarted last.
  const nlohmann::json files = rec.value("files", nlohmann::json::object());
  for (auto& [path, sha] : files.items()) {
    RETURN_IF_ERROR(RemoveFile(H(path)).status());
  }
  for (const auto& link : rec.value("links", std::vector<std::string>{})) {
    std::error_code ec;
    if (fs::read_symlink(H(link), ec).string() ==
        absl::StrCat(o_.install_dir, "/containerd-shim-gvisor-v1")) {
      RETURN_IF_ERROR(RemoveFile(H(link)).status());
    }
  }
  (void)RemoveFile(H(root.value("backup", absl::StrCat(o_.state_dir, "/config.toml.orig"))));
  RETURN_IF_ERROR(RemoveFile(H(rec_path)).status());
  std::vector<std::string> dirs = rec.value("created_dirs", std::vector<std::string>{});
  std::sort(dirs.begin(), dirs.end(), [](const auto& x, const auto& y) { return x.size() > y.size(); });
  std::error_code ec;
  for (const auto& d : dirs) fs::remove(H(d), ec);  // deepest first; only empty ones go
  if (old_dropin.ok()) RETURN_IF_ERROR(Restart());
  return absl::OkStatus();
}

absl::StatusOr<std::string> Installer::Status() {
  const std::string rec_path = absl::StrCat(o_.state_dir, "/install.json");
  auto rec_text = ReadFile(H(rec_path));
  if (absl::IsNotFound(rec_text.status())) return absl::NotFoundError("gvshim is not installed on this node");
  if (!rec_text.ok()) return rec_text.status();
  nlohmann::json rec = nlohmann::json::parse(*rec_text, nullptr, false);
  if (rec.is_discarded()) return absl::DataLossError(absl::StrCat(rec_path, ": not JSON"));
  std::vector<std::string> lines, problems;
  lines.push_back(absl::StrCat("layout: ", rec.value("schema", "?")));
  const nlohmann::json files = rec.value("files", nlohmann::json::object());
  for (auto& [path, sha] : files.items()) {
    auto have = Sha256File(H(path));
    bool ok = have.ok() && *have == sha.get<std::string>();
    lines.push_back(absl::StrCat(ok ? "ok       " : "CHANGED  ", path));
    if (!ok)
      problems.push_back(absl::StrCat(path, have.ok() ? " differs from what was installed" : " is missing"));
  }
  const std::string dropin = rec.value("dropin", "");
  bool dropin_ok = fs::exists(H(dropin));
  lines.push_back(absl::StrCat(dropin_ok ? "ok       " : "MISSING  ", dropin));
  if (!dropin_ok) problems.push_back(absl::StrCat(dropin, " is missing"));
  auto dump = ConfigDump("containerd config dump");
  if (dump.ok()) {
    auto schema = rec.value("schema", "").find("2.x") != std::string::npos ? Schema::kV3 : Schema::kV2;
    auto type = RuntimeTypeInDump(schema, *dump, o_.handler);
    bool reg = type.ok() && *type == kGvisorRuntimeType;
    lines.push_back(
        absl::StrCat(reg ? "ok       " : "MISSING  ", "runtime handler ", o_.handler, " in the config"));
    if (!reg) problems.push_back(absl::StrCat("containerd's config does not register ", o_.handler));
  } else {
    problems.push_back(std::string(dump.status().message()));
  }
  auto labelled = HasLabel();
  if (kube_ != nullptr && !o_.node_name.empty()) {
    lines.push_back(absl::StrCat(labelled.ok() && *labelled ? "ok       " : "MISSING  ", "label ",
                                 o_.label_key, "=", o_.label_value, " on node ", o_.node_name));
  }
  std::string text = absl::StrJoin(lines, "\n");
  if (!problems.empty())
    return absl::FailedPreconditionError(absl::StrCat(text, "\nproblems: ", absl::StrJoin(problems, "; ")));
  return text;
}

}  // namespace gvshim::node
