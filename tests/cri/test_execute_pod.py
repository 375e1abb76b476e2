"""`gvshim exec --pod NAMESPACE/NAME` against a CRI pod annotated dev.gvshim.execute=true: the Execute service
is found by the pod's Kubernetes namespace and name, and the snippet runs inside that pod's sandbox."""

import json
import os
import subprocess

from crilib import client as c
from crilib.runner import case

CONTAINERD = {"with_python_node": True}


def gvshim_exec(t, *args):
    cmd = [os.path.join(t.ctd.bin_dir, "gvshim"), "exec", "--dir", t.ctd.env["GVS_EXECUTE_DIR"], *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@case("gvshim_exec_by_pod_name")
def gvshim_exec_by_pod_name(t):
    pod = t.cri.run_pod("agent", namespace="tools", annotations={"dev.gvshim.execute": "true"})
    cid = pod.run_container("py", t.ctd.python_image, command=["sleep", "100000"],
                            annotations={"dev.gvshim.execute": "true"})
    t.cri.wait_container(cid, c.RUNNING)
    code = "def main(a, b):\n    import socket\n    return {'sum': a + b, 'host': socket.gethostname()}"
    r = None
    import time
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # the pod's Execute server starts with the container
        r = gvshim_exec(t, "--pod", "tools/agent", "--json", "-c", code, "--arg", "a=2", "--arg", "b=40")
        if r.returncode == 0:
            break
        time.sleep(0.5)
    assert r is not None and r.returncode == 0, f"gvshim exec --pod tools/agent: {r.returncode}: {r.stderr}"
    out = json.loads(r.stdout)
    assert out.get("status") == "success", out
    result = out.get("result")
    result = json.loads(result) if isinstance(result, str) else result
    assert result["sum"] == 42 and result["host"] == "agent", out
    # Another namespace's pod of the same name does not exist: a clear error, not someone else's pod.
    r = gvshim_exec(t, "--pod", "other/agent", "-c", "print(1)")
    assert r.returncode != 0 and "other/agent" in r.stderr, (r.returncode, r.stderr)


# Python run in a pod's container: pids whose command line or environment carries argv[1], and whether /tmp or any
# /proc/PID/root/tmp has a file named argv[2].
FIND = """import glob, os, sys
found = [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid() and any(
    sys.argv[1].encode() in open("/proc/%s/%s" % (p, f), "rb").read() for f in ("cmdline", "environ")
    if os.access("/proc/%s/%s" % (p, f), os.R_OK))]
files = [f for f in ["/tmp/" + sys.argv[2]] + glob.glob("/proc/[0-9]*/root/tmp/" + sys.argv[2]) if os.path.exists(f)]
print(len(found), len(files))"""


@case("pod_and_snippets_see_nothing_of_each_other")
def pod_and_snippets_see_nothing_of_each_other(t):
    """In a Kubernetes pod the sandbox's root container is the pause container: the pod's containers, the execute
    container and every snippet have pid namespaces of their own. While a snippet runs (with a child carrying a
    marker, and a file in its /tmp), neither the container it serves nor another container of the pod sees any of
    it; and the snippet sees neither of them (their secret is in their environment and command line)."""
    secret = "cri-pod-secret-%d" % os.getpid()
    pod = t.cri.run_pod("isolated", namespace="tools", annotations={"dev.gvshim.execute": "true"})
    py = pod.run_container("py", t.ctd.python_image, command=["sleep", "100000", secret], env={"SECRET": secret})
    app = pod.run_container("app", t.image, command=["sleep", "100000", secret], env={"SECRET": secret})
    t.cri.wait_container(py, c.RUNNING)
    t.cri.wait_container(app, c.RUNNING)
    # The probe sees what it should: the secret of the container it runs in.
    r = t.cri.exec_sync(py, ["python3", "-c", FIND, secret, "none"], timeout=60)
    assert r.exit_code == 0 and r.stdout.split()[0] != b"0", r
    marker = "held-%d" % os.getpid()
    holder = subprocess.Popen(
        [os.path.join(t.ctd.bin_dir, "gvshim"), "exec", "--dir", t.ctd.env["GVS_EXECUTE_DIR"], "--pod", "tools/isolated",
         "--timeout", "60000", "-c",
         "import subprocess, sys, time\nopen('/tmp/held-file', 'w').write('x')\n"
         "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', %r])\n"
         "print('up', flush=True)\ntime.sleep(120)\n" % marker, "--stream"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t.defer(holder.kill)
    line = holder.stdout.readline()
    assert line.strip() == "up", (line, holder.stderr.read() if holder.poll() is not None else "")
    r = t.cri.exec_sync(py, ["python3", "-c", FIND, marker, "held-file"], timeout=60)
    assert r.exit_code == 0 and r.stdout.split() == [b"0", b"0"], ("the served container", r)
    # The busybox container has no python: the same scan in sh (the marker is put together at run time, so that
    # no process of the probe itself carries it).
    half = len(marker) // 2
    scan = ('m="$0$1"; n=0; for p in /proc/[0-9]*; do c=$(tr "\\0" " " <"$p/cmdline" 2>/dev/null); '
            'case "$c" in *"$m"*) n=$((n+1));; esac; done; echo "$n"; ls /tmp')
    r = t.cri.exec_sync(app, ["sh", "-c", scan, secret[:8], secret[8:]], timeout=60)
    assert r.exit_code == 0 and r.stdout.split()[0] != b"0", ("the scan does not see the container's own secret", r)
    r = t.cri.exec_sync(app, ["sh", "-c", scan, marker[:half], marker[half:]], timeout=60)
    assert r.exit_code == 0 and r.stdout.split()[0] == b"0" and b"held-file" not in r.stdout, \
        ("another container of the pod", r)
    # And the snippet sees neither container's processes nor their secret.
    r = gvshim_exec(t, "--pod", "tools/isolated", "-c", "import sys; sys.argv = ['', %r, 'none']\n%s" % (secret, FIND))
    assert r.returncode == 0 and r.stdout.split() == ["0", "0"], (r.returncode, r.stdout, r.stderr)
