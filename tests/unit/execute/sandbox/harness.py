"""The test harness of test_runners.py and test_runner_lifecycle.py: a runner subprocess driven over its frame
protocol, probes for the host processes a job leaves behind, and how the runners under test are started."""

import base64
import json
import os
import queue
import shutil
import struct
import subprocess
import sys
import threading
import time

RESULT_TIMEOUT = 60  # seconds a test waits for one frame before failing (never hit when things work)


class RunnerProcess:
    """A runner subprocess and a reader thread that sorts its frames by job id."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lock = threading.Lock()
        self.queues = {}
        self.errors = queue.Queue()
        self.stderr_lines = []
        self.largest_frame = 0  # bytes of the largest frame body seen (the server kills a runner above MAX_FRAME)
        self.invalid_frames = []  # ids of frames with a lone surrogate escape: the server's JSON parser rejects
        # those, and kills the runner that sent one
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.ready = self._queue("__ready__").get(timeout=RESULT_TIMEOUT)
        self.counter = 0

    def _queue(self, key):
        with self.lock:
            return self.queues.setdefault(key, queue.Queue())

    def _read(self):
        out = self.proc.stdout
        while True:
            head = out.read(4)
            if len(head) < 4:
                return
            (n,) = struct.unpack(">I", head)
            self.largest_frame = max(self.largest_frame, n)
            frame = json.loads(out.read(n))
            try:
                json.dumps(frame, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                self.invalid_frames.append(frame.get("id"))
            t = frame.get("type")
            if t == "ready":
                self._queue("__ready__").put(frame)
            elif t in ("result", "output", "pong"):
                self._queue(frame.get("id")).put(frame)
            else:
                self.errors.put(frame)

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self.stderr_lines.append(line.decode("utf-8", "replace"))

    def send(self, obj):
        data = json.dumps(obj).encode()
        self.send_raw(struct.pack(">I", len(data)) + data)

    def send_raw(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def submit(self, code, args=None, limits=None, stdin=b"", env=None, allow_network=False, stream=False):
        self.counter += 1
        jid = "job-%d" % self.counter
        self._queue(jid)
        msg = {"type": "exec", "id": jid, "code": code, "limits": limits or {}, "allow_network": allow_network,
               "stream": stream, "env": env or {}, "stdin": base64.b64encode(stdin).decode()}
        if args is not None:
            msg["args_json"] = json.dumps(args)
        self.send(msg)
        return jid

    def next_frame(self, jid, timeout=RESULT_TIMEOUT):
        return self._queue(jid).get(timeout=timeout)

    def wait(self, jid, timeout=RESULT_TIMEOUT):
        while True:
            frame = self.next_frame(jid, timeout)
            if frame["type"] == "result":
                frame["stdout"] = base64.b64decode(frame["stdout"])
                frame["stderr"] = base64.b64decode(frame["stderr"])
                for a in frame.get("artifacts", []):
                    a["content"] = base64.b64decode(a["content"])
                return frame

    def run(self, code, **kw):
        return self.wait(self.submit(code, **kw))

    def ping(self):
        self.counter += 1
        pid = "ping-%d" % self.counter
        self.send({"type": "ping", "id": pid})
        return self.next_frame(pid)

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self.reader.join(timeout=30)
            self.proc.stdout.close()
            self.proc.stderr.close()


def processes_with_marker(marker):
    """Pids of live (non-zombie) processes whose command line contains marker."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmd = f.read()
            with open("/proc/%s/stat" % entry, "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmd and state != b"Z":
            found.append(int(entry))
    return found


def wait_gone(marker, limit=15.0):
    """processes_with_marker, polled (bounded) until empty: a SIGKILLed process leaves /proc asynchronously."""
    deadline = time.monotonic() + limit
    found = processes_with_marker(marker)
    while found and time.monotonic() < deadline:
        time.sleep(0.01)
        found = processes_with_marker(marker)
    return found


def daemon_snippet(marker, body):
    """Python snippet text defining _start_daemon() (a `sleep 60` tagged with marker, in a session of its own, so
    neither the job's process group nor its parent's end reach it), followed by body."""
    return ("import os, sys\n"
            "def _start_daemon():\n"
            "    if os.fork() == 0:\n"
            "        os.setsid()\n"
            "        if os.fork() == 0:\n"
            "            os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', %r])\n"
            "        os._exit(0)\n"
            "    os.wait()\n" % marker) + body


# The runners under test and how the Execute server starts them (ctest sets the variables, see test_runners.py).
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
NODE = shutil.which("node")
IS_ROOT = os.geteuid() == 0
PY_RUNNER = os.environ.get("GVSHIM_PY_RUNNER", "")
JS_RUNNER = os.environ.get("GVSHIM_JS_RUNNER", "")
HELPERS = os.path.abspath(os.environ["GVSHIM_HELPERS_DIR"]) if os.environ.get("GVSHIM_HELPERS_DIR") else ""
MAX_FRAME = 64 << 20  # PROTOCOL.md: the largest frame either side accepts
LIMIT_DEFAULTS = {"wall_timeout_ms": 10000, "cpu_time_ms": 10000, "memory_bytes": 512 << 20,
                  "output_bytes": 1 << 20, "max_processes": 64, "file_size_bytes": 16 << 20}


def common_args(uid, workspace, weak_dir):
    args = ["--uid", str(uid), "--gid", str(uid), "--helpers", HELPERS, "--workspace", workspace, "--weak-dir",
            weak_dir, "--max-jobs", "8"]
    for k, v in LIMIT_DEFAULTS.items():
        args += ["--default-" + k.replace("_", "-"), str(v)]
    return args


def python_argv():
    with open(PY_RUNNER) as f:
        return [PYTHON, "-I", "-c", f.read()]


def node_argv():
    with open(JS_RUNNER) as f:
        return [NODE, "-e", f.read(), "--"]


def children_of(pid):
    """Live child processes of pid."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def run_tests():
    """unittest's main, then one summary line (ctest's log shows it) and the exit status."""
    import unittest

    prog = unittest.main(verbosity=2, exit=False)
    r = prog.result
    failed = len(r.failures) + len(r.errors) + len(r.unexpectedSuccesses)
    print("%d passed, %d failed, %d skipped" % (r.testsRun - failed - len(r.skipped), failed, len(r.skipped)))
    sys.exit(1 if failed else 0)


def pipe_bytes(pid, fd):
    """Bytes waiting in the pipe that process pid reads as fd (0 if it is gone)."""
    import fcntl
    import termios

    try:
        f = os.open("/proc/%d/fd/%d" % (pid, fd), os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return 0
    try:
        return struct.unpack("i", fcntl.ioctl(f, termios.FIONREAD, b"\0\0\0\0"))[0]
    finally:
        os.close(f)
