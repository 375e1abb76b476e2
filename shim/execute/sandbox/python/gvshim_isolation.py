# What isolates one snippet from everything else, and the probe that checks the sandbox can give it.
#
# A worker is forked by a zygote right after the zygote's unshare(CLONE_NEWPID), so the worker is pid 1 of a
# pid namespace of its own: when it exits the kernel kills everything it started. Before any job reaches it,
# the worker (still root) takes a mount, IPC and (unless the job may use the network) network namespace of its
# own, makes every mount private, mounts a fresh /proc (it sees only its own processes) and size-limited
# tmpfs on /tmp, /var/tmp, /dev/shm and its working directory, then drops to its own uid for good
# (no supplementary groups, no_new_privs) with umask 077.
#
# "Weak" mode is for sandboxes whose mount namespaces are not private (runsc 0.0~20221219: a mount made after
# unshare(CLONE_NEWNS) lands in the container's shared namespace): no mount is made at all, the job works in
# a directory of its own under --weak-dir, and it can see the execute container's processes. The runner says
# so in its `ready` frame (isolation.complete = false, isolation.missing); the server refuses jobs then,
# unless the node allows weak isolation.

import json
import os

import gvshim_native as native
from gvshim_protocol import diag

# Everything a job gets in isolated mode, by the name `ready` reports when it is missing.
REQUIRED = ("native", "launcher", "pid_ns", "mount_ns", "proc", "tmpfs", "net_ns", "ipc_ns", "setuid")


def drop_privileges(uid, gid):
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() == 0 or os.geteuid() == 0 or os.getegid() == 0:
        raise OSError(1, "privilege drop did not take effect")


def isolate_worker(req, opts, isolated):
    """In a fresh worker (pid 1 of its pid namespace, still root): everything that does not depend on the job.

    Returns (working directory, the isolation the job gets)."""
    setup = {"pid_ns": os.getpid() == 1, "mount_ns": False, "proc": False, "tmpfs": [], "net_ns": False,
             "ipc_ns": False, "uid": None}
    net = bool(req.get("net"))
    if isolated:
        native.unshare(native.CLONE_NEWNS | native.CLONE_NEWIPC | (native.CLONE_NEWNET if net else 0))
        setup.update(mount_ns=True, ipc_ns=True, net_ns=net)
        native.mount(None, "/", None, native.MS_REC | native.MS_PRIVATE, None)
        native.mount("proc", "/proc", "proc", native.MS_NOSUID | native.MS_NODEV | native.MS_NOEXEC, None)
        setup["proc"] = True
        size = "size=%d" % opts.tmpfs_bytes
        for path in opts.tmpfs_paths:
            if os.path.isdir(path):  # a path the image lacks stays absent (the root is read-only)
                native.mount("tmpfs", path, "tmpfs", native.MS_NOSUID | native.MS_NODEV, size + ",mode=1777")
                setup["tmpfs"].append(path)
        workdir = opts.workspace
        native.mount("tmpfs", workdir, "tmpfs", native.MS_NOSUID | native.MS_NODEV, size + ",mode=700")
        setup["tmpfs"].append(workdir)
        os.chown(workdir, req["uid"], req["gid"])
        os.mkdir(os.path.join(workdir, "artifacts"), 0o700)
        os.chown(os.path.join(workdir, "artifacts"), req["uid"], req["gid"])
    else:
        workdir = req["weak_dir"]  # made by the runner, 0700 and owned by the job's uid
        flags = (native.CLONE_NEWIPC if req.get("ipc_ok") else 0) | (native.CLONE_NEWNET if net else 0)
        if flags:
            native.unshare(flags)
        setup.update(ipc_ns=bool(req.get("ipc_ok")), net_ns=net)
    os.chdir(workdir)  # as root: the path's parents need not be searchable by the job's uid
    drop_privileges(req["uid"], req["gid"])
    setup["uid"] = os.getuid()
    native.prctl(native.PR_SET_NO_NEW_PRIVS, 1)
    # Dies with the zygote, which dies with the runner. (Set after the uid change, which clears it.)
    import signal

    native.prctl(native.PR_SET_PDEATHSIG, signal.SIGKILL)
    os.umask(0o077)
    return workdir, setup


def probe_namespaces(opts):
    """Phase 1, before any worker: which namespaces work here, and whether a mount stays private to its mount
    namespace. Asked from gvshim-launch's `probe` (a static program: its forks are cheap, the runner's are not).
    Never changes the runner itself."""
    iso = {name: False for name in REQUIRED}
    iso["root"] = os.geteuid() == 0
    iso["setuid"] = iso["root"]  # checked for real by the first worker (self_check)
    notes = []
    err = native.load(opts.helpers)
    if err:
        notes.append(err)
    else:
        iso["native"] = True
    launcher = os.path.join(opts.helpers, "gvshim-launch")
    if not os.path.isdir(opts.workspace):
        notes.append("no working directory mount point %s" % opts.workspace)
    scratch = os.path.join(opts.weak_dir, "gvshim-probe-%d" % os.getpid())
    try:
        os.makedirs(scratch, 0o700, exist_ok=True)
        r, w = os.pipe()
        try:
            pid = os.posix_spawn(launcher, [launcher, "probe", scratch], {},
                                 file_actions=[(os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_CLOSE, r)])
        finally:
            os.close(w)
        out = b""
        while True:
            chunk = os.read(r, 4096)
            if not chunk:
                break
            out += chunk
        os.close(r)
        os.waitpid(pid, 0)
        found = json.loads(out)
        iso["launcher"] = True
        for k in ("pid_ns", "net_ns", "ipc_ns", "mount_ns"):
            iso[k] = found.get(k) is True
    except (OSError, ValueError) as e:
        notes.append("%s probe: %s" % (launcher, e))
    finally:
        try:
            os.rmdir(scratch)
        except OSError:
            pass
    if notes:
        iso["notes"] = notes
    return iso


def self_check(setup, opts, uid):
    """Phase 2, in the first worker right after its isolated set-up: what a job will see. Returns the record the
    runner waits for before it says `ready`."""
    return {"kind": "check",
            "proc": os.getpid() == 1 and sorted(e for e in os.listdir("/proc") if e.isdigit()) == ["1"],
            "tmpfs": all(os.listdir(p) == [] for p in setup["tmpfs"] if p != opts.workspace) and bool(setup["tmpfs"]),
            "setuid": os.getuid() == uid and os.geteuid() == uid}


def finish(iso):
    """Completes the report once every check has run (`complete`, `missing`, `mode`)."""
    iso["missing"] = [name for name in REQUIRED if not iso.get(name)]
    iso["complete"] = not iso["missing"]
    iso["mode"] = "isolated" if iso["complete"] else "weak"
    return iso
