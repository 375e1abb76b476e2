// Unix stream sockets: the one place the shim binds, listens and dials them.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "shim/sys/fd.h"

namespace gvshim::sys {

// Binds a Unix stream socket at `path` with file mode `mode` and listens. bind, chmod, then listen: nobody
// can connect before the mode is set. The parent directory must exist; an existing file at `path` is an error
// (EADDRINUSE). The socket is close-on-exec; with `nonblocking` accept never blocks.
absl::StatusOr<UniqueFd> ListenUnix(const std::string& path, mode_t mode, bool nonblocking = false,
                                    int backlog = SOMAXCONN);

// Connects to the socket at `path` ("unix://" prefix allowed). UNAVAILABLE when nobody listens there (or the
// path is missing); DEADLINE_EXCEEDED when the listener's backlog stays full for `timeout`.
absl::StatusOr<UniqueFd> DialUnix(const std::string& path, absl::Duration timeout);

// Becomes the server of `path` unless a live server already has it. Under an exclusive lock on the socket's
// directory (so concurrent claims of one path, e.g. two `start`s for one pod, are serialised): if a dial
// succeeds, someone serves it and the result is an invalid fd; otherwise a stale socket file is removed and a
// new listener is returned (mode as in ListenUnix). Never removes a socket that serves.
absl::StatusOr<UniqueFd> ClaimUnixSocket(const std::string& path, mode_t mode);

}  // namespace gvshim::sys
