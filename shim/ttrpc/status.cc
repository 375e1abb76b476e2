#include "shim/ttrpc/status.h"

#include <string>

namespace gvshim::ttrpc {

absl::Status FromProto(const gvshim::ttrpc::v1::Status& proto) {
  const int32_t code = proto.code();
  if (code == 0) return absl::OkStatus();
  absl::StatusCode c = absl::StatusCode::kUnknown;
  if (code > 0 && code <= static_cast<int32_t>(absl::StatusCode::kUnauthenticated)) {
    c = static_cast<absl::StatusCode>(code);
  }
  return absl::Status(c, proto.message());
}

void ToProto(const absl::Status& status, gvshim::ttrpc::v1::Status* proto) {
  proto->Clear();
  proto->set_code(static_cast<int32_t>(status.code()));
  proto->set_message(std::string(status.message()));
}

}  // namespace gvshim::ttrpc
