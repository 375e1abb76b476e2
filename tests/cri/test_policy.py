"""The security context under a node policy that LOOSENS the defaults (gvshim.toml [hardening]):
privileged containers allowed, host network through runsc --network=host, the pod's readOnlyRootFilesystem
honoured, NET_BIND_SERVICE on the capability allow-list. (Not NET_RAW: runsc drops it unless run with --net-raw.)"""

import socket
import threading

from crilib import client as c
from crilib.runner import case

SLEEP = ["sleep", "100000"]
CONTAINERD = dict(hardening='allow_privileged = true\nhost_network = "host"\nreadonly_rootfs = false\n'
                            'allowed_capabilities = ["CAP_NET_BIND_SERVICE"]')
CAP_NET_BIND_SERVICE, CAP_SYS_ADMIN = 1 << 10, 1 << 21


def cap_eff(t, cid):
    out = t.cri.exec_sync(cid, ["cat", "/proc/self/status"], timeout=20).stdout.decode()
    return int([ln for ln in out.splitlines() if ln.startswith("CapEff:")][0].split()[1], 16)


@case("capability_allow_list")
def capability_allow_list(t):
    pod = t.cri.run_pod("caps")
    cid = pod.run_container("app", t.image, command=SLEEP, add_caps=["NET_BIND_SERVICE", "SYS_ADMIN"])
    t.cri.wait_container(cid, c.RUNNING)
    eff = cap_eff(t, cid)
    assert eff & CAP_NET_BIND_SERVICE, f"NET_BIND_SERVICE is allowed by the node and in the spec: CapEff {eff:#x}"
    assert not eff & CAP_SYS_ADMIN, f"SYS_ADMIN is not on the node's allow-list: CapEff {eff:#x}"
    plain = pod.run_container("plain", t.image, command=SLEEP, drop_caps=["ALL"])
    t.cri.wait_container(plain, c.RUNNING)
    assert cap_eff(t, plain) == 0, "capabilities the pod dropped came back"


@case("privileged_allowed")
def privileged_allowed(t):
    pod = t.cri.run_pod("priv", privileged=True)
    cid = pod.run_container("app", t.image, command=SLEEP, privileged=True)
    t.cri.wait_container(cid, c.RUNNING)
    eff = cap_eff(t, cid)
    assert eff & CAP_SYS_ADMIN, f"an allowed privileged container keeps its capabilities: CapEff {eff:#x}"
    # Still under the rest of the policy: no_new_privs and the pod's read-only root (it asked for none here).
    r = t.cri.exec_sync(cid, ["sh", "-c", "ls /proc/kcore >/dev/null 2>&1; echo $?"], timeout=20)
    assert r.exit_code == 0, r


@case("readonly_rootfs_policy_knob")
def readonly_rootfs_policy_knob(t):
    """With [hardening] readonly_rootfs = false, the pod's readOnlyRootFilesystem decides."""
    pod = t.cri.run_pod("rootfs")
    rw = pod.run_container("rw", t.image, command=SLEEP, readonly_rootfs=False)
    ro = pod.run_container("ro", t.image, command=SLEEP, readonly_rootfs=True)
    for cid in (rw, ro):
        t.cri.wait_container(cid, c.RUNNING)
    assert t.cri.exec_sync(rw, ["touch", "/newfile"], timeout=20).exit_code == 0
    r = t.cri.exec_sync(ro, ["touch", "/newfile"], timeout=20)
    assert r.exit_code != 0 and b"Read-only file system" in r.stderr, r


@case("host_network")
def host_network(t):
    """A hostNetwork pod reaches a server of the node on 127.0.0.1 (the node's loopback, not gVisor's)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    t.defer(srv.close)

    def serve():
        try:
            conn, _ = srv.accept()
            conn.sendall(b"hello-from-the-node\n")
            conn.close()
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()
    pod = t.cri.run_pod("hostnet", host_network=True)
    assert pod.config.hostname == "", "a kubelet sends no hostname for a host-network pod"
    cid = pod.run_container("app", t.image, command=SLEEP)
    t.cri.wait_container(cid, c.RUNNING)
    r = t.cri.exec_sync(cid, ["sh", "-c", f"nc 127.0.0.1 {port} </dev/null"], timeout=30)
    assert b"hello-from-the-node" in r.stdout, r
    st = t.cri.pod_status(pod.id).status
    assert st.linux.namespaces.options.network == c.NODE, st.linux
