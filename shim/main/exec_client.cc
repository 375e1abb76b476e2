#include "shim/main/exec_client.h"

#include <dirent.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gvshim/execute/v1/execute.grpc.pb.h"
#include "shim/cli/cli.h"
#include "shim/sys/file.h"

namespace gvshim::cli {
namespace {

namespace ev1 = gvshim::execute::v1;
constexpr char kDefaultDir[] = "/run/gvshim/execute";

std::string StatusName(ev1::Status s) {
  switch (s) {
    case ev1::STATUS_SUCCESS:
      return "success";
    case ev1::STATUS_PROGRAM_ERROR:
      return "program_error";
    case ev1::STATUS_TIMEOUT:
      return "timeout";
    case ev1::STATUS_MEMORY_LIMIT:
      return "memory_limit";
    case ev1::STATUS_OUTPUT_LIMIT:
      return "output_limit";
    case ev1::STATUS_REJECTED:
      return "rejected";
    case ev1::STATUS_INTERNAL_ERROR:
      return "internal_error";
    default:
      return "unspecified";
  }
}

nlohmann::json ToJson(const ev1::ExecuteResponse& r) {
  nlohmann::json j = {{"status", StatusName(r.status())},
                      {"stdout", r.stdout()},
                      {"stderr", r.stderr()},
                      {"exit_code", r.exit_code()},
                      {"signal", r.signal()},
                      {"duration_ms", r.duration_ms()},
                      {"stdout_truncated", r.stdout_truncated()},
                      {"stderr_truncated", r.stderr_truncated()}};
  if (!r.result_json().empty()) {
    auto parsed = nlohmann::json::parse(r.result_json(), nullptr, false);
    j["result"] = parsed.is_discarded() ? nlohmann::json(r.result_json()) : parsed;
  }
  if (r.peak_memory_bytes() != 0) j["peak_memory_bytes"] = r.peak_memory_bytes();
  if (!r.error().empty()) j["error"] = r.error();
  if (r.artifacts_size() > 0) {
    j["artifacts"] = nlohmann::json::array();
    for (const auto& a : r.artifacts()) j["artifacts"].push_back({{"name", a.name()}, {"size", a.size()}});
  }
  return j;
}

int ExitCodeFor(const ev1::ExecuteResponse& r) {
  switch (r.status()) {
    case ev1::STATUS_SUCCESS:
    case ev1::STATUS_PROGRAM_ERROR:
      return r.exit_code() != 0 ? r.exit_code() : (r.status() == ev1::STATUS_SUCCESS ? 0 : 1);
    case ev1::STATUS_TIMEOUT:
      return 124;
    case ev1::STATUS_MEMORY_LIMIT:
    case ev1::STATUS_OUTPUT_LIMIT:
      return r.exit_code() != 0 ? r.exit_code() : 1;
    default:
      return 125;
  }
}

}  // namespace

absl::StatusOr<std::vector<SandboxRecord>> ReadRecords(const std::string& dir) {
  std::vector<SandboxRecord> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("no Execute service found: cannot read ", dir, ": ", std::strerror(errno)));
  }
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.size() < 6 || name.substr(name.size() - 5) != ".json") continue;
    std::string path = dir + "/" + name;
    auto text = sys::ReadFileToString(path);
    if (!text.ok()) continue;  // removed since readdir
    auto j = nlohmann::json::parse(*text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;  // not ours
    SandboxRecord r;
    r.file = path;
    r.ns = j.value("namespace", "");
    r.sandbox_id = j.value("sandbox_id", "");
    r.pod_namespace = j.value("pod_namespace", "");
    r.pod_name = j.value("pod_name", "");
    r.socket = j.value("socket", "");
    if (auto c = j.find("containers"); c != j.end() && c->is_array()) {
      for (const auto& el : *c) {
        if (el.is_string()) r.containers.push_back(el.get<std::string>());
        if (el.is_object() && el.contains("id") && el["id"].is_string())
          r.containers.push_back(el["id"].get<std::string>());
      }
    }
    out.push_back(std::move(r));
  }
  ::closedir(d);
  return out;
}

absl::StatusOr<SandboxRecord> FindRecord(const std::vector<SandboxRecord>& records, const std::string& id,
                                         const std::string& pod, const std::string& ns) {
  std::vector<const SandboxRecord*> hits;
  std::string pod_ns, pod_name;
  if (!pod.empty()) {
    auto slash = pod.find('/');
    if (slash == std::string::npos)
      return absl::InvalidArgumentError("--pod wants NAMESPACE/NAME, got " + pod);
    pod_ns = pod.substr(0, slash);
    pod_name = pod.substr(slash + 1);
  }
  for (const auto& r : records) {
    if (!ns.empty() && r.ns != ns) continue;
    bool match = false;
    if (!id.empty()) {
      match = r.sandbox_id == id;
      for (const auto& c : r.containers) match = match || c == id;
    } else {
      match = r.pod_namespace == pod_ns && r.pod_name == pod_name;
    }
    if (match) hits.push_back(&r);
  }
  std::string what = id.empty() ? "pod " + pod : "id " + id;
  if (hits.empty()) return absl::NotFoundError(absl::StrCat("no Execute service for ", what));
  if (hits.size() > 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " matches ", hits.size(), " sandboxes (in several containerd namespaces?): use --namespace"));
  }
  return *hits[0];
}

absl::StatusOr<std::string> ArgsJson(const std::vector<std::string>& pairs, const std::string& base_json) {
  nlohmann::json obj = nlohmann::json::object();
  if (!base_json.empty()) {
    obj = nlohmann::json::parse(base_json, nullptr, false);
    if (obj.is_discarded()) return absl::InvalidArgumentError("--args-json is not valid JSON");
    if (!pairs.empty() && !obj.is_object()) {
      return absl::InvalidArgumentError("--arg needs --args-json to be an object");
    }
  }
  for (const std::string& p : pairs) {
    auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0)
      return absl::InvalidArgumentError("--arg wants KEY=VALUE, got " + p);
    std::string value = p.substr(eq + 1);
    auto parsed = nlohmann::json::parse(value, nullptr, false);
    obj[p.substr(0, eq)] = parsed.is_discarded() ? nlohmann::json(value) : parsed;
  }
  return obj.dump();
}

namespace {

const char* CodeName(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    default:
      return "error";
  }
}

// --dir, else $GVSHIM_EXECUTE_DIR, else the shim's default.
std::string DiscoveryDir(const std::string& flag) {
  if (!flag.empty()) return flag;
  const char* env = std::getenv("GVSHIM_EXECUTE_DIR");
  return env != nullptr && *env != '\0' ? env : kDefaultDir;
}

// --runtimes: the pod's ListRuntimes answer (languages, where they run, what each can isolate) as JSON.
// --health: its Health answer ("SERVING <message>"); unlike ListRuntimes it starts nothing.
int InfoMain(const std::string& id, const std::string& pod, const std::string& ns,
             const std::string& flag_dir, bool health) {
  const std::string dir = DiscoveryDir(flag_dir);
  auto records = ReadRecords(dir);
  if (!records.ok()) {
    std::fprintf(stderr, "gvshim exec: %s\n", std::string(records.status().message()).c_str());
    return 125;
  }
  auto rec = FindRecord(*records, id, pod, ns);
  if (!rec.ok()) {
    std::fprintf(stderr, "gvshim exec: %s (records in %s)\n", std::string(rec.status().message()).c_str(),
                 dir.c_str());
    return 125;
  }
  auto stub =
      ev1::Execute::NewStub(grpc::CreateChannel("unix:" + rec->socket, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(90));
  if (health) {
    ev1::HealthResponse h;
    grpc::Status st = stub->Health(&ctx, ev1::HealthRequest(), &h);
    if (!st.ok()) {
      std::fprintf(stderr, "gvshim exec: Health failed: %s\n", st.error_message().c_str());
      return 125;
    }
    std::printf("%s %s\n", ev1::HealthResponse::ServingStatus_Name(h.status()).c_str(), h.message().c_str());
    return h.status() == ev1::HealthResponse::SERVING ? 0 : 1;
  }
  ev1::ListRuntimesResponse resp;
  grpc::Status st = stub->ListRuntimes(&ctx, ev1::ListRuntimesRequest(), &resp);
  if (!st.ok()) {
    std::fprintf(stderr, "gvshim exec: ListRuntimes failed: %s\n", st.error_message().c_str());
    return 125;
  }
  nlohmann::json out = nlohmann::json::array();
  for (const auto& r : resp.runtimes()) {
    out.push_back({{"language", r.language() == ev1::LANGUAGE_PYTHON ? "python" : "javascript"},
                   {"container", r.container()},
                   {"version", r.version()},
                   {"ready", r.ready()},
                   {"isolation_mode", r.isolation_mode()},
                   {"isolation", std::vector<std::string>(r.isolation().begin(), r.isolation().end())},
                   {"isolation_missing",
                    std::vector<std::string>(r.isolation_missing().begin(), r.isolation_missing().end())},
                   {"error", r.error()}});
  }
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

}  // namespace

CLI::App* AddExecCommand(CLI::App& parent, ExecOptions& o) {
  CLI::App* cmd =
      AddCommand(parent, "exec", "run a snippet in a pod's gVisor sandbox through its Execute service");
  cmd->footer(
      "Forms:\n"
      "  gvshim exec (--pod NS/NAME | --id ID) [OPTIONS] (-c CODE | FILE | -)\n"
      "  gvshim exec (--pod NS/NAME | --id ID) --runtimes | --health\n"
      "Prints the snippet's stdout and stderr (and main()'s JSON result) and exits with the snippet's exit "
      "code\n"
      "(124 on timeout, 125 when it could not run, 2 for a bad command line or request).");
  CLI::Option* id = cmd->add_option("--id", o.id, "a sandbox or container id of the pod");
  CLI::Option* pod = cmd->add_option("--pod", o.pod, "the pod, as NAMESPACE/NAME");
  id->excludes(pod);
  cmd->add_option("-n,--namespace", o.ns, "containerd namespace of the pod (when an id is in several)");
  cmd->add_option("--dir", o.dir,
                  "discovery directory (default: $GVSHIM_EXECUTE_DIR, else /run/gvshim/execute)");
  cmd->add_option(
      "-l,--lang", o.lang,
      "python (py) or javascript (js, node); default: javascript for a .js or .mjs FILE, else python");
  CLI::Option* code = cmd->add_option_function<std::string>(
      "-c,--code", [&o](const std::string& v) { o.code = v; }, "the snippet's source");
  CLI::Option* file =
      cmd->add_option("file", o.file, "a file holding the snippet's source; - reads it from stdin")
          ->type_name("FILE");
  code->excludes(file);
  AddRepeated(*cmd, "--arg", o.arg_pairs,
              "an argument of main(); VALUE is taken as JSON when it parses as JSON")
      ->type_name("KEY=VALUE");
  cmd->add_option("--args-json", o.args_json, "main()'s arguments as JSON (an object that --arg adds to)");
  cmd->add_option("--stdin", o.stdin_text, "text given to the snippet on its stdin");
  AddUnsigned(*cmd, "--timeout", o.timeout_ms, "wall-clock limit in milliseconds (0: the service's default)");
  AddUnsigned(*cmd, "--memory", o.memory, "memory limit in bytes (0: the service's default)");
  AddUnsigned(*cmd, "--output-bytes", o.output_bytes,
              "stdout and stderr limit in bytes (0: the service's default)");
  cmd->add_flag("--allow-network", o.allow_network, "let the snippet use the network");
  AddRepeated(*cmd, "--env", o.envs, "an environment variable of the snippet")
      ->type_name("KEY=VALUE")
      ->check(KeyValue());
  cmd->add_option("--container", o.container, "the container of the pod to run in");
  cmd->add_flag("--json", o.json_out, "print the whole result as one JSON object");
  cmd->add_flag("--stream", o.stream, "print the snippet's output as it comes (ExecuteStream)");
  cmd->add_flag("--runtimes", o.runtimes, "print the pod's runtimes and their isolation (JSON)");
  cmd->add_flag("--health", o.health, "print the pod's Execute health (starts nothing)");
  cmd->callback([&o] {
    if (o.id.empty() && o.pod.empty()) throw CLI::RequiredError("--pod NAMESPACE/NAME or --id ID");
    if (!o.runtimes && !o.health && !o.code.has_value() && o.file.empty()) {
      throw CLI::RequiredError("-c CODE or a FILE (- for stdin)");
    }
  });
  return cmd;
}

int RunExec(ExecOptions o) {
  if (o.runtimes || o.health) return InfoMain(o.id, o.pod, o.ns, o.dir, o.health);
  const std::string& file = o.file;
  std::string lang = o.lang;
  std::string code = o.code.value_or("");
  if (!o.code.has_value()) {
    std::stringstream ss;
    if (file == "-") {
      ss << std::cin.rdbuf();
    } else {
      std::ifstream in(file);
      if (!in) {
        std::fprintf(stderr, "gvshim exec: cannot read %s: %s\n", file.c_str(), std::strerror(errno));
        return 2;
      }
      ss << in.rdbuf();
    }
    code = ss.str();
    if (lang.empty() && file.size() > 3 &&
        (file.substr(file.size() - 3) == ".js" || file.substr(file.size() - 4) == ".mjs")) {
      lang = "javascript";
    }
  }
  if (lang.empty()) lang = "python";
  ev1::ExecuteRequest req;
  if (lang == "python" || lang == "py") {
    req.set_language(ev1::LANGUAGE_PYTHON);
  } else if (lang == "javascript" || lang == "js" || lang == "node") {
    req.set_language(ev1::LANGUAGE_JAVASCRIPT);
  } else {
    std::fprintf(stderr, "gvshim exec: unknown language %s (python or javascript)\n", lang.c_str());
    return 2;
  }
  auto aj = ArgsJson(o.arg_pairs, o.args_json);
  if (!aj.ok()) {
    std::fprintf(stderr, "gvshim exec: %s\n", std::string(aj.status().message()).c_str());
    return 2;
  }
  req.set_code(code);
  if (!o.arg_pairs.empty() || !o.args_json.empty()) req.set_arguments_json(*aj);
  req.set_stdin(o.stdin_text);
  req.set_allow_network(o.allow_network);
  for (const std::string& e : o.envs)
    (*req.mutable_env())[e.substr(0, e.find('='))] = e.substr(e.find('=') + 1);
  req.set_target_container(o.container);
  if (o.timeout_ms) req.mutable_limits()->set_wall_timeout_ms(o.timeout_ms);
  if (o.memory) req.mutable_limits()->set_memory_bytes(o.memory);
  if (o.output_bytes) req.mutable_limits()->set_output_bytes(o.output_bytes);

  const std::string dir = DiscoveryDir(o.dir);
  auto records = ReadRecords(dir);
  if (!records.ok()) {
    std::fprintf(stderr, "gvshim exec: %s\n", std::string(records.status().message()).c_str());
    return 125;
  }
  auto rec = FindRecord(*records, o.id, o.pod, o.ns);
  if (!rec.ok()) {
    std::fprintf(stderr, "gvshim exec: %s (records in %s)\n", std::string(rec.status().message()).c_str(),
                 dir.c_str());
    return 125;
  }
  auto channel = grpc::CreateChannel("unix:" + rec->socket, grpc::InsecureChannelCredentials());
  auto stub = ev1::Execute::NewStub(channel);
  grpc::ClientContext ctx;
  uint64_t deadline_ms =
      (o.timeout_ms ? o.timeout_ms : 60000) + 30000;  // the snippet's limit plus queueing slack
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(deadline_ms));
  ev1::ExecuteResponse resp;
  grpc::Status st;
  if (o.stream) {
    auto reader = stub->ExecuteStream(&ctx, req);
    ev1::ExecuteEvent ev;
    while (reader->Read(&ev)) {
      if (ev.has_stdout() && !o.json_out) {
        std::fwrite(ev.stdout().data(), 1, ev.stdout().size(), stdout);
        std::fflush(stdout);
      } else if (ev.has_stderr() && !o.json_out) {
        std::fwrite(ev.stderr().data(), 1, ev.stderr().size(), stderr);
      } else if (ev.has_result()) {
        resp = ev.result();
      }
    }
    st = reader->Finish();
  } else {
    st = stub->Execute(&ctx, req, &resp);
  }
  if (!st.ok()) {
    std::fprintf(stderr, "gvshim exec: %s (%s): %s\n",
                 st.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? "invalid request" : "Execute failed",
                 CodeName(st.error_code()), st.error_message().c_str());
    return 125;
  }
  if (o.json_out) {
    std::printf("%s\n", ToJson(resp).dump().c_str());
    return ExitCodeFor(resp);
  }
  if (!o.stream) {
    std::fwrite(resp.stdout().data(), 1, resp.stdout().size(), stdout);
    std::fwrite(resp.stderr().data(), 1, resp.stderr().size(), stderr);
  }
  if (!resp.result_json().empty()) std::printf("%s\n", resp.result_json().c_str());
  if (resp.status() != ev1::STATUS_SUCCESS) {
    std::fprintf(stderr, "gvshim exec: %s%s%s\n", StatusName(resp.status()).c_str(),
                 resp.error().empty() ? "" : ": ", resp.error().c_str());
  }
  return ExitCodeFor(resp);
}

}  // namespace gvshim::cli
