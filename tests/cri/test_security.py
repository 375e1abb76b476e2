"""Volumes and the security context under the node's DEFAULT hardening policy (test_policy.py loosens it).

Every check that matters for an exec'd process (kubectl exec) is made on an exec as well as on the init:
containerd builds an exec's process from its own copy of the spec, which never went through the shim.
"""

import json
import os
import subprocess
import tempfile

import grpc

from crilib import client as c
from crilib.runner import case

SLEEP = ["sleep", "100000"]
CAP_NET_RAW = 1 << 13


def status_field(text, field):
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{field} not in /proc/self/status:\n{text}")


def init_output(t, pod, name, script, **kwargs):
    """Runs `script` as a container's init (then keeps it running); returns (container id, its first output)."""
    logdir = pod.config.log_directory
    cid = pod.run_container(name, t.image, command=["sh", "-c", script + "; echo INIT-DONE; exec sleep 100000"],
                            log_path=f"{name}.log", **kwargs)
    t.cri.wait_container(cid, c.RUNNING)
    path = os.path.join(logdir, f"{name}.log")
    import time
    deadline = time.monotonic() + 20
    while True:
        data = open(path, "rb").read() if os.path.exists(path) else b""
        if b"INIT-DONE" in data:
            lines = [ln.split(b" ", 3)[3].decode(errors="replace") for ln in data.splitlines() if ln.count(b" ") >= 3]
            return cid, "\n".join(lines)
        assert time.monotonic() < deadline, f"{name}: init output never finished: {data!r}"
        time.sleep(0.05)


def log_pod(t, name, **kwargs):
    return t.cri.run_pod(name, log_directory=tempfile.mkdtemp(prefix="cri-sec.", dir=t.ctd.dir), **kwargs)


def expect_refused(fn, *needles):
    try:
        fn()
    except grpc.RpcError as e:
        for n in needles:
            assert n in e.details(), f"error does not name {n!r}: {e.details()}"
        return e.details()
    raise AssertionError(f"accepted; expected a refusal naming {needles}")


@case("volumes")
def volumes(t):
    base = tempfile.mkdtemp(prefix="cri-vol.", dir=t.ctd.dir)
    rw, ro, shared = (os.path.join(base, d) for d in ("rw", "ro", "shared"))
    for d in (rw, ro, shared):
        os.mkdir(d)
    open(os.path.join(ro, "given"), "w").write("from-host\n")
    term = os.path.join(base, "termination-log")
    open(term, "w").close()
    pod = t.cri.run_pod("volumes", dns=dict(servers=["10.0.0.10"], searches=["ns.svc.cluster.local"],
                                            options=["ndots:5"]))
    mounts = [dict(container_path="/data", host_path=rw), dict(container_path="/config", host_path=ro, readonly=True),
              dict(container_path="/shared", host_path=shared),
              dict(container_path="/dev/termination-log", host_path=term)]
    a = pod.run_container("a", t.image, command=SLEEP, mounts=mounts)
    b = pod.run_container("b", t.image, command=SLEEP, mounts=[dict(container_path="/shared", host_path=shared)])
    for cid in (a, b):
        t.cri.wait_container(cid, c.RUNNING)
    run = lambda cid, s: t.cri.exec_sync(cid, ["sh", "-c", s], timeout=20)
    r = run(a, "echo written >/data/f && cat /config/given && echo ended >/dev/termination-log")
    assert r.exit_code == 0 and r.stdout == b"from-host\n", r
    assert open(os.path.join(rw, "f")).read() == "written\n"
    assert open(term).read() == "ended\n", "the single-file mount did not reach the host file"
    r = run(a, "touch /config/new")
    assert r.exit_code != 0 and b"Read-only file system" in r.stderr, r
    assert not os.path.exists(os.path.join(ro, "new"))
    # emptyDir-like: a directory both containers of the pod share.
    assert run(a, "echo from-a >/shared/x").exit_code == 0
    assert run(b, "cat /shared/x").stdout == b"from-a\n"
    # The CRI's own files: /etc/resolv.conf from the pod's DNS config, /etc/hosts, /etc/hostname.
    resolv = run(a, "cat /etc/resolv.conf").stdout.decode()
    assert "nameserver 10.0.0.10" in resolv and "search ns.svc.cluster.local" in resolv and "ndots:5" in resolv, resolv
    assert b"localhost" in run(a, "cat /etc/hosts").stdout
    assert run(a, "cat /etc/hostname").stdout.strip() == b"volumes"
    assert run(a, "hostname").stdout.strip() == b"volumes"


@case("run_as_user_group")
def run_as_user_group(t):
    pod = log_pod(t, "users")
    cid, out = init_output(t, pod, "app", "id", run_as_user=1000, run_as_group=2000,
                           supplemental_groups=[3000, 4000])
    assert "uid=1000" in out and "gid=2000" in out and "3000" in out and "4000" in out, out
    r = t.cri.exec_sync(cid, ["id"], timeout=20).stdout.decode()
    assert "uid=1000" in r and "gid=2000" in r and "3000" in r and "4000" in r, r
    # runAsGroup without runAsUser is refused by the CRI; a user name resolves in the image's /etc/passwd.
    named = pod.run_container("named", t.image, command=SLEEP, run_as_username="nobody")
    t.cri.wait_container(named, c.RUNNING)
    assert t.cri.exec_sync(named, ["id", "-u"], timeout=20).stdout.strip() == b"65534"


@case("readonly_rootfs_forced")
def readonly_rootfs_forced(t):
    """The node's policy keeps every root filesystem read-only, whatever readOnlyRootFilesystem says; /tmp is a
    small writable tmpfs."""
    pod = t.cri.run_pod("rootfs")
    for name, ro in (("ro", True), ("rw-asked", False)):
        cid = pod.run_container(name, t.image, command=SLEEP, readonly_rootfs=ro)
        t.cri.wait_container(cid, c.RUNNING)
        r = t.cri.exec_sync(cid, ["sh", "-c", "touch /newfile"], timeout=20)
        assert r.exit_code != 0 and b"Read-only file system" in r.stderr, (name, r)
        r = t.cri.exec_sync(cid, ["sh", "-c", "touch /tmp/ok && grep ' /tmp ' /proc/mounts"], timeout=20)
        assert r.exit_code == 0 and b"tmpfs" in r.stdout, (name, r)


@case("capabilities_and_no_new_privs")
def capabilities_and_no_new_privs(t):
    """The default policy drops every capability, also those the pod adds, in the init and in execs."""
    pod = log_pod(t, "caps")
    cid, out = init_output(t, pod, "app", "grep -E 'CapEff|CapBnd|NoNewPrivs' /proc/self/status",
                           add_caps=["NET_RAW", "SYS_ADMIN"])
    assert int(status_field(out, "CapEff"), 16) == 0, out
    assert int(status_field(out, "CapBnd"), 16) == 0, out
    ex = t.cri.exec_sync(cid, ["cat", "/proc/self/status"], timeout=20).stdout.decode()
    assert int(status_field(ex, "CapEff"), 16) == 0, f"an exec kept capabilities:\n{ex}"
    assert int(status_field(ex, "CapBnd"), 16) == 0, f"an exec kept capabilities:\n{ex}"
    # (gVisor's /proc/PID/status has no NoNewPrivs line; the unit tests check no_new_privs on execs.)


@case("privileged_refused")
def privileged_refused(t):
    """A privileged pod may exist (its pause container is not privileged); a privileged container is refused."""
    pod = t.cri.run_pod("priv", privileged=True)
    expect_refused(lambda: pod.run_container("app", t.image, command=SLEEP, privileged=True), "privileged",
                   "allow_privileged")
    ok = pod.run_container("plain", t.image, command=SLEEP)
    t.cri.wait_container(ok, c.RUNNING)


@case("host_network_refused")
def host_network_refused(t):
    expect_refused(lambda: t.cri.run_pod("hostnet", host_network=True), "hostNetwork", "host_network")


@case("sysctls_refused")
def sysctls_refused(t):
    msg = expect_refused(lambda: t.cri.run_pod("sysctl", sysctls={"kernel.shm_rmid_forced": "1"}),
                         "kernel.shm_rmid_forced", "sysctls")
    assert "gVisor" in msg, msg


def _seccomp_probe(t, pod, name, probe, **kwargs):
    cid, out = init_output(t, pod, name, probe + "; echo rc=$?", **kwargs)
    ex = t.cri.exec_sync(cid, ["sh", "-c", probe + "; echo rc=$?"], timeout=20)
    return out, ex.stdout.decode() + ex.stderr.decode()


@case("seccomp_runtime_default")
def seccomp_runtime_default(t):
    """RuntimeDefault (containerd's default profile) blocks unshare(CLONE_NEWUSER) without CAP_SYS_ADMIN, in the
    init and in execs; Unconfined does not."""
    pod = log_pod(t, "seccomp-rd")
    out, ex = _seccomp_probe(t, pod, "rd", "unshare -U true", seccomp="RuntimeDefault")
    for what, text in (("init", out), ("exec", ex)):
        assert "rc=1" in text and "Operation not permitted" in text, f"{what} not filtered:\n{text}"
    out, ex = _seccomp_probe(t, pod, "unconfined", "unshare -U true", seccomp="Unconfined")
    for what, text in (("init", out), ("exec", ex)):
        assert "rc=0" in text, f"{what} under Unconfined:\n{text}"


@case("seccomp_localhost")
def seccomp_localhost(t):
    """A Localhost profile from the node is enforced in the init and in execs."""
    prof = os.path.join(t.ctd.dir, "deny-mkdir.json")
    with open(prof, "w") as f:
        json.dump({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                   "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}, f)
    pod = log_pod(t, "seccomp-lh")
    out, ex = _seccomp_probe(t, pod, "lh", "mkdir /tmp/d-$$", seccomp=("Localhost", prof))
    for what, text in (("init", out), ("exec", ex)):
        assert "rc=1" in text and "Operation not permitted" in text, f"{what} could mkdir:\n{text}"
    # A profile path that does not exist fails CreateContainer with its name.
    expect_refused(lambda: pod.run_container("missing", t.image, command=SLEEP,
                                             seccomp=("Localhost", "/nonexistent/profile.json")),
                   "/nonexistent/profile.json")


@case("readonly_paths")
def readonly_paths(t):
    pod = t.cri.run_pod("ropaths")
    cid = pod.run_container("app", t.image, command=SLEEP, readonly_paths=["/tmp"])
    t.cri.wait_container(cid, c.RUNNING)
    r = t.cri.exec_sync(cid, ["touch", "/tmp/test"], timeout=20)
    assert r.exit_code != 0 and b"Read-only file system" in r.stderr, r


@case("mount_propagation")
def mount_propagation(t):
    """rprivate volumes work; Bidirectional (rshared) cannot work under gVisor and is refused, naming why;
    HostToContainer (rslave) shows what the host mounts under the volume after the container started."""
    base = tempfile.mkdtemp(prefix="cri-prop.", dir=t.ctd.dir)
    # The kubelet's volumes live on a shared mount; this machine's / is private, so make one.
    subprocess.run(["mount", "--bind", base, base], check=True)
    subprocess.run(["mount", "--make-rshared", base], check=True)
    t.defer(subprocess.run, ["umount", "-l", base])
    pod = t.cri.run_pod("prop")
    private = pod.run_container("private", t.image, command=SLEEP,
                                mounts=[dict(container_path="/mnt", host_path=base, propagation=0)])
    t.cri.wait_container(private, c.RUNNING)
    expect_refused(lambda: pod.run_container("shared", t.image, command=SLEEP,
                                             mounts=[dict(container_path="/mnt", host_path=base, propagation=2)]),
                   "propagation", "gVisor")
    slave = pod.run_container("slave", t.image, command=SLEEP,
                              mounts=[dict(container_path="/mnt", host_path=base, propagation=1)])
    t.cri.wait_container(slave, c.RUNNING)
    sub = os.path.join(base, "late")
    os.mkdir(sub)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", sub], check=True)
    t.defer(subprocess.run, ["umount", "-l", sub])
    open(os.path.join(sub, "from-host"), "w").write("x")
    r = t.cri.exec_sync(slave, ["ls", "/mnt/late"], timeout=20)
    assert b"from-host" in r.stdout, f"rslave: the host's later mount is not visible: {r}"
    # rprivate: the same late host mount stays invisible (critest's 'rprivate' spec; gVisor's gofer holds a
    # private copy of the volume's mounts).
    r = t.cri.exec_sync(private, ["ls", "-A", "/mnt/late"], timeout=20)
    assert r.exit_code == 0 and b"from-host" not in r.stdout, f"rprivate: the host's later mount is visible: {r}"
