"""Tests of the Execute runners (shim/execute/runners) through their frame protocol.

Run with:  /usr/bin/python3 -m unittest -v tests/unit/execute_runners/test_runners.py
Each runner is started on the host exactly as the shim starts it in the sandbox (`python3 -I -c <source>`,
`node -e <source> --`) and driven over its stdin/stdout. As root, the namespace, setuid and rlimit paths are
exercised; as another user the tests that depend on them skip. Latency figures are printed, not asserted.
"""

import base64
import json
import os
import queue
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNERS = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shim", "execute", "runners"))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
NODE = shutil.which("node")
IS_ROOT = os.geteuid() == 0
RESULT_TIMEOUT = 60  # seconds a test waits for one frame before failing (never hit when things work)


class RunnerProcess:
    """A runner subprocess and a reader thread that sorts its frames by job id."""

    def __init__(self, argv, tmp_base):
        self.tmp_base = tmp_base
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lock = threading.Lock()
        self.queues = {}
        self.errors = queue.Queue()
        self.stderr_lines = []
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
            frame = json.loads(out.read(n))
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


class RunnerTests:
    """Scenarios shared by both runners; subclasses supply the snippets (SNIPPETS) and how to start."""

    LANG = None
    SNIPPETS = {}
    EXTRA_ARGS = []

    @classmethod
    def runner_argv(cls):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="gvx-")
        os.chmod(cls.tmp, 0o755)
        cls.runner = RunnerProcess(cls.runner_argv() + ["--tmp-base", cls.tmp] + cls.EXTRA_ARGS, cls.tmp)
        cls.iso = cls.runner.ready["isolation"]
        print("\n[%s] ready: %s" % (cls.LANG, json.dumps(cls.runner.ready["isolation"])), file=sys.stderr)

    @classmethod
    def tearDownClass(cls):
        rc = cls.runner.close()
        leftovers = os.listdir(cls.tmp)
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert rc == 0, "runner exited with %r; stderr: %s" % (rc, "".join(cls.runner.stderr_lines[-20:]))
        assert not leftovers, "runner left %r behind" % leftovers

    def snippet(self, name):
        return self.SNIPPETS[name]

    def assertStatus(self, res, status):
        self.assertEqual(res["status"], status,
                         "status %s (error %r)\nstdout: %r\nstderr: %r" % (res["status"], res.get("error"),
                                                                          res["stdout"][:2000], res["stderr"][:2000]))

    # --- calling convention and results -------------------------------------------------------------
    def test_main_with_args_returns_json(self):
        res = self.runner.run(self.snippet("main_sum"), args={"a": 2, "b": 40})
        self.assertStatus(res, "success")
        self.assertEqual(json.loads(res["result_json"]), {"sum": 42})
        self.assertEqual(res["exit_code"], 0)
        self.assertGreater(res["duration_ms"], 0)

    def test_script_stdout(self):
        res = self.runner.run(self.snippet("script_print"))
        self.assertStatus(res, "success")
        self.assertEqual(res["stdout"], b"hello from the snippet\n")
        self.assertIsNone(res["result_json"])

    def test_syntax_error(self):
        res = self.runner.run(self.snippet("syntax_error"))
        self.assertStatus(res, "program_error")
        self.assertIn(b"SyntaxError", res["stderr"])

    def test_exception(self):
        res = self.runner.run(self.snippet("exception"))
        self.assertStatus(res, "program_error")
        self.assertIn(b"boom-7", res["stderr"])
        self.assertEqual(res["exit_code"], 1)

    def test_exit_code(self):
        res = self.runner.run(self.snippet("exit3"))
        self.assertStatus(res, "program_error")
        self.assertEqual(res["exit_code"], 3)

    def test_non_serialisable_result(self):
        res = self.runner.run(self.snippet("bad_result"))
        self.assertStatus(res, "program_error")
        self.assertIn("JSON-serialisable", res["error"])

    def test_stdin_env_and_uid(self):
        res = self.runner.run(self.snippet("stdin_env"), stdin=b"abc\xff", env={"GREETING": "hi"})
        self.assertStatus(res, "success")
        out = json.loads(res["result_json"])
        self.assertEqual(out["stdin_len"], 4)
        self.assertEqual(out["greeting"], "hi")
        if IS_ROOT:
            self.assertNotEqual(out["uid"], 0)
            self.assertEqual(res["isolation"]["uid"], out["uid"])

    def test_artifacts(self):
        res = self.runner.run(self.snippet("artifacts"))
        self.assertStatus(res, "success")
        names = {a["name"]: a for a in res["artifacts"]}
        self.assertEqual(set(names), {"out.txt"}, "symlinks and directories are skipped")
        self.assertEqual(names["out.txt"]["content"], b"artifact-data")
        self.assertEqual(names["out.txt"]["size"], 13)

    # --- limits -------------------------------------------------------------------------------------
    def test_infinite_loop_times_out(self):
        t0 = time.monotonic()
        res = self.runner.run(self.snippet("loop"), limits={"wall_timeout_ms": 1000})
        self.assertStatus(res, "timeout")
        self.assertEqual(res["signal"], 9)
        self.assertLess(time.monotonic() - t0, 10)

    def test_cpu_limit(self):
        res = self.runner.run(self.snippet("loop"), limits={"wall_timeout_ms": 20000, "cpu_time_ms": 1000})
        self.assertStatus(res, "timeout")
        self.assertIn("cpu", res["error"])

    def test_memory_bomb(self):
        res = self.runner.run(self.snippet("memory_bomb"),
                              limits={"memory_bytes": 256 << 20, "wall_timeout_ms": 20000})
        self.assertStatus(res, "memory_limit")

    def test_output_flood_truncated(self):
        res = self.runner.run(self.snippet("flood"), limits={"output_bytes": 10000})
        self.assertStatus(res, "output_limit")
        self.assertTrue(res["stdout_truncated"])
        self.assertEqual(len(res["stdout"]), 10000)

    def test_fork_bomb_contained(self):
        if not IS_ROOT:
            self.skipTest("RLIMIT_NPROC does not bind root's own uid; needs root to switch uid")
        marker = "gvx-bomb-" + uuid.uuid4().hex
        res = self.runner.run(self.snippet("fork_bomb").replace("MARKER", marker),
                              limits={"max_processes": 40, "wall_timeout_ms": 3000})
        self.assertIn(res["status"], ("timeout", "program_error", "success"))
        self.assertIn(b"process limit reached", res["stdout"] + res["stderr"])
        self.assertEqual(wait_gone(marker, 15.0), [])
        self.assertEqual(self.runner.ping()["type"], "pong")
        self.assertStatus(self.runner.run(self.snippet("script_print")), "success")

    def test_background_child_killed_after_job(self):
        marker = "gvx-bg-" + uuid.uuid4().hex
        res = self.runner.run(self.snippet("background").replace("MARKER", marker))
        self.assertStatus(res, "success")
        self.assertEqual(json.loads(res["result_json"]), "child running")
        # The child has been sent SIGKILL when the result is sent (pid namespace, process group, or the
        # worker's kill of its uid); it disappears from /proc asynchronously, so allow a bounded moment.
        self.assertEqual(wait_gone(marker), [])

    # --- isolation between jobs ---------------------------------------------------------------------
    def test_jobs_do_not_see_each_others_files(self):
        if not self.iso.get("mount_ns") and not IS_ROOT:
            self.skipTest("needs a mount namespace or a uid per job (root)")
        a = self.runner.submit(self.snippet("hold_secret"), stream=True, limits={"wall_timeout_ms": 30000})
        frame = self.runner.next_frame(a)
        self.assertEqual(frame["type"], "output")
        secret_path = base64.b64decode(frame["data"]).decode().strip()
        self.assertTrue(secret_path.endswith("secret.txt"), secret_path)
        b = self.runner.run(self.snippet("peek"), args={"path": secret_path})
        self.assertStatus(b, "success")
        seen = json.loads(b["result_json"])
        self.assertNotEqual(seen["content"], "top-secret")
        self.assertFalse(seen["listed"], "the base directory must not be listable")
        self.runner.send({"type": "cancel", "id": a})
        res_a = self.runner.wait(a)
        self.assertEqual(res_a["error"], "cancelled")

    def test_concurrent_jobs(self):
        t0 = time.monotonic()
        ids = [self.runner.submit(self.snippet("sleep_main"), args={"n": i}) for i in range(4)]
        results = [self.runner.wait(j) for j in ids]
        elapsed = time.monotonic() - t0
        for i, r in enumerate(results):
            self.assertStatus(r, "success")
            self.assertEqual(json.loads(r["result_json"]), i)
        # Each job sleeps 1 s; run one after another they would need 4 s.
        self.assertLess(elapsed, 3.5)

    def test_network_off_by_default(self):
        if not self.iso.get("net_ns"):
            self.skipTest("runner could not create network namespaces here")
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        port = srv.getsockname()[1]
        try:
            res = self.runner.run(self.snippet("connect"), args={"port": port})
            self.assertStatus(res, "success")
            self.assertFalse(json.loads(res["result_json"])["connected"])
            res = self.runner.run(self.snippet("connect"), args={"port": port}, allow_network=True)
            self.assertStatus(res, "success")
            self.assertTrue(json.loads(res["result_json"])["connected"])
        finally:
            srv.close()

    # --- protocol robustness ------------------------------------------------------------------------
    def test_bad_requests_rejected(self):
        res = self.runner.wait(self._send_exec({"code": "x", "args_json": "{not json"}))
        self.assertStatus(res, "rejected")
        res = self.runner.wait(self._send_exec({"code": "x", "limits": {"bogus_ms": 1}}))
        self.assertStatus(res, "rejected")
        self.runner.send_raw(struct.pack(">I", 5) + b"nope!")
        err = self.runner.errors.get(timeout=RESULT_TIMEOUT)
        self.assertEqual(err["type"], "error")
        self.assertEqual(self.runner.ping()["type"], "pong")

    def test_hostile_snippet_cannot_touch_protocol(self):
        res = self.runner.run(self.snippet("hostile"))
        self.assertIn(res["status"], ("success", "program_error"))
        self.assertEqual(self.runner.ping()["type"], "pong")
        self.assertStatus(self.runner.run(self.snippet("script_print")), "success")

    def _send_exec(self, fields):
        self.runner.counter += 1
        jid = "raw-%d" % self.runner.counter
        self.runner._queue(jid)
        self.runner.send(dict({"type": "exec", "id": jid}, **fields))
        return jid

    # --- latency (printed) --------------------------------------------------------------------------
    def test_zz_latency(self):
        samples = []
        for _ in range(50):
            t0 = time.monotonic()
            res = self.runner.run(self.snippet("main_sum"), args={"a": 1, "b": 2})
            samples.append((time.monotonic() - t0) * 1000)
            self.assertStatus(res, "success")
        base = []
        for _ in range(10):
            t0 = time.monotonic()
            subprocess.run(self.cold_start_argv(), check=True, stdout=subprocess.DEVNULL)
            base.append((time.monotonic() - t0) * 1000)
        print("\n[%s] per-job round trip over 50 runs: median %.1f ms, p90 %.1f ms; cold `%s` median %.1f ms"
              % (self.LANG, statistics.median(samples), sorted(samples)[44], " ".join(self.cold_start_argv()[:2]),
                 statistics.median(base)), file=sys.stderr)


PY_SNIPPETS = {
    "main_sum": "def main(a, b):\n    return {'sum': a + b}\n",
    "script_print": "print('hello from the snippet')\n",
    "syntax_error": "def broken(:\n    pass\n",
    "exception": "def f():\n    raise ValueError('boom-7')\nf()\n",
    "exit3": "import sys\nsys.exit(3)\n",
    "bad_result": "def main():\n    return object()\n",
    "stdin_env": ("import os, sys\n"
                  "def main():\n"
                  "    data = sys.stdin.buffer.read()\n"
                  "    return {'stdin_len': len(data), 'greeting': os.environ.get('GREETING'), 'uid': os.getuid()}\n"),
    "artifacts": ("import os\n"
                  "with open('artifacts/out.txt', 'w') as f:\n    f.write('artifact-data')\n"
                  "os.symlink('/etc/passwd', 'artifacts/link')\n"
                  "os.mkdir('artifacts/sub')\n"),
    "loop": "while True:\n    pass\n",
    "memory_bomb": "blocks = []\nwhile True:\n    blocks.append(bytearray(16 << 20))\n",
    "flood": "import sys\nwhile True:\n    sys.stdout.write('x' * 999 + '\\n')\n",
    "fork_bomb": ("import os, sys, time\n"
                  "n = 0\n"
                  "while True:\n"
                  "    try:\n"
                  "        pid = os.fork()\n"
                  "    except OSError as e:\n"
                  "        print('process limit reached after', n, 'forks:', e, flush=True)\n"
                  "        break\n"
                  "    if pid == 0:\n"
                  "        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', 'MARKER'])\n"
                  "    n += 1\n"
                  "while True:\n"
                  "    try:\n"
                  "        os.fork()\n"  # the classic bomb: every child forks again until the limit holds them
                  "    except OSError:\n"
                  "        time.sleep(0.01)\n"),
    "background": ("import subprocess, sys\n"
                   "def main():\n"
                   "    p = subprocess.Popen([sys.executable, '-c',\n"
                   "                          'import sys, time; print(1, flush=True); time.sleep(60)', 'MARKER'],\n"
                   "                         stdout=subprocess.PIPE)\n"
                   "    p.stdout.readline()\n"
                   "    return 'child running' if p.poll() is None else 'child died'\n"),
    "hold_secret": ("import os, time\n"
                    "with open('secret.txt', 'w') as f:\n    f.write('top-secret')\n"
                    "print(os.path.abspath('secret.txt'), flush=True)\n"
                    "time.sleep(60)\n"),
    "peek": ("import os\n"
             "def main(path):\n"
             "    try:\n        content = open(path).read()\n"
             "    except OSError as e:\n        content = 'error: %s' % e\n"
             "    try:\n        listed = os.listdir(os.path.dirname(os.path.dirname(path)))\n"
             "        listed = [d for d in listed if d not in os.getcwd()]\n"
             "    except OSError:\n        listed = []\n"
             "    return {'content': content, 'listed': bool(listed)}\n"),
    "sleep_main": "import time\ndef main(n):\n    time.sleep(1)\n    return n\n",
    "connect": ("import socket\n"
                "def main(port):\n"
                "    try:\n"
                "        socket.create_connection(('127.0.0.1', port), timeout=2).close()\n"
                "        return {'connected': True}\n"
                "    except OSError as e:\n"
                "        return {'connected': False, 'error': str(e)}\n"),
    "hostile": ("import os\n"
                "for fd in range(3, 256):\n"
                "    try:\n        os.write(fd, b'\\xff\\xff\\xff\\xffgarbage')\n"
                "    except OSError:\n        pass\n"
                "os.write(1, b'\\x00\\x00\\x00\\x05{}{}{')\n"
                "os.kill(os.getppid(), 9)\n"),
}

JS_SNIPPETS = {
    "main_sum": "function main(args) {\n  return { sum: args.a + args.b };\n}\n",
    "script_print": "console.log('hello from the snippet');\n",
    "syntax_error": "function broken( {\n",
    "exception": "function f() { throw new Error('boom-7'); }\nf();\n",
    "exit3": "process.exit(3);\n",
    "bad_result": "function main() { return 10n; }\n",
    "stdin_env": ("const fs = require('fs');\n"
                  "async function main() {\n"
                  "  const data = fs.readFileSync(0);\n"
                  "  return { stdin_len: data.length, greeting: process.env.GREETING, uid: process.getuid() };\n"
                  "}\n"),
    "artifacts": ("const fs = require('fs');\n"
                  "fs.writeFileSync('artifacts/out.txt', 'artifact-data');\n"
                  "fs.symlinkSync('/etc/passwd', 'artifacts/link');\n"
                  "fs.mkdirSync('artifacts/sub');\n"),
    "loop": "for (;;) {}\n",
    "memory_bomb": "const keep = [];\nfor (;;) keep.push(new Array(1e6).fill(1.5));\n",
    "flood": "const line = 'x'.repeat(999) + '\\n';\nfor (;;) process.stdout.write(line);\n",
    "fork_bomb": ("const cp = require('child_process');\n"
                  "let started = 0, failed = null;\n"
                  "for (let i = 0; i < 200 && !failed; i++) {\n"
                  "  try {\n"
                  "    const c = cp.spawn('/bin/sleep', ['60', 'MARKER'], { stdio: 'ignore' });\n"
                  "    c.on('error', (e) => { failed = failed || e; });\n"
                  "    started++;\n"
                  "  } catch (e) { failed = e; }\n"
                  "}\n"
                  "setImmediate(() => {\n"
                  "  console.log('process limit reached after', started, 'spawns:', failed && failed.code);\n"
                  "  process.exit(0);\n"
                  "});\n"),
    "background": ("const cp = require('child_process');\n"
                   "function main() {\n"
                   "  return new Promise((resolve) => {\n"
                   "    const c = cp.spawn(process.execPath,\n"
                   "      ['-e', 'console.log(1); setInterval(() => {}, 1000)', 'MARKER'],\n"
                   "      { stdio: ['ignore', 'pipe', 'ignore'] });\n"
                   "    c.stdout.once('data', () => resolve(c.exitCode === null ? 'child running' : 'child died'));\n"
                   "  });\n"
                   "}\n"),
    "hold_secret": ("const fs = require('fs'), path = require('path');\n"
                    "fs.writeFileSync('secret.txt', 'top-secret');\n"
                    "console.log(path.resolve('secret.txt'));\n"
                    "setTimeout(() => {}, 60000);\n"),
    "peek": ("const fs = require('fs'), path = require('path');\n"
             "function main({ path: p }) {\n"
             "  let content, listed = false;\n"
             "  try { content = fs.readFileSync(p, 'utf8'); } catch (e) { content = 'error: ' + e.code; }\n"
             "  try {\n"
             "    listed = fs.readdirSync(path.dirname(path.dirname(p)))\n"
             "      .filter((d) => !process.cwd().includes(d)).length > 0;\n"
             "  } catch (e) { listed = false; }\n"
             "  return { content, listed };\n"
             "}\n"),
    "sleep_main": "async function main({ n }) {\n  await new Promise((r) => setTimeout(r, 1000));\n  return n;\n}\n",
    "connect": ("const net = require('net');\n"
                "function main({ port }) {\n"
                "  return new Promise((resolve) => {\n"
                "    const s = net.connect(port, '127.0.0.1');\n"
                "    s.setTimeout(2000, () => { s.destroy(); resolve({ connected: false, error: 'timeout' }); });\n"
                "    s.on('connect', () => { s.destroy(); resolve({ connected: true }); });\n"
                "    s.on('error', (e) => resolve({ connected: false, error: e.code }));\n"
                "  });\n"
                "}\n"),
    "hostile": ("const fs = require('fs');\n"
                "for (let fd = 3; fd < 256; fd++) {\n"
                "  try { fs.writeSync(fd, Buffer.from([255, 255, 255, 255, 65])); } catch (e) {}\n"
                "}\n"
                "fs.writeSync(1, Buffer.from([0, 0, 0, 5, 123, 125, 123]));\n"
                "try { process.kill(process.ppid, 'SIGKILL'); } catch (e) {}\n"),
}


class PythonRunnerTest(RunnerTests, unittest.TestCase):
    LANG = "python"
    SNIPPETS = PY_SNIPPETS
    # A uid of the tests' own, never 65534: other software on the host (runsc's sandboxes) runs as nobody.
    EXTRA_ARGS = ["--uid", "240000", "--gid", "65534"] if IS_ROOT else []

    @classmethod
    def runner_argv(cls):
        with open(os.path.join(RUNNERS, "python_runner.py")) as f:
            return [PYTHON, "-I", "-c", f.read()]

    @staticmethod
    def cold_start_argv():
        return [PYTHON, "-c", "print(1)"]


@unittest.skipIf(NODE is None, "node is not installed")
class NodeRunnerTest(RunnerTests, unittest.TestCase):
    LANG = "javascript"
    SNIPPETS = JS_SNIPPETS
    # Node children are separate processes with several threads each, which RLIMIT_NPROC counts per uid:
    # give every concurrent job (and warm child) its own uid, as the docs recommend for this runner.
    EXTRA_ARGS = ["--uid", "200000", "--uid-count", "16", "--gid", "65534"] if IS_ROOT else []

    @classmethod
    def runner_argv(cls):
        with open(os.path.join(RUNNERS, "node_runner.js")) as f:
            return [NODE, "-e", f.read(), "--"]

    @staticmethod
    def cold_start_argv():
        return [NODE, "-e", "console.log(1)"]


class PythonRunnerWithoutNamespacesTest(PythonRunnerTest):
    """The fallback path (no namespace permission): one fork per job, isolation by uid and process group."""

    EXTRA_ARGS = ["--no-namespaces"] + (["--uid", "200000", "--uid-count", "16"] if IS_ROOT else [])

    def test_zz_latency(self):
        self.skipTest("measured in PythonRunnerTest")


@unittest.skipIf(NODE is None, "node is not installed")
class NodeRunnerWithoutNamespacesTest(NodeRunnerTest):
    EXTRA_ARGS = NodeRunnerTest.EXTRA_ARGS + ["--no-namespaces"]

    def test_zz_latency(self):
        self.skipTest("measured in NodeRunnerTest")


class PythonRunnerPreforkTest(PythonRunnerTest):
    """Prefork mode as the shim runs it in a sandbox without network: zygote, a uid per worker, phase times."""

    EXTRA_ARGS = ((["--uid", "210000", "--uid-count", "16"] if IS_ROOT else []) +
                  ["--job-mode", "prefork", "--prefork", "2", "--max-jobs", "8", "--sandbox-network", "none",
                   "--phase-times"])

    def test_ready_reports_mode_and_network(self):
        self.assertEqual(self.iso["mode"], "prefork")
        self.assertEqual(self.iso["sandbox_network"], "none")
        self.assertTrue(self.iso["network_isolated"])

    def test_network_off_by_default(self):
        # With --sandbox-network none the runner makes no namespace: isolation is the sandbox's own
        # (runsc --network=none). On the host that means a job reaches 127.0.0.1, which is the point.
        res = self.runner.run(self.snippet("main_sum"), args={"a": 1, "b": 2})
        self.assertStatus(res, "success")
        self.assertFalse(res["isolation"]["net_ns"])
        self.assertTrue(res["isolation"]["network_isolated"])

    def test_phase_times(self):
        res = self.runner.run(self.snippet("main_sum"), args={"a": 1, "b": 2})
        self.assertStatus(res, "success")
        ph = res["phases"]
        for name in ("handoff", "w_got_job", "w_setup", "code_done", "end", "sent", "total", "prefork_fork"):
            self.assertIn(name, ph)
        self.assertGreaterEqual(ph["total"], ph["code_done"])

    def test_each_job_gets_fresh_random_state(self):
        code = "import random\ndef main():\n    return random.random()\n"
        a = self.runner.run(code)
        b = self.runner.run(code)
        self.assertStatus(a, "success")
        self.assertNotEqual(a["result_json"], b["result_json"], "workers must not share the zygote's seed")

    def test_escaped_daemon_killed_before_result(self):
        if not IS_ROOT:
            self.skipTest("needs a uid per worker (root)")
        marker = "gvx-daemon-" + uuid.uuid4().hex
        res = self.runner.run(daemon_snippet(marker, "def main():\n    _start_daemon()\n    return 'daemon started'\n"))
        self.assertStatus(res, "success")
        # The worker kills every other process of its uid before it reports its end.
        self.assertEqual(wait_gone(marker), [])
        # The uid is reused only when nothing of it is left: many more jobs than uids still run.
        for _ in range(20):
            self.assertStatus(self.runner.run(self.snippet("script_print")), "success")

    def test_leftovers_of_a_killed_job_swept_without_further_jobs(self):
        # A job killed on its wall clock never reaches its worker's own kill(-1); a daemon it started in its own
        # session escapes the group kill. The released uid is checked (and swept) at once, not with a later batch
        # of released uids: no other job runs here, yet the daemon must go.
        if not IS_ROOT:
            self.skipTest("needs a uid per worker (root)")
        marker = "gvx-killed-" + uuid.uuid4().hex
        res = self.runner.run(daemon_snippet(marker, "_start_daemon()\nwhile True:\n    pass\n"),
                              limits={"wall_timeout_ms": 1000})
        self.assertStatus(res, "timeout")
        self.assertEqual(wait_gone(marker, limit=10.0), [])

    def test_job_directories_removed(self):
        # The runner removes an untouched job directory with two rmdir calls and anything else with an
        # fd-based walk: files, nested directories, a missing artifacts/, symlinks to outside (not followed).
        outside = tempfile.mkdtemp(prefix="gvx-outside-", dir=self.runner.tmp_base)
        os.chmod(outside, 0o755)
        with open(os.path.join(outside, "keep"), "w") as f:
            f.write("keep")
        codes = [
            "import os\ndef main():\n    return os.getcwd()\n",
            ("import os\ndef main():\n    os.makedirs('a/b/c')\n    open('a/b/c/f', 'w').write('x')\n"
             "    open('artifacts/out', 'w').write('y')\n    os.symlink(%r, 'link')\n"
             "    os.symlink(%r, 'artifacts/link')\n    return os.getcwd()\n") % (outside, outside),
            "import os\ndef main():\n    os.rmdir('artifacts')\n    return os.getcwd()\n",
            "import os\ndef main():\n    os.rmdir('artifacts')\n    os.symlink(%r, 'artifacts')\n    return os.getcwd()\n"
            % outside,
        ]
        dirs = []
        for code in codes:
            res = self.runner.run(code)
            self.assertStatus(res, "success")
            dirs.append(json.loads(res["result_json"]))
        deadline = time.monotonic() + 10
        while any(os.path.lexists(d) for d in dirs) and time.monotonic() < deadline:
            self.runner.run(self.snippet("script_print"))  # housekeeping runs when the loop is idle
            time.sleep(0.05)
        self.assertEqual([d for d in dirs if os.path.lexists(d)], [])
        self.assertEqual(sorted(os.listdir(outside)), ["keep"], "a symlink's target must not be touched")
        shutil.rmtree(outside)

    def test_job_killing_itself_still_gets_a_result(self):
        res = self.runner.run("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
        self.assertStatus(res, "program_error")
        self.assertEqual(res["signal"], 9)

    def test_main_calling_convention(self):
        # main(**args) when main's signature takes those keywords, else main(args) (read off the code object
        # for plain functions, inspect.signature for anything else).
        cases = [
            ("def main(a, b=5):\n    return [a, b]\n", {"a": 1}, [1, 5]),
            ("def main(a, *, b):\n    return [a, b]\n", {"a": 1, "b": 2}, [1, 2]),
            ("def main(args):\n    return sorted(args)\n", {"x": 1, "y": 2}, ["x", "y"]),
            ("def main(a, **kw):\n    return [a, sorted(kw)]\n", {"a": 1, "z": 2}, [1, ["z"]]),
            ("def main(*args):\n    return len(args)\n", {"a": 1}, 1),
            ("import functools\n@functools.lru_cache\ndef main(a, b):\n    return a - b\n", {"a": 5, "b": 2}, 3),
            ("class M:\n    def __call__(self, a, b):\n        return a * b\nmain = M()\n", {"a": 3, "b": 4}, 12),
        ]
        for code, args, want in cases:
            res = self.runner.run(code, args=args)
            self.assertStatus(res, "success")
            self.assertEqual(json.loads(res["result_json"]), want, code)
        res = self.runner.run("def main(a, /, b):\n    return 1\n", args={"a": 1, "b": 2})
        self.assertStatus(res, "program_error")  # positional-only a: main(args) is tried, and fails

    def test_zygote_lost_then_jobs_still_run(self):
        runner_pid = self.runner.ready["pid"]
        zygotes = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open("/proc/%s/stat" % entry) as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == runner_pid and fields[0] != "Z":
                    zygotes.append(int(entry))
        self.assertTrue(zygotes)
        os.kill(zygotes[0], signal.SIGKILL)
        # Once reaped (gone from /proc) the runner has dropped that zygote's workers; a job handed to one of
        # them just before would end as internal_error ("worker was lost").
        deadline = time.monotonic() + 10
        while os.path.exists("/proc/%d" % zygotes[0]) and time.monotonic() < deadline:
            time.sleep(0.01)
        for i in range(6):
            res = self.runner.run(self.snippet("main_sum"), args={"a": i, "b": 1})
            self.assertStatus(res, "success")

    def test_zz_latency(self):
        self.skipTest("measured in gVisor by tests/bench/runners_in_gvisor.sh")


class PythonRunnerPreforkNetnsTest(PythonRunnerTest):
    """Prefork mode when the sandbox has a network: default workers get their own network namespace."""

    EXTRA_ARGS = ["--uid", "220000", "--uid-count", "16", "--job-mode", "prefork", "--prefork", "2"]

    @classmethod
    def setUpClass(cls):
        if not IS_ROOT:
            raise unittest.SkipTest("network namespaces need root")
        super().setUpClass()

    def test_zz_latency(self):
        self.skipTest("measured in gVisor by tests/bench/runners_in_gvisor.sh")


@unittest.skipIf(NODE is None, "node is not installed")
class NodeRunnerUidModeTest(NodeRunnerTest):
    """Node without pid namespaces (a uid per child) and without network namespaces (sandbox offline)."""

    EXTRA_ARGS = NodeRunnerTest.EXTRA_ARGS + ["--sandbox-network", "none", "--phase-times", "--pool-size", "2"]

    def test_ready_reports_mode(self):
        if IS_ROOT:
            self.assertEqual(self.iso["mode"], "uid")
        self.assertTrue(self.iso["network_isolated"])

    def test_network_off_by_default(self):
        res = self.runner.run(self.snippet("main_sum"), args={"a": 1, "b": 2})
        self.assertStatus(res, "success")
        self.assertFalse(res["isolation"]["net_ns"])

    def test_phase_times(self):
        res = self.runner.run(self.snippet("main_sum"), args={"a": 1, "b": 2})
        self.assertStatus(res, "success")
        self.assertIn("total", res["phases"])
        self.assertIn("c_done", res["phases"])

    def test_zz_latency(self):
        self.skipTest("measured in gVisor by tests/bench/runners_in_gvisor.sh")


class RunnerDeathTest(unittest.TestCase):
    """If the runner itself dies, its jobs die with it (the shim then starts a new runner)."""

    def test_jobs_die_with_the_python_runner(self):
        self._jobs_die_with_runner(["--uid", "250000"] if IS_ROOT else [])

    def test_jobs_die_with_the_python_runner_prefork(self):
        self._jobs_die_with_runner(["--job-mode", "prefork", "--sandbox-network", "none"] +
                                   (["--uid", "230000", "--uid-count", "16"] if IS_ROOT else []))

    def _jobs_die_with_runner(self, extra):
        tmp = tempfile.mkdtemp(prefix="gvx-")
        try:
            with open(os.path.join(RUNNERS, "python_runner.py")) as f:
                r = RunnerProcess([PYTHON, "-I", "-c", f.read(), "--tmp-base", tmp] + extra, tmp)
            marker = "gvx-orphan-" + uuid.uuid4().hex
            jid = r.submit("import os, sys, time\n"
                           "print('up', flush=True)\n"
                           "os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', '%s'])\n"
                           % marker, stream=True)
            self.assertEqual(r.next_frame(jid)["type"], "output")
            deadline = time.monotonic() + 10
            while not processes_with_marker(marker) and time.monotonic() < deadline:
                time.sleep(0.02)  # polling for the exec, bounded
            self.assertTrue(processes_with_marker(marker), "job did not start its long-running process")
            r.proc.kill()
            r.proc.wait()
            for f in (r.proc.stdin, r.proc.stdout, r.proc.stderr):
                f.close()
            deadline = time.monotonic() + 10
            while processes_with_marker(marker) and time.monotonic() < deadline:
                time.sleep(0.02)
            self.assertEqual(processes_with_marker(marker), [])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@unittest.skipUnless(IS_ROOT, "needs root (uid pools)")
class RunnerStartSweepTest(unittest.TestCase):
    """A runner that starts finds processes left under its pool's uids (by a runner killed during a job) and
    kills them before it uses those uids."""

    def test_python_prefork_runner_sweeps_its_uids_at_start(self):
        with open(os.path.join(RUNNERS, "python_runner.py")) as f:
            src = f.read()
        self._sweeps_at_start(260000, lambda tmp: [PYTHON, "-I", "-c", src, "--tmp-base", tmp, "--job-mode",
                                                   "prefork", "--prefork", "2", "--sandbox-network", "none"])

    @unittest.skipUnless(NODE, "needs node")
    def test_node_runner_sweeps_its_uids_at_start(self):
        with open(os.path.join(RUNNERS, "node_runner.js")) as f:
            src = f.read()
        self._sweeps_at_start(270000, lambda tmp: [NODE, "-e", src, "--", "--tmp-base", tmp, "--pool-size", "2"])

    def _sweeps_at_start(self, base, argv):
        tmp = tempfile.mkdtemp(prefix="gvx-")
        os.chmod(tmp, 0o711)
        marker = "gvx-leftover-" + uuid.uuid4().hex
        leftover = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(120)", marker], user=base + 3,
                                    group=65534, stdin=subprocess.DEVNULL)
        r = None
        try:
            deadline = time.monotonic() + 10
            while not processes_with_marker(marker) and time.monotonic() < deadline:
                time.sleep(0.02)
            self.assertTrue(processes_with_marker(marker), "the leftover process did not start")
            r = RunnerProcess(argv(tmp) + ["--uid", str(base), "--uid-count", "8", "--gid", "65534"], tmp)
            deadline = time.monotonic() + 15
            while leftover.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            self.assertIsNotNone(leftover.poll(), "the process under a pool uid survived the runner's start")
            res = r.run("print('fresh')" if "python" in argv(tmp)[0] else "console.log('fresh')")
            self.assertEqual(res["stdout"], b"fresh\n")
        finally:
            if leftover.poll() is None:
                leftover.kill()
            leftover.wait()
            if r is not None:
                r.close()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    prog = unittest.main(verbosity=2, exit=False)
    r = prog.result
    failed = len(r.failures) + len(r.errors) + len(r.unexpectedSuccesses)
    print("%d passed, %d failed, %d skipped" % (r.testsRun - failed - len(r.skipped), failed, len(r.skipped)))
    sys.exit(1 if failed else 0)
