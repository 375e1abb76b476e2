// Status helpers shared by every module. No exceptions cross module boundaries: functions that can fail
// return absl::Status / absl::StatusOr, with messages that name the operation and the object.
#pragma once

#include <cerrno>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace gvshim {

// Status for a failed syscall: "<what>: <strerror(err)>", with the code absl derives from errno.
absl::Status ErrnoStatus(int err, absl::string_view what);

// Prefixes the message of a non-OK status with context, keeping the code.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace gvshim

#define GVSHIM_CONCAT_INNER(a, b) a##b
#define GVSHIM_CONCAT(a, b) GVSHIM_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                        \
  do {                                               \
    ::absl::Status _gvshim_status = (expr);          \
    if (!_gvshim_status.ok()) return _gvshim_status; \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(*tmp)

#define ASSIGN_OR_RETURN(lhs, expr) ASSIGN_OR_RETURN_IMPL(GVSHIM_CONCAT(_gvshim_or_, __LINE__), lhs, expr)
