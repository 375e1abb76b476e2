#include "shim/node/cri.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cri/runtime/v1/api.grpc.pb.h"
#include "shim/base/status.h"
#include "shim/sys/file.h"

namespace gvshim::node {
namespace {

namespace rt = ::runtime::v1;

absl::Status FromGrpc(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat("CRI ", what, ": ", s.error_message()));
}

std::string RandomHex(int n) {
  std::random_device rd;
  std::string s;
  const char* hex = "0123456789abcdef";
  for (int i = 0; i < n; ++i) s.push_back(hex[rd() % 16]);
  return s;
}

class GrpcCri : public Cri {
 public:
  explicit GrpcCri(const std::string& socket)
      : channel_(grpc::CreateChannel(absl::StrCat("unix:", socket), grpc::InsecureChannelCredentials())),
        runtime_(rt::RuntimeService::NewStub(channel_)),
        images_(rt::ImageService::NewStub(channel_)),
        socket_(socket) {}

  absl::Status WaitReady(absl::Duration timeout) override {
    const absl::Time deadline = absl::Now() + timeout;
    grpc::Status last;
    for (;;) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      rt::VersionRequest req;
      rt::VersionResponse resp;
      last = runtime_->Version(&ctx, req, &resp);
      if (last.ok()) return absl::OkStatus();
      if (absl::Now() >= deadline) break;
      // containerd is restarting: its socket comes back within seconds; ask again shortly.
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return absl::UnavailableError(absl::StrCat("CRI ", socket_, " did not answer Version within ",
                                               absl::FormatDuration(timeout), ": ", last.error_message()));
  }

  absl::StatusOr<PodResult> RunPod(const PodRun& pod) override {
    const absl::Time deadline = absl::Now() + pod.timeout;
    RETURN_IF_ERROR(EnsureImage(pod.image, deadline));

    rt::PodSandboxConfig sc;
    sc.mutable_metadata()->set_name(pod.name);
    sc.mutable_metadata()->set_namespace_(pod.ns);
    sc.mutable_metadata()->set_uid(RandomHex(32));
    sc.mutable_metadata()->set_attempt(0);
    if (!pod.host_network) sc.set_hostname(pod.name);
    sc.set_log_directory(pod.log_dir);
    auto* nso = sc.mutable_linux()->mutable_security_context()->mutable_namespace_options();
    nso->set_network(pod.host_network ? rt::NODE : rt::POD);
    nso->set_pid(rt::CONTAINER);
    nso->set_ipc(rt::POD);

    PodResult result;
    {
      rt::RunPodSandboxRequest req;
      *req.mutable_config() = sc;
      req.set_runtime_handler(pod.handler);
      rt::RunPodSandboxResponse resp;
      grpc::ClientContext ctx;
      SetDeadline(ctx, deadline);
      RETURN_IF_ERROR(FromGrpc(runtime_->RunPodSandbox(&ctx, req, &resp),
                               absl::StrCat("RunPodSandbox (handler ", pod.handler, ")")));
      result.sandbox_id = resp.pod_sandbox_id();
    }
    absl::Status st = RunContainer(pod, sc, deadline, result);
    absl::Status cleanup = RemovePod(result.sandbox_id);
    if (!st.ok()) return st;
    if (!cleanup.ok()) return cleanup;
    return result;
  }

 private:
  static void SetDeadline(grpc::ClientContext& ctx, absl::Time deadline) {
    ctx.set_deadline(absl::ToChronoTime(deadline));
  }

  absl::Status EnsureImage(const std::string& image, absl::Time deadline) {
    rt::ImageStatusRequest req;
    req.mutable_image()->set_image(image);
    rt::ImageStatusResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(ctx, deadline);
    RETURN_IF_ERROR(FromGrpc(images_->ImageStatus(&ctx, req, &resp), absl::StrCat("ImageStatus ", image)));
    if (resp.has_image() && !resp.image().id().empty()) return absl::OkStatus();
    rt::PullImageRequest preq;
    preq.mutable_image()->set_image(image);
    rt::PullImageResponse presp;
    grpc::ClientContext pctx;
    SetDeadline(pctx, deadline);
    return FromGrpc(images_->PullImage(&pctx, preq, &presp), absl::StrCat("PullImage ", image));
  }

  absl::Status RunContainer(const PodRun& pod, const rt::PodSandboxConfig& sc, absl::Time deadline,
                            PodResult& result) {
    {
      rt::CreateContainerRequest req;
      req.set_pod_sandbox_id(result.sandbox_id);
      auto* c = req.mutable_config();
      c->mutable_metadata()->set_name(pod.name);
      c->mutable_image()->set_image(pod.image);
      for (const auto& a : pod.command) c->add_command(a);
      for (const auto& a : pod.args) c->add_args(a);
      c->set_log_path(absl::StrCat(pod.name, ".log"));
      *req.mutable_sandbox_config() = sc;
      rt::CreateContainerResponse resp;
      grpc::ClientContext ctx;
      SetDeadline(ctx, deadline);
      RETURN_IF_ERROR(FromGrpc(runtime_->CreateContainer(&ctx, req, &resp), "CreateContainer"));
      result.container_id = resp.container_id();
    }
    {
      rt::StartContainerRequest req;
      req.set_container_id(result.container_id);
      rt::StartContainerResponse resp;
      grpc::ClientContext ctx;
      SetDeadline(ctx, deadline);
      RETURN_IF_ERROR(FromGrpc(runtime_->StartContainer(&ctx, req, &resp), "StartContainer"));
    }
    // Like a kubelet, poll the container's status until it exited (bounded by the pod's timeout).
    for (;;) {
      rt::ContainerStatusRequest req;
      req.set_container_id(result.container_id);
      rt::ContainerStatusResponse resp;
      grpc::ClientContext ctx;
      SetDeadline(ctx, deadline);
      RETURN_IF_ERROR(FromGrpc(runtime_->ContainerStatus(&ctx, req, &resp), "ContainerStatus"));
      if (resp.status().state() == rt::CONTAINER_EXITED) {
        result.exit_code = resp.status().exit_code();
        result.reason = resp.status().reason();
        if (!pod.log_dir_local.empty()) {
          auto log = sys::ReadFileToString(absl::StrCat(pod.log_dir_local, "/", pod.name, ".log"));
          if (log.ok()) {
            result.output = CriLogText(*log);
          } else {
            result.output = absl::StrCat("(no container log: ", log.status().message(), ")\n");
          }
        }
        return absl::OkStatus();
      }
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError(absl::StrCat("pod ", pod.ns, "/", pod.name, ": container still ",
                                                        rt::ContainerState_Name(resp.status().state()),
                                                        " after ", absl::FormatDuration(pod.timeout)));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  absl::Status RemovePod(const std::string& id) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    {
      rt::StopPodSandboxRequest req;
      req.set_pod_sandbox_id(id);
      rt::StopPodSandboxResponse resp;
      grpc::ClientContext ctx;
      SetDeadline(ctx, deadline);
      RETURN_IF_ERROR(
          FromGrpc(runtime_->StopPodSandbox(&ctx, req, &resp), absl::StrCat("StopPodSandbox ", id)));
    }
    rt::RemovePodSandboxRequest req;
    req.set_pod_sandbox_id(id);
    rt::RemovePodSandboxResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(ctx, deadline);
    return FromGrpc(runtime_->RemovePodSandbox(&ctx, req, &resp), absl::StrCat("RemovePodSandbox ", id));
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<rt::RuntimeService::Stub> runtime_;
  std::unique_ptr<rt::ImageService::Stub> images_;
  std::string socket_;
};

}  // namespace

std::unique_ptr<Cri> NewCriClient(const std::string& socket_path) {
  return std::make_unique<GrpcCri>(socket_path);
}

std::string CriLogText(const std::string& content) {
  std::string out;
  for (absl::string_view line : absl::StrSplit(content, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(' ', 3));
    if (f.size() < 4) continue;
    out.append(f[3].data(), f[3].size());
    if (f[2] == "F") out.push_back('\n');
  }
  return out;
}

}  // namespace gvshim::node
