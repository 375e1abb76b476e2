"""A private containerd for the CRI suite (scripts/containerd-up.sh), with the test images imported.

    with Containerd(bin_dir) as ctd:       # started in a fresh /tmp/gvs.XXXX, stopped and removed on exit
        cri = ctd.client()
        ...
        ctd.restart()                      # stop containerd only (pods and shims keep running), start it again

`netns=NAME` runs containerd (and so the CNI plugins and every pod network) inside network namespace NAME,
which the caller created (`ip netns add`); only the network namespace changes. Nothing here touches the root namespace's addresses.
"""

import os
import pathlib
import signal
import subprocess
import tempfile
import time

from . import client as crilib_client
from . import images

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
PAUSE_IMAGE = "localhost/gvshim-test:pause"


def _read_env(path):
    out = {}
    for line in pathlib.Path(path).read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def wait_pids_gone(pids, timeout):
    deadline = time.monotonic() + timeout
    while any(pid_alive(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def process_argvs():
    """(pid, argv as a list of bytes) of every process whose command line can be read now."""
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            yield int(d.name), (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue


class Containerd:
    def __init__(self, bin_dir=None, netns=None, runsc_network=None, hardening=None, shim=None, cni_conflist=None,
                 with_python_node=False, log_level="debug"):
        self.bin_dir = str(bin_dir or REPO_ROOT / "build/shim/main")
        self.netns = netns
        self.extra_env = {"GVS_SANDBOX_IMAGE": PAUSE_IMAGE}
        if runsc_network:
            self.extra_env["GVSHIM_RUNSC_NETWORK"] = runsc_network
        if hardening:  # TOML lines for the [hardening] table of gvshim.toml
            self.extra_env["GVS_HARDENING_EXTRA"] = hardening
        if shim:  # TOML lines for its [shim] table
            self.extra_env["GVS_SHIM_EXTRA"] = shim
        if cni_conflist:
            self.extra_env["GVS_CNI_CONFLIST"] = str(cni_conflist)
        self.with_python_node = with_python_node
        self.log_level = log_level
        self.dir = None
        self.env = {}
        self.image = None
        self.python_image = None

    # ---- lifecycle ----
    def _up(self):
        cmd = ["bash", str(REPO_ROOT / "scripts/containerd-up.sh"), self.dir, "--bin-dir", self.bin_dir,
               "--log-level", self.log_level]
        if self.netns:
            # nsenter, not `ip netns exec`: that also remounts /sys, which hides the cgroup hierarchy from runsc.
            cmd = ["nsenter", f"--net=/run/netns/{self.netns}", *cmd]
        env = dict(os.environ, **self.extra_env)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"containerd-up.sh {self.dir} failed ({proc.returncode}): {proc.stderr.strip()}")
        self.env = _read_env(os.path.join(self.dir, "env"))
        self.wait_cri_ready()

    def wait_cri_ready(self, timeout=60):
        """containerd answers before its CRI plugin has initialised; wait for the CRI to answer Status."""
        import grpc
        cli = self.client(timeout=5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    st = cli.status()
                    if all(cond.status for cond in st.status.conditions if cond.type == "RuntimeReady"):
                        return
                except grpc.RpcError as e:
                    last = e.details()
                else:
                    last = str(st.status)
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"the CRI of {self.dir} is not ready after {timeout}s: {last}")
                time.sleep(0.1)
        finally:
            cli.close()

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="gvs.", dir="/tmp")
        try:
            self._up()
            out = str(REPO_ROOT / "build/image")
            self.image = images.import_busybox(self.sock, out)
            if self.with_python_node:
                self.python_image = images.import_busybox(self.sock, out, with_python_node=True)
            images.import_pause(self.sock, out, PAUSE_IMAGE)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, keep_dir=False):
        if not self.dir:
            return
        cmd = ["bash", str(REPO_ROOT / "scripts/containerd-down.sh"), self.dir]
        if keep_dir:
            cmd.append("--keep-dir")
        subprocess.run(cmd, capture_output=True, timeout=180)
        self.dir = None

    def stop_containerd_only(self):
        """Stops containerd (SIGTERM, by pid) and leaves its shims and pods running."""
        pid = self.containerd_pid
        os.kill(pid, signal.SIGTERM)
        if not wait_pids_gone([pid], 30):
            os.kill(pid, signal.SIGKILL)
            wait_pids_gone([pid], 10)

    def restart_containerd(self):
        """Starts containerd again on the same dir and config (after stop_containerd_only)."""
        self._up()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop(keep_dir=os.environ.get("CRI_KEEP") == "1")

    # ---- facts ----
    @property
    def sock(self):
        return self.env["GVS_SOCK"]

    @property
    def containerd_pid(self):
        return int(pathlib.Path(self.env["GVS_PID"]).read_text())

    @property
    def runsc(self):
        return self.env["GVS_RUNSC"]

    def runsc_root(self, runtime="gvisor"):
        """runsc --root holding the CRI's containers for `runtime` (containerd namespace k8s.io)."""
        base = self.env["GVS_RUNSC_ROOT"] if runtime == "gvisor" else self.env["GVS_RUNC_ROOT"]
        return os.path.join(base, images.CRI_NAMESPACE)

    def client(self, timeout=60.0):
        return crilib_client.Client(self.sock, timeout=timeout)

    def log_tail(self, lines=60):
        try:
            text = pathlib.Path(self.env["GVS_LOG"]).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ---- probes ----
    def shim_pids(self):
        """Pids of gvshim shims started by this containerd (argv: -address <our socket>)."""
        out = []
        for pid, argv in process_argvs():
            if self.sock.encode() not in argv:
                continue
            if any(a.endswith(b"containerd-shim-gvisor-v1") for a in argv[:1]) and (
                    b"-address" in argv or b"--address" in argv):
                out.append(pid)
        return sorted(out)

    def runsc_list(self, runtime="gvisor"):
        """runsc's container ids under the CRI namespace root (empty if the root does not exist yet)."""
        root = self.runsc_root(runtime)
        if not os.path.isdir(root):
            return []
        proc = subprocess.run([self.runsc, "--root", root, "list", "-quiet"], capture_output=True, text=True,
                              timeout=30, check=True)
        return [line for line in proc.stdout.split() if line]

    def runsc_state(self, runsc_id, runtime="gvisor"):
        import json
        proc = subprocess.run([self.runsc, "--root", self.runsc_root(runtime), "state", runsc_id],
                              capture_output=True, text=True, timeout=30, check=True)
        return json.loads(proc.stdout)

    def runsc_id(self, cid):
        """The id runsc knows CRI container (or sandbox) `cid` by under gvshim (`gvshim runsc-id`)."""
        proc = subprocess.run([os.path.join(self.bin_dir, "gvshim"), "runsc-id", "--root", self.runsc_root(),
                               cid], capture_output=True, text=True, timeout=30, check=True)
        return proc.stdout.strip()

    def runsc_sandbox_pids(self):
        """Pids of runsc sandbox processes (`runsc-sandbox` / `runsc boot`) whose arguments name our dir."""
        out = []
        real = os.path.realpath(self.runsc)
        for pid, argv in process_argvs():
            if not (b"boot" in argv and any(self.dir.encode() in a for a in argv)):
                continue
            try:
                if os.path.realpath(f"/proc/{pid}/exe") != real:
                    continue
            except OSError:
                continue
            out.append(pid)
        return sorted(out)

    def mounts_under(self, path=None):
        prefix = (path or self.dir).rstrip("/") + "/"
        out = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4]
                if mp.startswith(prefix):
                    out.append(mp)
        return out
