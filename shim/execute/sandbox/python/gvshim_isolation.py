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

import os

import gvshim_native as native
from gvshim_protocol import diag

# Everything a job gets in isolated mode, by the name `ready` reports when it is missing.
REQUIRED = ("native", "pid_ns", "mount_ns", "proc", "tmpfs", "net_ns", "ipc_ns", "setuid")


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


def _fork_in_new_pidns(fn):
    """Runs fn() as pid 1 of a new pid namespace and returns its exit status (255: could not). The namespace is
    made the way a zygote makes them (PidNamespaces, then fork), twice from one process: a zygote does it
    before every fork, so doing it again must work too."""
    pid = os.fork()
    if pid == 0:
        code = 255
        try:
            pidns = native.PidNamespaces()
            pidns.next()
            c = os.fork()
            if c == 0:
                os._exit(0)
            os.waitpid(c, 0)
            pidns.next()
            c = os.fork()
            if c == 0:
                rc = 255
                try:
                    rc = fn()
                finally:
                    os._exit(rc)
            _, st = os.waitpid(c, 0)
            code = os.WEXITSTATUS(st) if os.WIFEXITED(st) else 255
        except BaseException:  # noqa: BLE001
            code = 255
        finally:
            os._exit(code)
    _, st = os.waitpid(pid, 0)
    return os.WEXITSTATUS(st) if os.WIFEXITED(st) else 255


def probe(opts):
    """Checks, in throw-away processes, what the sandbox lets a job have. Never changes the runner itself."""
    iso = {name: False for name in REQUIRED}
    iso["root"] = os.geteuid() == 0
    iso["setuid"] = iso["root"]  # checked for real below, when the full set-up can be tried
    err = native.load(opts.helpers)
    if err:
        iso["notes"] = [err]
        return finish(iso)
    if not os.path.isdir(opts.workspace):
        iso["notes"] = ["no working directory mount point %s" % opts.workspace]
    iso["native"] = True
    scratch = os.path.join(opts.weak_dir, "gvshim-probe-%d" % os.getpid())
    os.makedirs(scratch, 0o700, exist_ok=True)
    marker = os.path.join(scratch, "inner")

    def phase1():
        bits = 1 if os.getpid() == 1 else 0  # the first child after unshare(CLONE_NEWPID) is its pid 1
        try:
            native.unshare(native.CLONE_NEWNS)
            native.mount(None, "/", None, native.MS_REC | native.MS_PRIVATE, None)
            native.mount("tmpfs", scratch, "tmpfs", 0, "size=64k")
            open(marker, "w").close()
            bits |= 2
        except OSError:
            pass
        for bit, flag in ((4, native.CLONE_NEWNET), (8, native.CLONE_NEWIPC)):
            try:
                native.unshare(flag)
                bits |= bit
            except OSError:
                pass
        return bits

    bits = _fork_in_new_pidns(phase1)
    if bits == 255:
        bits = 0
    iso["pid_ns"] = bool(bits & 1)
    iso["net_ns"] = bool(bits & 4)
    iso["ipc_ns"] = bool(bits & 8)
    leaked = os.path.exists(marker)
    if leaked:  # the probe's tmpfs showed up here: mounts are not private to a namespace (runsc 20221219)
        try:
            native.umount2(scratch, native.MNT_DETACH)
        except OSError:
            pass
    iso["mount_ns"] = bool(bits & 2) and not leaked
    if iso["pid_ns"] and iso["mount_ns"]:
        # The whole worker set-up, as a worker does it; then look around as the job would.
        def phase2():
            try:
                _, setup = isolate_worker({"uid": opts.uid, "gid": opts.gid, "net": iso["net_ns"]}, opts, True)
            except BaseException as e:  # noqa: BLE001 - reported, and the runner goes weak
                diag("probe: the isolated set-up of a worker failed: %s" % e)
                return 255
            ok = 0
            if sorted(e for e in os.listdir("/proc") if e.isdigit()) == ["1"]:
                ok |= 1
            if all(os.listdir(p) == [] for p in setup["tmpfs"] if p != opts.workspace):
                ok |= 2
            if os.getuid() == opts.uid:
                ok |= 4
            return ok

        ok = _fork_in_new_pidns(phase2)
        if ok != 255:
            iso["proc"] = bool(ok & 1)
            iso["tmpfs"] = bool(ok & 2)
            iso["setuid"] = bool(ok & 4)
        else:
            iso.setdefault("notes", []).append("the isolated set-up of a worker failed (see the runner's log)")
    try:
        os.rmdir(scratch)
    except OSError:
        pass
    return finish(iso)


def finish(iso):
    iso["missing"] = [name for name in REQUIRED if not iso.get(name)]
    iso["complete"] = not iso["missing"]
    iso["mode"] = "isolated" if iso["complete"] else "weak"
    return iso
