// `gvshim execute-server`: the Execute server process of one pod, started by the shim (supervisor.h). Reads
// the shim's messages (wire.h) from in_fd until end of input or SIGTERM/SIGINT, then stops the runners,
// removes the socket and record, and returns the exit code. Logs go to stderr (the shim's log). Call it from
// main before any other thread exists: it starts the process's child reaper.
#pragma once

namespace gvshim::execute {

int ExecuteServerMain(int in_fd);

}  // namespace gvshim::execute
