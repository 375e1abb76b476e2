// What the shim tells a pod's Execute server process (`gvshim execute-server`) over the server's stdin: one
// JSON object per line.
//   {"op":"sandbox","ns":NS,"sandbox_id":ID,"shim_pid":N,"log_level":"info","config":{...}}   always first
//   {"op":"start","container":{...}}   a container of the pod started (also replayed after a respawn)
//   {"op":"delete","id":ID}            a container of the pod was deleted
// End of input means the shim is done with the pod (or died): the server stops its runners, removes its
// socket and record, and exits.
// The server answers on its stdout, one JSON object per line:
//   {"op":"warm","id":ID}   the runners of container ID are ready (eager start) or ID needs none; the shim
//   holds
//                           an eager container's Start until then (bounded)
#pragma once

#include <sys/types.h>

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "shim/execute/common/config.h"
#include "shim/runsc/runsc.h"

namespace gvshim::execute {

// A container of a pod, as the Execute service needs it.
struct ContainerInfo {
  std::string id;
  std::string ns;
  std::string sandbox_id;  // the pod's sandbox id (CRI), else the container's own id
  std::string bundle;
  std::string rootfs;  // absolute host path of the container's root filesystem
  std::map<std::string, std::string> annotations;
  runsc::GlobalOptions runsc;  // how runsc is invoked for this container
  // The container's execute container (helpers.h, ExecContainerId), where its runners run; empty when there
  // is none, with the reason in exec_error.
  std::string exec_container;
  std::string exec_error;
};

struct SandboxHello {
  std::string ns;
  std::string sandbox_id;
  pid_t shim_pid = 0;
  std::string log_level = "info";
  ExecuteConfig config;
};

// {"wall_timeout_ms": N, ...}: also the `limits` of the runners' exec frame.
nlohmann::json ToJson(const Limits& l);
nlohmann::json ToJson(const ExecuteConfig& c);
nlohmann::json ToJson(const ContainerInfo& c);
nlohmann::json ToJson(const SandboxHello& h);

// Each names what is missing or mistyped ("execute wire: container.bundle: ...").
absl::StatusOr<ExecuteConfig> ConfigFromJson(const nlohmann::json& j);
absl::StatusOr<ContainerInfo> ContainerFromJson(const nlohmann::json& j);
absl::StatusOr<SandboxHello> HelloFromJson(const nlohmann::json& j);

}  // namespace gvshim::execute
