// The lifecycle of a container's processes: the states, the legal transitions of an init process and of an
// exec process (two tables), and Lifecycle, whose Transition() is the only code that ever changes a process's
// state.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace gvshim::process {

enum class Status { kCreated, kRunning, kPaused, kStopped, kDeleted };
const char* StatusName(Status s);

// Which table applies. An init (the container's own process) can be paused with its sandbox and can be
// stopped or deleted before it ever ran; an exec is never paused on its own.
enum class Kind { kInit, kExec };
const char* KindName(Kind k);

// The transition tables:
//   init: created -> running | stopped (killed or died before start) | deleted (deleted before start);
//         running <-> paused; running | paused -> stopped; stopped -> deleted.
//   exec: created -> running | stopped (died while its start was failing) | deleted (never started);
//         running -> stopped; stopped -> deleted.
bool IsLegal(Kind kind, Status from, Status to);
// OK for a legal transition; otherwise FAILED_PRECONDITION "<what>: <kind> process is <from>, cannot become
// <to>".
absl::Status CheckTransition(Kind kind, Status from, Status to, absl::string_view what);

// One process's state. Starts in kCreated; Transition() is the only writer. Not thread-safe by itself: the
// owner guards it with its own mutex.
class Lifecycle {
 public:
  explicit Lifecycle(Kind kind) : kind_(kind) {}
  Kind kind() const { return kind_; }
  Status status() const { return status_; }
  bool Is(Status s) const { return status_ == s; }
  // A process that is alive as far as containerd can tell (running or paused).
  bool Alive() const { return status_ == Status::kRunning || status_ == Status::kPaused; }
  // Moves to `to` if the table allows it; FAILED_PRECONDITION (state unchanged) if not.
  absl::Status Transition(Status to, absl::string_view what);

 private:
  const Kind kind_;
  Status status_ = Status::kCreated;
};

}  // namespace gvshim::process
