// The Kubernetes API, as much as the node installer needs: its node's labels and its DaemonSet. `KubeApi` is
// the interface (faked in unit tests); InClusterKube speaks HTTPS to the API server with the pod's service
// account (Boost.Beast over OpenSSL, the server checked against the service account's CA).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace gvshim::node {

class KubeApi {
 public:
  virtual ~KubeApi() = default;
  // GET; nullopt when the object does not exist (404). Errors name the method, path and the server's message.
  virtual absl::StatusOr<std::optional<nlohmann::json>> Get(const std::string& path) = 0;
  // PATCH with a JSON merge patch (application/merge-patch+json).
  virtual absl::Status MergePatch(const std::string& path, const nlohmann::json& patch) = 0;
};

struct InClusterOptions {
  std::string host;                                                                // $KUBERNETES_SERVICE_HOST
  std::string port;                                                                // $KUBERNETES_SERVICE_PORT
  std::string token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token";  // re-read per request
  std::string ca_file = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
  absl::Duration timeout = absl::Seconds(30);
};
// From the environment ($KUBERNETES_SERVICE_HOST/PORT, and $GVSHIM_KUBE_TOKEN_DIR for the token and CA:
// tests).
absl::StatusOr<InClusterOptions> InClusterFromEnv();
std::unique_ptr<KubeApi> NewInClusterKube(InClusterOptions opts);

std::string NodePath(const std::string& node);
std::string DaemonSetPath(const std::string& ns, const std::string& name);

// Sets (value) or removes (nullopt) one label on a node: a merge patch that names only that label.
absl::Status SetNodeLabel(KubeApi& kube, const std::string& node, const std::string& key,
                          const std::optional<std::string>& value);

// Whether `daemonset` (a DaemonSet object) would run a pod on `node` (a Node object): its pod template's
// nodeSelector and required node affinity (matchExpressions In, NotIn, Exists, DoesNotExist, Gt, Lt on
// labels; matchFields on metadata.name). Taints are not considered. A DaemonSet being deleted selects
// nothing.
bool DaemonSetSelectsNode(const nlohmann::json& daemonset, const nlohmann::json& node);

}  // namespace gvshim::node
