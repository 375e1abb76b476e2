// Unix stream sockets: the one place the shim binds, listens and dials them (sockets that a library owns,
// gRPC's and Boost.Beast's, are the library's business).
//
// An address is a filesystem path ("/run/x.sock") or a name in the abstract namespace written "@name"; either
// may carry a "unix://" prefix. sun_path holds 108 bytes: a path must be shorter than 108 bytes (its NUL ends
// it), an abstract name at most 107 bytes (a leading NUL marks it). Abstract sockets have no file: no mode
// guards them (anyone in the network namespace may connect) and the kernel releases the name when the last fd
// closes. Every error names the operation and the address.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "shim/sys/fd.h"

namespace gvshim::sys {

// Binds a Unix stream socket at the filesystem path `path` with file mode `mode` and listens. bind, chmod,
// then listen: nobody can connect before the mode is set. The parent directory must exist; an existing file
// at `path` is an error (ALREADY_EXISTS). An "@name" address is refused (INVALID_ARGUMENT): it has no mode to
// enforce, use ListenAbstract. The socket is close-on-exec; with `nonblocking` accept never blocks.
absl::StatusOr<UniqueFd> ListenUnix(const std::string& path, mode_t mode, bool nonblocking = false,
                                    int backlog = SOMAXCONN);

// Binds and listens on the abstract name `address` ("@name"). ALREADY_EXISTS when the name is bound.
absl::StatusOr<UniqueFd> ListenAbstract(const std::string& address, bool nonblocking = false,
                                        int backlog = SOMAXCONN);

// Connects to `address` (a path or "@name"). UNAVAILABLE when nobody listens there (or the path is missing);
// DEADLINE_EXCEEDED when the listener's backlog stays full for `timeout` (a live but busy or hung server).
absl::StatusOr<UniqueFd> DialUnix(const std::string& address, absl::Duration timeout);

// Becomes the server of the filesystem path `path` unless a live server already has it. Under an exclusive
// lock on the socket's directory (so concurrent claims of one path, e.g. two `start`s for one pod, are
// serialised) it probes the path with a dial:
//  - accepted: someone serves it, the result is an invalid fd;
//  - refused or missing (ECONNREFUSED, ENOENT): nobody listens, so a socket file there is stale (left by a
//    server that died); it is removed and a new listener is returned (mode as in ListenUnix);
//  - anything else, notably no answer within `probe_timeout` (a live owner whose backlog is full):
//  UNAVAILABLE
//    or the connect's error, naming the path, and nothing is removed.
// Never removes a socket that may serve. Claimers of one path must all claim it (a plain ListenUnix between
// its bind and listen is refused and looks stale). An "@name" address is refused (INVALID_ARGUMENT): the
// kernel already keeps abstract names exclusive and never leaves them stale, use ListenAbstract.
absl::StatusOr<UniqueFd> ClaimUnixSocket(const std::string& path, mode_t mode,
                                         absl::Duration probe_timeout = absl::Seconds(1));

// ClaimUnixSocket for a listener that a library binds itself (gRPC): the same probe and stale-socket removal
// under the same directory lock, then `bind` is called (still under the lock) to bind and listen at `path`.
// Returns false when a live server already has the path (`bind` is not called), true once `bind` succeeded,
// or the probe's error or `bind`'s.
absl::StatusOr<bool> ClaimUnixPath(const std::string& path, const std::function<absl::Status()>& bind,
                                   absl::Duration probe_timeout = absl::Seconds(1));

}  // namespace gvshim::sys
