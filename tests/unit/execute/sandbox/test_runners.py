"""Tests of the Execute runners (shim/execute/sandbox) through their frame protocol.

Run by ctest (it sets GVSHIM_PY_RUNNER, GVSHIM_JS_RUNNER and GVSHIM_HELPERS_DIR to this build's bundled runners
and in-sandbox helpers), or by hand:
  GVSHIM_PY_RUNNER=build/shim/execute/python_runner.py GVSHIM_JS_RUNNER=build/shim/execute/node_runner.js \\
  GVSHIM_HELPERS_DIR=build/shim/main/gvshim-helpers /usr/bin/python3 tests/unit/execute/sandbox/test_runners.py
Each runner is started on the host exactly as the Execute server starts it in the sandbox (`python3 -I -c
<bundle>`, `node -e <bundle> --`) and driven over its stdin/stdout. It needs root (namespaces, mounts,
setuid): on the host as in gVisor 0.0~20240729, each snippet is pid 1 of its own pid namespace with a private
/proc and private tmpfs on /tmp, /var/tmp, /dev/shm and its working directory (here a directory under /run,
since a snippet's /tmp hides whatever is below the host's /tmp). Latency figures are printed, not asserted.
"""

import base64
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HELPERS, IS_ROOT, JS_RUNNER, MAX_FRAME, NODE, PY_RUNNER, RESULT_TIMEOUT,  # noqa: E402
                     RunnerProcess, children_of, common_args, daemon_snippet, node_argv,
                     pipe_bytes, processes_with_marker, python_argv, run_tests, wait_gone)
from snippets import JS_SNIPPETS, PY_SNIPPETS  # noqa: E402

class RunnerTests:
    """Scenarios shared by both runners; subclasses supply the snippets (SNIPPETS) and how to start."""

    LANG = None
    SNIPPETS = {}
    UID = 0
    EXTRA_ARGS = []

    @classmethod
    def runner_argv(cls):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        if not IS_ROOT:
            raise unittest.SkipTest("the runners need root (namespaces, mounts, setuid)")
        if not (PY_RUNNER and JS_RUNNER and HELPERS):
            raise unittest.SkipTest("GVSHIM_PY_RUNNER, GVSHIM_JS_RUNNER and GVSHIM_HELPERS_DIR are not set")
        cls.tmp = tempfile.mkdtemp(prefix="gvx-")
        os.chmod(cls.tmp, 0o755)
        cls.ws = tempfile.mkdtemp(prefix="gvx-ws-", dir="/run")
        cls.runner = RunnerProcess(cls.runner_argv() + common_args(cls.UID, cls.ws, cls.tmp) + cls.EXTRA_ARGS)
        cls.iso = cls.runner.ready["isolation"]
        print("\n[%s] ready: %s" % (cls.LANG, json.dumps(cls.iso)), file=sys.stderr)

    @classmethod
    def tearDownClass(cls):
        rc = cls.runner.close()
        leftovers = os.listdir(cls.tmp) + os.listdir(cls.ws)
        shutil.rmtree(cls.tmp, ignore_errors=True)
        os.rmdir(cls.ws)
        assert rc == 0, "runner exited with %r; stderr: %s" % (rc, "".join(cls.runner.stderr_lines[-20:]))
        assert not leftovers, "runner left %r behind" % leftovers

    def snippet(self, name):
        return self.SNIPPETS[name]

    def assertStatus(self, res, status):
        self.assertEqual(res["status"], status,
                         "status %s (error %r)\nstdout: %r\nstderr: %r" % (res["status"], res.get("error"),
                                                                          res["stdout"][:2000], res["stderr"][:2000]))

    # --- isolation --------------------------------------------------------------------------------------
    def test_ready_reports_complete_isolation(self):
        self.assertTrue(self.iso["complete"], self.iso)
        self.assertEqual(self.iso["missing"], [])
        self.assertEqual(self.iso["mode"], "isolated")

    def test_a_snippet_sees_only_its_own_processes_and_fresh_mounts(self):
        res = self.runner.run(self.snippet("look"))
        self.assertStatus(res, "success")
        seen = json.loads(res["result_json"])
        self.assertEqual(seen["self"], 1, "the snippet is pid 1 of its own pid namespace")
        self.assertEqual(seen["pids"], [1], "nothing but itself in its /proc: %r" % seen["pids"])
        self.assertGreaterEqual(seen["uid"], self.UID)
        # No supplementary groups (Node's getgroups() also lists the effective gid, which equals the uid here).
        self.assertTrue(set(seen["groups"]) <= {self.UID}, seen["groups"])
        self.assertEqual(seen["umask"], 0o77)
        self.assertEqual(seen["cwd"], self.ws)
        self.assertEqual(seen["cwd_files"], ["artifacts"])
        for d, files in seen["tmp"].items():
            self.assertEqual(files, [], "%s is not empty: %r" % (d, files))

    def test_nothing_a_snippet_writes_is_seen_by_the_next(self):
        self.assertStatus(self.runner.run(self.snippet("leave")), "success")
        for _ in range(3):  # whichever worker (or child) takes the next job
            res = self.runner.run(self.snippet("find"))
            self.assertStatus(res, "success")
            self.assertEqual(json.loads(res["result_json"]), [])
        self.assertEqual(os.listdir(self.ws), [], "the host's directory under the snippets' mounts stays empty")

    def test_concurrent_snippets_cannot_see_each_other(self):
        a = self.runner.submit(self.snippet("hold_pid"), stream=True, limits={"wall_timeout_ms": 30000})
        frame = self.runner.next_frame(a)
        self.assertEqual(frame["type"], "output")
        self.assertEqual(base64.b64decode(frame["data"]).strip(), b"1")
        b = self.runner.run(self.snippet("look"))
        self.assertStatus(b, "success")
        seen = json.loads(b["result_json"])
        self.assertEqual(seen["pids"], [1])
        self.assertEqual(seen["tmp"]["/tmp"], [], "the other snippet's /tmp file is not visible")
        self.runner.send({"type": "cancel", "id": a})
        self.assertEqual(self.runner.wait(a)["error"], "cancelled")

    def test_the_runner_is_not_visible_to_a_snippet(self):
        code = self.snippet("peek")
        res = self.runner.run(code, args={"path": "/proc/%d/environ" % self.runner.ready["pid"]})
        self.assertStatus(res, "success")
        self.assertTrue(json.loads(res["result_json"])["content"].startswith("error"))

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

    def test_result_too_large_for_a_frame(self):
        # A limit the server allows (max output_bytes is 64 MiB), output that base64 makes larger than a frame may
        # be: the server would kill the runner on such a frame, and every job running in it.
        res = self.runner.run(self.snippet("big_output"), limits={"output_bytes": 56 << 20})
        self.assertStatus(res, "internal_error")
        self.assertIn("frame", res["error"])
        self.assertLessEqual(self.runner.largest_frame, MAX_FRAME)
        self.assertEqual(self.runner.ping()["type"], "pong")

    def test_records_flood_does_not_tie_up_the_runner(self):
        # The runner is one thread (Python) or one event loop (Node) for every job: what a job's records cost it
        # must grow with their size, not with their size times the number of reads (a rescan of all of them).
        def cpu_seconds():
            with open("/proc/%d/stat" % self.runner.proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        before = cpu_seconds()
        res = self.runner.run(self.snippet("records_flood"), limits={"wall_timeout_ms": 120000})
        used = cpu_seconds() - before
        self.assertStatus(res, "success")
        # A rescan of every record at each read costs tens of seconds here; one pass well under 3 s even when
        # the machine is loaded (CPU time, not wall time).
        self.assertLess(used, 3.0, "the runner spent %.2f s of CPU on one job's 110 MB of records" % used)

    def test_no_lone_surrogates_in_frames(self):
        # JSON that Python and Node accept but the server's parser does not (a lone UTF-16 surrogate escape):
        # the server would kill the runner on such a frame, and every job running in it.
        res = self.runner.run(self.snippet("lone_surrogates"))
        self.assertStatus(res, "success")
        self.assertEqual(self.runner.invalid_frames, [])
        self.assertEqual(self.runner.ping()["type"], "pong")

    def test_fork_bomb_contained(self):
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
        # When the job's pid 1 ends, the kernel kills its namespace; it leaves /proc asynchronously.
        self.assertEqual(wait_gone(marker), [])

    def test_jobs_do_not_see_each_others_files(self):
        a = self.runner.submit(self.snippet("hold_secret"), stream=True, limits={"wall_timeout_ms": 30000})
        frame = self.runner.next_frame(a)
        self.assertEqual(frame["type"], "output")
        secret_path = base64.b64decode(frame["data"]).decode().strip()
        self.assertTrue(secret_path.endswith("secret.txt"), secret_path)
        b = self.runner.run(self.snippet("peek"), args={"path": secret_path})
        self.assertStatus(b, "success")
        seen = json.loads(b["result_json"])
        self.assertNotEqual(seen["content"], "top-secret")
        self.runner.send({"type": "cancel", "id": a})
        res_a = self.runner.wait(a)
        self.assertEqual(res_a["error"], "cancelled")

    def test_concurrent_jobs(self):
        # Four jobs that each sleep 3 s run at the same time: every one starts before any one ends (a runner
        # that ran them one after another could not give that, however fast or loaded the machine).
        ids = [self.runner.submit(self.snippet("overlap_main"), args={"n": i}) for i in range(4)]
        results = [self.runner.wait(j) for j in ids]
        spans = []
        for i, r in enumerate(results):
            self.assertStatus(r, "success")
            n, start, end = json.loads(r["result_json"])
            self.assertEqual(n, i)
            spans.append((start, end))
        self.assertLess(max(s for s, _ in spans), min(e for _, e in spans), "jobs did not overlap: %s" % spans)

    def test_network_off_by_default(self):
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
        for _ in range(30):
            t0 = time.monotonic()
            res = self.runner.run(self.snippet("main_sum"), args={"a": 1, "b": 2})
            samples.append((time.monotonic() - t0) * 1000)
            self.assertStatus(res, "success")
        print("\n[%s] per-job round trip on the host over 30 runs: median %.1f ms (in gVisor: "
              "tests/bench/runners_in_gvisor.sh)" % (self.LANG, statistics.median(samples)), file=sys.stderr)


class PythonRunnerTest(RunnerTests, unittest.TestCase):
    LANG = "python"
    SNIPPETS = PY_SNIPPETS
    UID = 240000
    EXTRA_ARGS = ["--prefork", "2"]

    @classmethod
    def runner_argv(cls):
        return python_argv()

    def test_forged_records_cannot_make_a_frame_too_large(self):
        # A snippet may lie on its records channel, but not so that its result frame grows past the frame limit
        # (as it did when the runner escaped each non-ASCII character: 4 bytes of UTF-8 became 12).
        code = ("import os\n"
                "rec = ('{\"kind\":\"result\",\"json\":\"' + '\\U0001f600' * 6270000 + '\"}\\n').encode()\n"
                "view = memoryview(rec)\n"
                "while view:\n"
                "    view = view[os.write(3, view):]\n")
        res = self.runner.run(code, limits={"wall_timeout_ms": 30000})
        self.assertLessEqual(self.runner.largest_frame, MAX_FRAME)
        self.assertEqual(self.runner.ping()["type"], "pong")
        self.assertStatus(self.runner.run(self.snippet("script_print")), "success")
        self.assertIn(res["status"], ("success", "internal_error"))  # its lie, or too large to carry

    def test_each_job_gets_fresh_random_state(self):
        code = "import random\ndef main():\n    return random.random()\n"
        a = self.runner.run(code)
        b = self.runner.run(code)
        self.assertStatus(a, "success")
        self.assertNotEqual(a["result_json"], b["result_json"], "workers must not share the zygote's seed")

    def test_escaped_daemon_killed_before_result(self):
        marker = "gvx-daemon-" + uuid.uuid4().hex
        res = self.runner.run(daemon_snippet(marker, "def main():\n    _start_daemon()\n    return 'daemon started'\n"))
        self.assertStatus(res, "success")
        self.assertEqual(wait_gone(marker), [])

    def test_daemon_of_a_killed_job_dies_with_it(self):
        marker = "gvx-killed-" + uuid.uuid4().hex
        res = self.runner.run(daemon_snippet(marker, "_start_daemon()\nwhile True:\n    pass\n"),
                              limits={"wall_timeout_ms": 1000})
        self.assertStatus(res, "timeout")
        self.assertEqual(wait_gone(marker, limit=10.0), [])

    def test_job_killing_itself_still_gets_a_result(self):
        res = self.runner.run("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
        self.assertIn(res["status"], ("program_error", "success"))  # pid 1 cannot kill itself with SIGKILL

    def test_main_calling_convention(self):
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
        # The runner's child is the process the zygotes are forked from; the zygotes are its children.
        parents = children_of(self.runner.ready["pid"])
        self.assertEqual(len(parents), 1, parents)
        zygotes = children_of(parents[0])
        self.assertTrue(zygotes)
        os.kill(zygotes[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while os.path.exists("/proc/%d" % zygotes[0]) and time.monotonic() < deadline:
            time.sleep(0.01)
        for i in range(6):
            res = self.runner.run(self.snippet("main_sum"), args={"a": i, "b": 1})
            self.assertStatus(res, "success")

    def test_a_job_its_worker_never_read_survives_the_zygote(self):
        # The job is in an idle worker's job pipe, but the worker is stopped and has not read it, when its zygote
        # (and with it the worker) dies: the job never started, so it must run on another worker, not end as
        # internal_error ("worker lost").
        parents = children_of(self.runner.ready["pid"])
        self.assertEqual(len(parents), 1, parents)
        zygotes = children_of(parents[0])
        idle = [w for z in zygotes for w in children_of(z)]
        self.assertTrue(idle, "no idle worker")
        for w in idle:
            os.kill(w, signal.SIGSTOP)
        jid = self.runner.submit(self.snippet("main_sum"), args={"a": 2, "b": 3})
        deadline = time.monotonic() + 10
        holder = None
        while holder is None and time.monotonic() < deadline:
            holder = next((w for w in idle if pipe_bytes(w, 4) > 0), None)  # fd 4: the worker's job channel
            time.sleep(0.01)  # polling for the hand-over, bounded
        self.assertIsNotNone(holder, "the job was not handed to an idle worker")
        for z in zygotes:
            os.kill(z, signal.SIGKILL)  # its workers die with it (parent-death signal), stopped or not
        res = self.runner.wait(jid)
        self.assertStatus(res, "success")
        self.assertEqual(json.loads(res["result_json"]), {"sum": 5})

    def test_jobs_sent_before_the_runner_sees_its_zygote_die_still_run(self):
        # The runner stopped while its zygote (and with it every idle worker) dies: when it runs again, jobs that
        # arrived meanwhile may be handed to a dead worker before the runner reads the zygote's end. Such a job
        # never started; it must go to another worker, not end as internal_error.
        runner_pid = self.runner.ready["pid"]
        parents = children_of(runner_pid)
        self.assertEqual(len(parents), 1, parents)
        zygotes = children_of(parents[0])
        self.assertTrue(zygotes)
        idle = [w for z in zygotes for w in children_of(z)]
        self.assertTrue(idle, "no idle worker to lose")
        os.kill(runner_pid, signal.SIGSTOP)
        try:
            for z in zygotes:
                os.kill(z, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while any(os.path.exists("/proc/%d" % p) for p in zygotes + idle) and time.monotonic() < deadline:
                time.sleep(0.01)
            ids = [self.runner.submit(self.snippet("main_sum"), args={"a": i, "b": 1}) for i in range(2)]
        finally:
            os.kill(runner_pid, signal.SIGCONT)
        for i, jid in enumerate(ids):
            res = self.runner.wait(jid)
            self.assertStatus(res, "success")
            self.assertEqual(json.loads(res["result_json"]), {"sum": i + 1})


# Native code a snippet can load (it can write any file into its tmpfs): the process leaves its process group and
# clears its parent-death signal, so it survives its parent unless that parent kills it itself.
ESCAPE_C = """
#include <sys/prctl.h>
#include <unistd.h>
__attribute__((constructor)) static void escape(void) {
  prctl(PR_SET_PDEATHSIG, 0);
  setpgid(0, 0);
}
"""


@unittest.skipIf(NODE is None, "node is not installed")
class NodeRunnerTest(RunnerTests, unittest.TestCase):
    LANG = "javascript"
    SNIPPETS = JS_SNIPPETS
    UID = 250000
    EXTRA_ARGS = ["--pool-size", "2"]

    @classmethod
    def runner_argv(cls):
        return node_argv()

    @unittest.skipIf(shutil.which("cc") is None, "no C compiler for the native-code snippet")
    def test_native_code_does_not_outlive_its_job(self):
        d = tempfile.mkdtemp(prefix="gvx-so-")
        try:
            with open(os.path.join(d, "e.c"), "w") as f:
                f.write(ESCAPE_C)
            subprocess.run(["cc", "-shared", "-fPIC", "-o", os.path.join(d, "e.so"), os.path.join(d, "e.c")],
                           check=True)
            with open(os.path.join(d, "e.so"), "rb") as f:
                so = f.read()
        finally:
            shutil.rmtree(d)
        marker = "gvx-native-" + uuid.uuid4().hex
        code = ("const fs = require('fs');\n"
                "fs.writeFileSync('/tmp/e.so', fs.readFileSync(0));\n"
                "try { process.dlopen({ exports: {} }, '/tmp/e.so'); } catch (e) { /* not an addon: ran anyway */ }\n"
                "process.title = %r;\n"
                "console.log('escaped');\n"
                "setInterval(() => {}, 1000);\n" % marker)
        jid = self.runner.submit(code, stdin=so, stream=True, limits={"wall_timeout_ms": 3000})
        self.assertEqual(self.runner.next_frame(jid)["type"], "output")
        self.assertTrue(processes_with_marker(marker), "the snippet's process is not visible")
        self.assertStatus(self.runner.wait(jid), "timeout")
        self.assertEqual(wait_gone(marker), [], "the snippet outlived its job")


if __name__ == "__main__":
    run_tests()
