# Runner-side records of jobs, zygotes and workers, and the result frame of a finished job.

import json
import os
import signal
import time

from gvshim_protocol import (SETUP_FAILED_EXIT, STATUS_INTERNAL, STATUS_MEMORY, STATUS_OUTPUT,
                             STATUS_PROGRAM_ERROR, STATUS_SUCCESS, STATUS_TIMEOUT)


def b64(data):
    import base64

    return base64.b64encode(data).decode("ascii")


class Job:
    def __init__(self, jid, spec):
        self.id = jid
        self.spec = spec
        self.worker = None
        self.net = False  # needs a worker with its own network namespace
        self.start = 0.0
        self.deadline = 0.0
        self.out = {"stdout": bytearray(), "stderr": bytearray()}
        self.truncated = {"stdout": False, "stderr": False}
        self.fds = {}  # fd -> "stdout" | "stderr" | "records"
        self.records = bytearray()
        self.rec_scanned = 0
        self.exited = False
        self.wait_status = None
        self.maxrss = 0
        self.kill_reason = None
        self.error = None
        self.stamps = {}


class Zygote:
    def __init__(self, pid, sock):
        self.pid = pid
        self.sock = sock
        self.inflight = 0  # spawn requests not answered yet


class Worker:
    def __init__(self, pid, uid, net, fds, weak_dir, z):
        self.pid = pid
        self.uid = uid
        self.net = net
        self.weak_dir = weak_dir
        self.zygote = z
        self.job_w, self.out_r, self.err_r, self.rec_r = fds
        self.job = None



def result_frame(job, duration, opts):
    """The `result` frame of a finished job: its records, exit status and kill reason classified (PROTOCOL.md)."""
    lim = job.spec["limits"]
    iso = result_json = kind = bad_result = None
    artifacts, art_trunc = [], False
    for line in bytes(job.records).split(b"\n"):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        k = rec.get("kind")
        if k == "setup" and iso is None:
            iso = rec.get("isolation")
        elif k == "result":
            result_json = rec.get("json")
        elif k == "memory":
            kind = "memory"
        elif k == "bad_result":
            bad_result = rec.get("message")
        elif k == "artifacts" and isinstance(rec.get("files"), list):
            artifacts = [a for a in rec["files"] if isinstance(a, dict)][:opts.max_artifacts]
            art_trunc = bool(rec.get("truncated"))
        elif k == "stamps" and isinstance(rec.get("stamps"), dict):
            for name, t in rec["stamps"].items():
                if isinstance(t, (int, float)):
                    job.stamps.setdefault(name, t)
    st = job.wait_status
    exit_code = sig = None
    if st is not None:
        if os.WIFEXITED(st):
            exit_code = os.WEXITSTATUS(st)
        elif os.WIFSIGNALED(st):
            sig = os.WTERMSIG(st)
    elif job.kill_reason:
        sig = signal.SIGKILL
    stderr_tail = bytes(job.out["stderr"][-512:])
    error = ""
    if job.error:
        status, error = STATUS_INTERNAL, job.error
    elif job.kill_reason == "lost":
        status, error = STATUS_INTERNAL, "the job's worker was lost (the runner's zygote died)"
    elif job.kill_reason == "timeout":
        status, error = STATUS_TIMEOUT, "wall timeout of %d ms exceeded" % lim["wall_timeout_ms"]
    elif job.kill_reason == "output":
        status, error = STATUS_OUTPUT, "output limit of %d bytes exceeded" % lim["output_bytes"]
    elif job.kill_reason == "cancel":
        status, error = STATUS_INTERNAL, "cancelled"
    elif job.kill_reason == "shutdown":
        status, error = STATUS_INTERNAL, "runner shutting down"
    elif sig == signal.SIGXCPU or (sig == signal.SIGKILL and duration >= lim["cpu_time_ms"]):
        # RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one (the wall clock is far below it).
        status, error = STATUS_TIMEOUT, "cpu time limit of %d ms exceeded" % lim["cpu_time_ms"]
    elif kind == "memory" or (exit_code not in (0, None) and b"\nMemoryError" in b"\n" + stderr_tail):
        status, error = STATUS_MEMORY, "memory limit of %d bytes exceeded" % lim["memory_bytes"]
    elif exit_code == SETUP_FAILED_EXIT and iso is None:
        status, error = STATUS_INTERNAL, "job setup failed: %s" % stderr_tail.decode("utf-8", "replace").strip()
    elif exit_code == 0 and bad_result is None:
        status = STATUS_SUCCESS
    else:
        status = STATUS_PROGRAM_ERROR
        if bad_result:
            error = bad_result
        elif sig is not None:
            error = "killed by signal %d" % sig
        else:
            error = "exit status %d" % exit_code
    frame = {"type": "result", "id": job.id, "status": status, "exit_code": exit_code, "signal": sig,
             "stdout": b64(bytes(job.out["stdout"])), "stderr": b64(bytes(job.out["stderr"])),
             "stdout_truncated": job.truncated["stdout"], "stderr_truncated": job.truncated["stderr"],
             "result_json": result_json if status == STATUS_SUCCESS else None,
             "duration_ms": round(duration, 3), "peak_memory_bytes": job.maxrss, "artifacts": artifacts,
             "artifacts_truncated": art_trunc, "error": error, "isolation": iso or {}}
    if opts.phase_times:
        frame["phases"] = phases(job)
    return frame

def phases(job):
    """Milliseconds between consecutive timestamps of the job's path, named by the later one. Worker stamps
    taken before the job arrived are reported as prefork_*: they are not on the path."""
    st = dict(job.stamps)
    st["sent"] = time.monotonic()
    out = {}
    t0 = st.get("recv")
    if "w_fork" in st and "w_start" in st and "w_ready" in st:
        wf, ws, wr = st.pop("w_fork"), st.pop("w_start"), st.pop("w_ready")
        out["prefork_fork"] = round((ws - wf) * 1000, 3)
        out["prefork_setup"] = round((wr - ws) * 1000, 3)
    order = sorted((t, n) for n, t in st.items() if t0 is None or t >= t0)
    for (ta, _), (tb, name) in zip(order, order[1:]):
        out[name] = round((tb - ta) * 1000, 3)
    if t0 is not None:
        out["total"] = round((st["sent"] - t0) * 1000, 3)
    return out
