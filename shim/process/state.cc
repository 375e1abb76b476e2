#include "shim/process/state.h"

#include "absl/strings/str_cat.h"

namespace gvshim::process {

const char* StatusName(Status s) {
  switch (s) {
    case Status::kCreated:
      return "created";
    case Status::kRunning:
      return "running";
    case Status::kPaused:
      return "paused";
    case Status::kStopped:
      return "stopped";
    case Status::kDeleted:
      return "deleted";
  }
  return "unknown";
}

const char* KindName(Kind k) { return k == Kind::kInit ? "init" : "exec"; }

bool IsLegal(Kind kind, Status from, Status to) {
  switch (from) {
    case Status::kCreated:
      return to == Status::kRunning || to == Status::kStopped || to == Status::kDeleted;
    case Status::kRunning:
      return to == Status::kStopped || (kind == Kind::kInit && to == Status::kPaused);
    case Status::kPaused:
      return kind == Kind::kInit && (to == Status::kRunning || to == Status::kStopped);
    case Status::kStopped:
      return to == Status::kDeleted;
    case Status::kDeleted:
      return false;
  }
  return false;
}

absl::Status CheckTransition(Kind kind, Status from, Status to, absl::string_view what) {
  if (IsLegal(kind, from, to)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(what, ": ", KindName(kind), " process is ",
                                                    StatusName(from), ", cannot become ", StatusName(to)));
}

absl::Status Lifecycle::Transition(Status to, absl::string_view what) {
  absl::Status st = CheckTransition(kind_, status_, to, what);
  if (st.ok()) status_ = to;
  return st;
}

}  // namespace gvshim::process
