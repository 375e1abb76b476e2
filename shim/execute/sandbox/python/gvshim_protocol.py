# The frame protocol of the Execute runners (../PROTOCOL.md) and the runner's command line.
#
# Frames are a 4-byte big-endian length followed by one UTF-8 JSON object. The runner's options come from the
# Execute server; nothing here has a default for a limit: the server passes every default (--default-<limit>),
# so the limits are defined in one place (the [execute] config).

import json
import os
import struct

PROTOCOL_VERSION = 2
MAX_FRAME = 64 << 20
RESULT_CAP = 16 << 20  # bytes of main's JSON result accepted from a job

LIMIT_NAMES = ("wall_timeout_ms", "cpu_time_ms", "memory_bytes", "output_bytes", "max_processes",
               "file_size_bytes")

STATUS_SUCCESS = "success"
STATUS_PROGRAM_ERROR = "program_error"
STATUS_TIMEOUT = "timeout"
STATUS_MEMORY = "memory_limit"
STATUS_OUTPUT = "output_limit"
STATUS_REJECTED = "rejected"
STATUS_INTERNAL = "internal_error"

# Exit code of a job process whose own setup failed (the snippet never ran).
SETUP_FAILED_EXIT = 125


def diag(msg):
    try:
        os.write(2, ("gvshim-python-runner: %s\n" % msg).encode("utf-8", "replace"))
    except OSError:
        pass


def encode_frame(obj):
    # UTF-8 as is, and a lone surrogate (a snippet's records or a file name that is not UTF-8 can carry one)
    # replaced: written as a \u escape it would be JSON the server's parser rejects, killing this runner.
    data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace")
    return struct.pack(">I", len(data)) + data


def encode_result(frame):
    """A result frame, encoded; or, if it is larger than a frame may be (the server kills a runner that sends
    one, with every job in it), an internal_error result saying so, with the job's exit status."""
    data = encode_frame(frame)
    if len(data) - 4 <= MAX_FRAME:
        return data
    small = empty_result(frame["id"], STATUS_INTERNAL, "the job's result (%d bytes with its output and artifacts) "
                         "exceeds the %d byte frame limit" % (len(data) - 4, MAX_FRAME))
    for k in ("exit_code", "signal", "duration_ms", "peak_memory_bytes", "isolation"):
        small[k] = frame.get(k)
    return encode_frame(small)


class FrameError(Exception):
    """The stream cannot be resynchronised (a frame over MAX_FRAME)."""


def split_frames(buf):
    """Takes every complete frame off the front of bytearray buf; yields (message or None, error text)."""
    while len(buf) >= 4:
        (n,) = struct.unpack(">I", buf[:4])
        if n > MAX_FRAME:
            raise FrameError("frame of %d bytes exceeds the %d byte limit; stream cannot be resynchronised"
                             % (n, MAX_FRAME))
        if len(buf) < 4 + n:
            return
        body = bytes(buf[4:4 + n])
        del buf[:4 + n]
        try:
            msg = json.loads(body)
            if not isinstance(msg, dict):
                raise ValueError("frame is not a JSON object")
        except ValueError as e:
            yield None, "malformed frame: %s" % e
            continue
        yield msg, ""


class Options:
    """The runner's command line (PROTOCOL.md, "Options"). Unknown options end the runner."""

    def __init__(self, argv):
        self.uid = None
        self.gid = None
        self.uid_count = 0
        self.max_jobs = 0
        self.prefork = 2
        self.zygotes = 0
        self.preload = []
        self.helpers = "/.gvshim"
        self.workspace = "/workspace"
        self.tmpfs_bytes = 64 << 20
        self.tmpfs_paths = ["/tmp", "/var/tmp", "/dev/shm"]
        self.weak_dir = "/tmp"  # where per-job directories go when mounts cannot be made private
        self.allow_weak = False
        self.max_artifacts = 16
        self.max_artifact_bytes = 4 << 20
        self.defaults = {}
        self.phase_times = False
        it = iter(argv)
        for a in it:
            if a in ("--uid", "--gid", "--uid-count", "--max-jobs", "--prefork", "--zygotes", "--tmpfs-bytes",
                     "--max-artifacts", "--max-artifact-bytes"):
                setattr(self, a[2:].replace("-", "_"), int(next(it)))
            elif a in ("--helpers", "--workspace", "--weak-dir"):
                setattr(self, a[2:].replace("-", "_"), next(it))
            elif a == "--tmpfs":
                self.tmpfs_paths = [p for p in next(it).split(",") if p]
            elif a == "--preload":
                self.preload = [m for m in next(it).split(",") if m]
            elif a == "--allow-weak-isolation":
                self.allow_weak = True
            elif a == "--phase-times":
                self.phase_times = True
            elif a.startswith("--default-") and a[10:].replace("-", "_") in LIMIT_NAMES:
                self.defaults[a[10:].replace("-", "_")] = int(next(it))
            else:
                raise SystemExit("gvshim-python-runner: unknown option %r" % a)
        missing = [n for n in LIMIT_NAMES if n not in self.defaults]
        if missing:
            raise SystemExit("gvshim-python-runner: the default limits are required: %s"
                             % ", ".join("--default-" + n.replace("_", "-") for n in missing))
        if self.uid is None or self.gid is None or self.uid <= 0 or self.gid <= 0:
            raise SystemExit("gvshim-python-runner: --uid and --gid (not 0) are required")
        self.max_jobs = max(1, self.max_jobs or 4)
        self.prefork = max(1, self.prefork)
        # One uid per job that runs or waits in a worker, plus the workers being torn down.
        self.uid_count = max(self.uid_count, self.max_jobs + self.prefork + 2)


def parse_job(msg, defaults):
    """The exec frame's fields, checked. Raises ValueError with the reason."""
    import base64

    code = msg.get("code")
    if not isinstance(code, str):
        raise ValueError("code must be a string")
    args_json = msg.get("args_json")
    if args_json in (None, ""):
        args = {}
    elif isinstance(args_json, str):
        try:
            args = json.loads(args_json)
        except ValueError as e:
            raise ValueError("args_json is not valid JSON: %s" % e)
    else:
        raise ValueError("args_json must be a string")
    env = msg.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) and k and "=" not in k
                                            and "\0" not in k + v for k, v in env.items()):
        raise ValueError("env must map names to strings")
    limits = dict(defaults)
    for k, v in (msg.get("limits") or {}).items():
        if k not in limits:
            raise ValueError("unknown limit %r" % k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError("limit %s must be a non-negative integer" % k)
        if v:
            limits[k] = v
    stdin_b64 = msg.get("stdin") or ""
    base64.b64decode(stdin_b64, validate=True)
    return {"code": code, "args": args, "env": env, "limits": limits, "stdin_b64": stdin_b64,
            "allow_network": bool(msg.get("allow_network")), "stream": bool(msg.get("stream"))}


def empty_result(jid, status, error):
    return {"type": "result", "id": jid, "status": status, "exit_code": None, "signal": None, "stdout": "",
            "stderr": "", "stdout_truncated": False, "stderr_truncated": False, "result_json": None,
            "duration_ms": 0.0, "peak_memory_bytes": 0, "artifacts": [], "artifacts_truncated": False,
            "error": error}
