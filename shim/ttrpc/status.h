// Conversion between absl::Status and the google.rpc.Status carried in a ttrpc Response. Codes are gRPC
// codes, which absl::StatusCode mirrors value for value.
#pragma once

#include "absl/status/status.h"
#include "gvshim/ttrpc/v1/ttrpc.pb.h"

namespace gvshim::ttrpc {

// Unknown codes (outside 0..16) become UNKNOWN; a non-zero code with an empty message keeps the code.
absl::Status FromProto(const gvshim::ttrpc::v1::Status& proto);
void ToProto(const absl::Status& status, gvshim::ttrpc::v1::Status* proto);

}  // namespace gvshim::ttrpc
