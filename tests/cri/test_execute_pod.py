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
