"""Tests of the Execute runners' lifecycle (shim/execute/sandbox), run like test_runners.py (same variables):
what a job can find in a pre-forked worker's memory, the weak-isolation fallback and its refusal, and jobs that
must die with their runner."""

import json
import os
import shutil
import sys
import tempfile
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HELPERS, IS_ROOT, JS_RUNNER, NODE, PY_RUNNER, PYTHON, RunnerProcess,  # noqa: E402
                     common_args, node_argv, processes_with_marker, python_argv, run_tests, wait_gone)


# Finds every "gvx-secret-<32 hex>" in the snippet's own process: in the Python objects it can reach (after
# gc.unfreeze, the zygote's frozen objects too) and in its raw memory (made readable with PR_SET_DUMPABLE
# through the runner's own extension module, which a snippet can use as well as the runner).
PY_MEMORY_SPY = r'''
import gc, re, sys
def main():
    pat = re.compile(rb"gvx-secret-[0-9a-f]{32}")
    seen = set()
    gc.unfreeze()
    for o in gc.get_objects():
        if isinstance(o, dict):
            for v in list(o.values()):
                if isinstance(v, (str, bytes, bytearray)):
                    b = v.encode("utf-8", "replace") if isinstance(v, str) else bytes(v)
                    seen.update(m.decode() for m in pat.findall(b))
    sys.modules["gvshim_native"].prctl(4, 1)
    with open("/proc/self/maps") as f:
        maps = [l.split() for l in f]
    with open("/proc/self/mem", "rb", buffering=0) as mem:
        for m in maps:
            if m[1].startswith("rw"):
                lo, hi = (int(x, 16) for x in m[0].split("-"))
                try:
                    mem.seek(lo)
                    seen.update(x.decode() for x in pat.findall(mem.read(hi - lo)))
                except (OSError, OverflowError, ValueError):
                    pass
    return sorted(seen)
'''


class PythonWorkerMemoryTest(unittest.TestCase):
    """A worker is a copy of its zygote's memory: no zygote may be forked from a runner that has seen a job,
    or every later snippet in its workers can read that job's code, environment, stdin and output."""

    def setUp(self):
        if not IS_ROOT:
            self.skipTest("the runners need root")
        if not (PY_RUNNER and JS_RUNNER and HELPERS):
            self.skipTest("GVSHIM_PY_RUNNER, GVSHIM_JS_RUNNER and GVSHIM_HELPERS_DIR are not set")

    def test_later_snippets_cannot_read_an_earlier_job(self):
        tmp = tempfile.mkdtemp(prefix="gvx-")
        ws = tempfile.mkdtemp(prefix="gvx-ws-", dir="/run")
        try:
            # Two zygotes: the second is started after the first job (end of warm-up).
            r = RunnerProcess(python_argv() + common_args(300000, ws, tmp) + ["--prefork", "2", "--zygotes", "2"])
            try:
                secret = "gvx-secret-" + uuid.uuid4().hex
                res = r.run("print(%r)\n" % secret, env={"GVX_SECRET": secret}, stdin=secret.encode())
                self.assertEqual(res["status"], "success", res)
                seen = []
                for _ in range(3):  # concurrent jobs use workers of both zygotes
                    for jid in [r.submit(PY_MEMORY_SPY) for _ in range(4)]:
                        res = r.wait(jid)
                        self.assertEqual(res["status"], "success", res)
                        seen += json.loads(res["result_json"])
                self.assertNotIn(secret, seen, "a later snippet read the first job's data")
                # The spy can see what it looks for: a job's own secret is found in its own memory.
                own = "gvx-secret-" + uuid.uuid4().hex
                res = r.run(PY_MEMORY_SPY, env={"GVX_SECRET": own})
                self.assertIn(own, json.loads(res["result_json"]))
            finally:
                self.assertEqual(r.close(), 0)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            os.rmdir(ws)


class WeakIsolationTest(unittest.TestCase):
    """A sandbox that cannot give snippets private mounts (simulated: the working directory's mount point is
    missing, so the probe's isolated set-up fails). Without --allow-weak-isolation every job is rejected,
    naming what is missing; with it, jobs run in a directory of their own."""

    def setUp(self):
        if not IS_ROOT:
            self.skipTest("the runners need root")
        if not (PY_RUNNER and JS_RUNNER and HELPERS):
            self.skipTest("GVSHIM_PY_RUNNER, GVSHIM_JS_RUNNER and GVSHIM_HELPERS_DIR are not set")
        self.tmp = tempfile.mkdtemp(prefix="gvx-weak-")
        os.chmod(self.tmp, 0o755)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_weak(self, argv, uid, allow, code):
        args = common_args(uid, "/nonexistent-gvshim-workspace", self.tmp)
        r = RunnerProcess(argv + args + (["--allow-weak-isolation"] if allow else []))
        try:
            iso = r.ready["isolation"]
            self.assertFalse(iso["complete"])
            self.assertEqual(iso["mode"], "weak")
            self.assertIn("proc", iso["missing"])
            return r.run(code)
        finally:
            self.assertEqual(r.close(), 0)

    def test_python(self):
        res = self.run_weak(python_argv(), 260000, False, "print('ran')")
        self.assertEqual(res["status"], "rejected")
        self.assertIn("missing: ", res["error"])
        res = self.run_weak(python_argv(), 260000, True, "import os\nprint(os.getuid() >= 260000)")
        self.assertEqual(res["status"], "success", res)
        self.assertEqual(res["stdout"], b"True\n")
        self.assertEqual(os.listdir(self.tmp), [], "weak-mode job directories are removed")

    @unittest.skipIf(NODE is None, "node is not installed")
    def test_node(self):
        res = self.run_weak(node_argv(), 270000, False, "console.log('ran')")
        self.assertEqual(res["status"], "rejected")
        res = self.run_weak(node_argv(), 270000, True, "console.log(process.getuid() >= 270000)")
        self.assertEqual(res["status"], "success", res)
        self.assertEqual(res["stdout"], b"true\n")


class RunnerDeathTest(unittest.TestCase):
    """If the runner itself dies, its jobs die with it (the server then starts a new runner)."""

    def setUp(self):
        if not IS_ROOT:
            self.skipTest("the runners need root")
        if not (PY_RUNNER and JS_RUNNER and HELPERS):
            self.skipTest("GVSHIM_PY_RUNNER, GVSHIM_JS_RUNNER and GVSHIM_HELPERS_DIR are not set")

    def test_jobs_die_with_the_python_runner(self):
        self._jobs_die_with_runner(python_argv(), 280000, PYTHON,
                                   "import os, sys\nprint('up', flush=True)\n"
                                   "os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', '%s'])\n")

    def test_jobs_die_with_the_python_runner_after_clearing_their_death_signal(self):
        # The snippet clears its own parent-death signal through the runner's extension module (in sys.modules):
        # its zygote must still kill it when the runner dies.
        self._jobs_die_with_runner(python_argv(), 280000, PYTHON,
                                   "import os, sys\nsys.modules['gvshim_native'].prctl(1, 0)\n"
                                   "print('up', flush=True)\n"
                                   "os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', '%s'])\n")

    @unittest.skipIf(NODE is None, "node is not installed")
    def test_jobs_die_with_the_node_runner(self):
        self._jobs_die_with_runner(node_argv(), 290000, NODE,
                                   "console.log('up');\nrequire('child_process').spawn(process.execPath, "
                                   "['-e', 'setInterval(() => {}, 1000)', '%s'], { stdio: 'ignore' });\n"
                                   "setInterval(() => {}, 1000);\n")

    def _jobs_die_with_runner(self, argv, uid, _interp, code):
        tmp = tempfile.mkdtemp(prefix="gvx-")
        ws = tempfile.mkdtemp(prefix="gvx-ws-", dir="/run")
        try:
            r = RunnerProcess(argv + common_args(uid, ws, tmp))
            marker = "gvx-orphan-" + uuid.uuid4().hex
            jid = r.submit(code % marker, stream=True)
            self.assertEqual(r.next_frame(jid)["type"], "output")
            deadline = time.monotonic() + 10
            while not processes_with_marker(marker) and time.monotonic() < deadline:
                time.sleep(0.02)  # polling for the exec, bounded
            self.assertTrue(processes_with_marker(marker), "job did not start its long-running process")
            r.proc.kill()
            r.proc.wait()
            for f in (r.proc.stdin, r.proc.stdout, r.proc.stderr):
                f.close()
            self.assertEqual(wait_gone(marker, 10.0), [])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            os.rmdir(ws)


if __name__ == "__main__":
    run_tests()
