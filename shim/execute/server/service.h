// The gvshim.execute.v1.Execute gRPC service of one sandbox (sync API). Requests are validated here, wait
// for a slot in the sandbox's Scheduler, and run on the Runner the Backend picks; the runner's result frame
// is mapped onto ExecuteResponse. Handlers poll ServerContext::IsCancelled while they wait, and a cancelled
// call cancels its snippet in the runner.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gvshim/execute/v1/execute.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "shim/execute/common/config.h"
#include "shim/execute/server/runner.h"
#include "shim/execute/server/scheduler.h"

namespace gvshim::execute {

namespace pb = ::gvshim::execute::v1;

struct RuntimeEntry {
  Language language = Language::kPython;
  std::string container;
  RunnerStatus status;  // of its runner (default: not started)
};

// What the service needs from its sandbox (the Manager implements it).
class Backend {
 public:
  virtual ~Backend() = default;
  // The runner for `lang`: in target_container when not empty, else in the first started container of the
  // pod whose rootfs has the interpreter. NOT_FOUND for an unknown target; FAILED_PRECONDITION when no (or
  // the target) container has the interpreter; UNAVAILABLE when the sandbox is going away.
  virtual absl::StatusOr<std::shared_ptr<Runner>> RunnerFor(Language lang,
                                                            const std::string& target_container) = 0;
  // The default runtime of each language that some container has, plus every runner that exists.
  virtual std::vector<RuntimeEntry> Runtimes() = 0;
};

class Service final : public pb::Execute::Service {
 public:
  // ListRuntimes starts runners that are not running yet and waits this long for them to report.
  static constexpr absl::Duration kListRuntimesStartWait = absl::Seconds(20);

  Service(ExecuteConfig cfg, Backend* backend);

  grpc::Status Execute(grpc::ServerContext* ctx, const pb::ExecuteRequest* req,
                       pb::ExecuteResponse* resp) override;
  grpc::Status ExecuteStream(grpc::ServerContext* ctx, const pb::ExecuteRequest* req,
                             grpc::ServerWriter<pb::ExecuteEvent>* writer) override;
  grpc::Status ListRuntimes(grpc::ServerContext* ctx, const pb::ListRuntimesRequest* req,
                            pb::ListRuntimesResponse* resp) override;
  // SERVING when a started runner answers a ping, or when none is started yet but some language is
  // available and not failing; NOT_SERVING otherwise. `message` describes each runtime.
  grpc::Status Health(grpc::ServerContext* ctx, const pb::HealthRequest* req,
                      pb::HealthResponse* resp) override;

  // New and queued requests fail with UNAVAILABLE from now on.
  void Close() { scheduler_.Close(); }
  Scheduler& scheduler() { return scheduler_; }

 private:
  // Runs one request; on_output (may be null) receives streamed chunks.
  grpc::Status Run(grpc::ServerContext* ctx, const pb::ExecuteRequest& req,
                   const std::function<void(bool is_stderr, const std::string& data)>& on_output,
                   pb::ExecuteResponse* resp);

  const ExecuteConfig cfg_;
  Backend* const backend_;
  Scheduler scheduler_;
};

// --- Pure helpers (exposed for tests) ---
// INVALID_ARGUMENT naming the field for a request the runner must not see.
absl::Status ValidateRequest(const pb::ExecuteRequest& req, const ExecuteConfig& cfg);
// The exec frame (without type/id) for a validated request: limits resolved against the config.
nlohmann::json BuildExecFrame(const pb::ExecuteRequest& req, const ExecuteConfig& cfg);
// Maps a runner `result` frame onto the response; an error describes what was malformed.
absl::Status ResultToResponse(const nlohmann::json& result, pb::ExecuteResponse* resp);
grpc::Status ToGrpcStatus(const absl::Status& st);

}  // namespace gvshim::execute
