#include "shim/node/kube.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "shim/base/status.h"
#include "shim/sys/file.h"

namespace gvshim::node {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

absl::Status NetError(const std::string& what, const beast::error_code& ec) {
  return absl::UnavailableError(absl::StrCat(what, ": ", ec.message()));
}

class InClusterKube : public KubeApi {
 public:
  explicit InClusterKube(InClusterOptions o) : o_(std::move(o)) {}

  absl::StatusOr<std::optional<nlohmann::json>> Get(const std::string& path) override {
    ASSIGN_OR_RETURN(auto r, Do(http::verb::get, path, "", ""));
    if (r.first == 404) return std::optional<nlohmann::json>();
    if (r.first != 200) return HttpError("GET", path, r);
    auto j = nlohmann::json::parse(r.second, nullptr, false);
    if (j.is_discarded()) return absl::InternalError(absl::StrCat("GET ", path, ": answer is not JSON"));
    return std::optional<nlohmann::json>(std::move(j));
  }

  absl::Status MergePatch(const std::string& path, const nlohmann::json& patch) override {
    ASSIGN_OR_RETURN(auto r, Do(http::verb::patch, path, patch.dump(), "application/merge-patch+json"));
    if (r.first != 200) return HttpError("PATCH", path, r);
    return absl::OkStatus();
  }

 private:
  using Answer = std::pair<int, std::string>;

  static absl::Status HttpError(const char* method, const std::string& path, const Answer& r) {
    std::string msg = r.second;
    auto j = nlohmann::json::parse(r.second, nullptr, false);
    if (!j.is_discarded() && j.is_object() && j.contains("message") && j["message"].is_string()) {
      msg = j["message"].get<std::string>();
    }
    std::string text = absl::StrCat(method, " ", path, ": HTTP ", r.first, ": ", msg);
    if (r.first == 401 || r.first == 403) return absl::PermissionDeniedError(text);
    if (r.first == 404) return absl::NotFoundError(text);
    return absl::UnavailableError(text);
  }

  absl::StatusOr<Answer> Do(http::verb verb, const std::string& path, const std::string& body,
                            const std::string& content_type) {
    ASSIGN_OR_RETURN(std::string token, sys::ReadFileToString(o_.token_file));
    token = std::string(absl::StripAsciiWhitespace(token));
    std::string what =
        absl::StrCat(std::string(http::to_string(verb)), " https://", o_.host, ":", o_.port, path);

    net::io_context ioc;
    ssl::context ctx(ssl::context::tls_client);
    beast::error_code ec;
    ctx.load_verify_file(o_.ca_file, ec);
    if (ec) return NetError(absl::StrCat("load CA ", o_.ca_file), ec);
    ctx.set_verify_mode(ssl::verify_peer);

    beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
    stream.set_verify_callback(ssl::host_name_verification(o_.host));
    if (!SSL_set_tlsext_host_name(stream.native_handle(), o_.host.c_str())) {
      return absl::InternalError(absl::StrCat(what, ": cannot set TLS server name"));
    }
    // The API server is normally an IP ($KUBERNETES_SERVICE_HOST): resolved numerically, so the static binary
    // needs no NSS module; a name goes through the resolver.
    tcp::resolver resolver(ioc);
    auto endpoints =
        resolver.resolve(o_.host, o_.port, tcp::resolver::numeric_host | tcp::resolver::numeric_service, ec);
    if (ec) endpoints = resolver.resolve(o_.host, o_.port, ec);
    if (ec) return NetError(absl::StrCat(what, ": resolve"), ec);
    beast::get_lowest_layer(stream).expires_after(
        std::chrono::milliseconds(absl::ToInt64Milliseconds(o_.timeout)));
    beast::get_lowest_layer(stream).connect(endpoints, ec);
    if (ec) return NetError(absl::StrCat(what, ": connect"), ec);
    stream.handshake(ssl::stream_base::client, ec);
    if (ec) return NetError(absl::StrCat(what, ": TLS handshake"), ec);

    http::request<http::string_body> req{verb, path, 11};
    req.set(http::field::host, o_.host);
    req.set(http::field::user_agent, "gvshim-node-installer");
    req.set(http::field::authorization, absl::StrCat("Bearer ", token));
    req.set(http::field::accept, "application/json");
    if (!content_type.empty()) req.set(http::field::content_type, content_type);
    req.body() = body;
    req.prepare_payload();
    http::write(stream, req, ec);
    if (ec) return NetError(absl::StrCat(what, ": write"), ec);
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(8 << 20);
    http::read(stream, buf, parser, ec);
    if (ec) return NetError(absl::StrCat(what, ": read"), ec);
    stream.shutdown(ec);  // the answer is complete; a peer that just closes is fine
    auto& res = parser.get();
    return Answer{static_cast<int>(res.result_int()), res.body()};
  }

  InClusterOptions o_;
};

bool MatchExpression(const nlohmann::json& expr, const nlohmann::json& labels) {
  std::string key = expr.value("key", "");
  std::string op = expr.value("operator", "");
  bool has = labels.is_object() && labels.contains(key) && labels[key].is_string();
  std::string val = has ? labels[key].get<std::string>() : "";
  auto values = expr.value("values", nlohmann::json::array());
  auto in = [&] {
    for (const auto& v : values) {
      if (v.is_string() && v.get<std::string>() == val) return true;
    }
    return false;
  };
  auto cmp = [&](bool greater) {
    int64_t a = 0, b = 0;
    if (!has || values.size() != 1 || !values[0].is_string() || !absl::SimpleAtoi(val, &a) ||
        !absl::SimpleAtoi(values[0].get<std::string>(), &b)) {
      return false;
    }
    return greater ? a > b : a < b;
  };
  if (op == "In") return has && in();
  if (op == "NotIn") return !has || !in();
  if (op == "Exists") return has;
  if (op == "DoesNotExist") return !has;
  if (op == "Gt") return cmp(true);
  if (op == "Lt") return cmp(false);
  return false;  // an operator we do not know selects nothing (the safe answer: no uninstall decision on it)
}

}  // namespace

absl::StatusOr<InClusterOptions> InClusterFromEnv() {
  InClusterOptions o;
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || *host == '\0' || port == nullptr || *port == '\0') {
    return absl::FailedPreconditionError(
        "not in a Kubernetes pod: KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set");
  }
  o.host = host;
  o.port = port;
  if (const char* dir = std::getenv("GVSHIM_KUBE_TOKEN_DIR"); dir != nullptr && *dir != '\0') {
    o.token_file = absl::StrCat(dir, "/token");
    o.ca_file = absl::StrCat(dir, "/ca.crt");
  }
  return o;
}

std::unique_ptr<KubeApi> NewInClusterKube(InClusterOptions opts) {
  return std::make_unique<InClusterKube>(std::move(opts));
}

std::string NodePath(const std::string& node) { return absl::StrCat("/api/v1/nodes/", node); }
std::string DaemonSetPath(const std::string& ns, const std::string& name) {
  return absl::StrCat("/apis/apps/v1/namespaces/", ns, "/daemonsets/", name);
}

absl::Status SetNodeLabel(KubeApi& kube, const std::string& node, const std::string& key,
                          const std::optional<std::string>& value) {
  nlohmann::json patch;
  patch["metadata"]["labels"][key] = value ? nlohmann::json(*value) : nlohmann::json(nullptr);
  return Annotate(kube.MergePatch(NodePath(node), patch),
                  value ? absl::StrCat("label node ", node, " ", key, "=", *value)
                        : absl::StrCat("remove label ", key, " from node ", node));
}

bool DaemonSetSelectsNode(const nlohmann::json& ds, const nlohmann::json& node) {
  if (ds.contains("metadata") && ds["metadata"].contains("deletionTimestamp")) return false;
  const nlohmann::json labels = node.contains("metadata")
                                    ? node["metadata"].value("labels", nlohmann::json::object())
                                    : nlohmann::json::object();
  const std::string name = node.contains("metadata") ? node["metadata"].value("name", "") : "";
  const nlohmann::json spec = ds.value("spec", nlohmann::json::object())
                                  .value("template", nlohmann::json::object())
                                  .value("spec", nlohmann::json::object());
  const nlohmann::json selector = spec.value("nodeSelector", nlohmann::json::object());
  for (auto& [k, v] : selector.items()) {
    if (!labels.contains(k) || labels[k] != v) return false;
  }
  const nlohmann::json terms =
      spec.value("affinity", nlohmann::json::object())
          .value("nodeAffinity", nlohmann::json::object())
          .value("requiredDuringSchedulingIgnoredDuringExecution", nlohmann::json::object())
          .value("nodeSelectorTerms", nlohmann::json::array());
  if (terms.empty()) return true;
  for (const auto& term : terms) {  // terms are ORed, expressions within a term ANDed
    bool ok = true;
    for (const auto& e : term.value("matchExpressions", nlohmann::json::array()))
      ok = ok && MatchExpression(e, labels);
    nlohmann::json fields = {{"metadata.name", name}};
    for (const auto& e : term.value("matchFields", nlohmann::json::array()))
      ok = ok && MatchExpression(e, fields);
    if (ok) return true;
  }
  return false;
}

}  // namespace gvshim::node
