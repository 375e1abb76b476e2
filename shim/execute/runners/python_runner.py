# gvshim Python runner: a fork-server that runs snippets for the Execute service.
#
# Started by the shim inside the sandbox as `python3 -I -c <this file's text> [options]`; it speaks the frame
# protocol of PROTOCOL.md (next to this file) on its stdin/stdout and writes diagnostics to stderr.
# The interpreter and common modules are loaded once; each job is a fork of this process, isolated
# (process group, pid/net/mount namespaces when permitted, unprivileged uid, rlimits, private working dir).
#
# Single-threaded on purpose: forking a multi-threaded interpreter is unsafe, and one selector loop is enough
# to multiplex the protocol, the jobs' pipes, SIGCHLD and the deadlines.

import base64
import ctypes
import errno
import fcntl
import json
import os
import resource
import selectors
import signal
import stat
import struct
import sys
import time

PROTOCOL_VERSION = 1
MAX_FRAME = 64 << 20
RESULT_CAP = 16 << 20  # bytes of main's JSON result accepted from a job

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 1, 38, 36

DEFAULT_LIMITS = {
    "wall_timeout_ms": 10_000,
    "cpu_time_ms": 10_000,
    "memory_bytes": 512 << 20,
    "output_bytes": 1 << 20,
    "max_processes": 64,
    "file_size_bytes": 16 << 20,
}

STATUS_SUCCESS = "success"
STATUS_PROGRAM_ERROR = "program_error"
STATUS_TIMEOUT = "timeout"
STATUS_MEMORY = "memory_limit"
STATUS_OUTPUT = "output_limit"
STATUS_REJECTED = "rejected"
STATUS_INTERNAL = "internal_error"

# Exit code a job process uses when its own setup (privilege drop, chdir...) failed: the code never ran.
SETUP_FAILED_EXIT = 125

_libc = ctypes.CDLL(None, use_errno=True)
_FunctionType = type(lambda: None)


def _diag(msg):
    try:
        os.write(2, ("gvshim-python-runner: %s\n" % msg).encode("utf-8", "replace"))
    except OSError:
        pass


def _check(ret, what):
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))


def _unshare(flags):
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def _mount(src, target, fstype, flags, data):
    _check(_libc.mount(src, target, fstype, ctypes.c_ulong(flags), data), "mount %s" % target.decode())


def _prctl(option, arg):
    return _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                       ctypes.c_ulong(0))


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _rmtree(path):
    """Removes a job directory. The usual case (nothing but the empty artifacts/ left) takes two rmdir calls;
    anything else goes through shutil.rmtree (fd-based, never follows the job's symlinks).

    shutil is imported only then: it loads zlib, bz2 and lzma, whose mappings every forked worker would
    otherwise inherit (each mapping costs gVisor work on every fork)."""
    try:
        try:
            os.rmdir(os.path.join(path, "artifacts"))
        except FileNotFoundError:
            pass
        os.rmdir(path)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _token():
    return os.urandom(16).hex()


def _set_nonblock(fd):
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)


class Options:
    def __init__(self, argv):
        self.uid = 65534
        self.gid = 65534
        self.uid_count = 1  # >1: each concurrent job gets its own uid from [uid, uid+uid_count)
        self.tmp_base = "/tmp"
        self.max_jobs = 8
        self.preload = []
        self.namespaces = True
        self.max_artifacts = 16
        self.max_artifact_bytes = 4 << 20
        self.defaults = dict(DEFAULT_LIMITS)
        # "none": the sandbox itself has no network (runsc --network=none), so jobs need no network namespace.
        self.sandbox_network = ""
        self.job_mode = "auto"  # auto | prefork | fork (see PROTOCOL.md, "What a job gets")
        self.prefork = 4  # idle pre-forked workers kept ready (prefork mode)
        self.zygotes = 0  # prefork mode: zygotes forking workers in parallel; 0 = one per CPU (at most prefork, 4)
        self.phase_times = False
        it = iter(argv)
        for a in it:
            if a == "--uid":
                self.uid = int(next(it))
            elif a == "--gid":
                self.gid = int(next(it))
            elif a == "--uid-count":
                self.uid_count = max(1, int(next(it)))
            elif a == "--tmp-base":
                self.tmp_base = next(it)
            elif a == "--max-jobs":
                self.max_jobs = max(1, int(next(it)))
            elif a == "--preload":
                self.preload = [m for m in next(it).split(",") if m]
            elif a == "--no-namespaces":
                self.namespaces = False
            elif a == "--max-artifacts":
                self.max_artifacts = int(next(it))
            elif a == "--max-artifact-bytes":
                self.max_artifact_bytes = int(next(it))
            elif a == "--sandbox-network":
                self.sandbox_network = next(it)
            elif a == "--job-mode":
                self.job_mode = next(it)
                if self.job_mode not in ("auto", "prefork", "fork"):
                    raise SystemExit("gvshim-python-runner: --job-mode must be auto, prefork or fork")
            elif a == "--prefork":
                self.prefork = max(1, int(next(it)))
            elif a == "--zygotes":
                self.zygotes = max(0, int(next(it)))
            elif a == "--phase-times":
                self.phase_times = True
            elif a.startswith("--default-") and a[10:].replace("-", "_") in DEFAULT_LIMITS:
                self.defaults[a[10:].replace("-", "_")] = int(next(it))
            else:
                raise SystemExit("gvshim-python-runner: unknown option %r" % a)


def _probe_isolation(opts, scratch):
    """Finds out, in a throw-away child, which namespaces this process may create and whether they work."""
    iso = {"root": os.geteuid() == 0, "pid_ns": False, "net_ns": False, "mount_ns": False}
    if not opts.namespaces:
        return iso
    # A mount namespace only counts if a mount made in it stays there: gVisor 20221219 accepts
    # unshare(CLONE_NEWNS) but its mounts land in the container's shared namespace.
    probe_dir = os.path.join(scratch, "probe")
    os.mkdir(probe_dir, 0o700)
    marker = os.path.join(probe_dir, "marker")
    open(marker, "w").close()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            for bit, flag in ((1, CLONE_NEWNS), (2, CLONE_NEWNET), (4, CLONE_NEWPID)):
                try:
                    _unshare(flag)
                    code |= bit
                except OSError:
                    pass
            if code & 1:
                try:
                    _mount(b"tmpfs", probe_dir.encode(), b"tmpfs", 0, b"size=4k")
                except OSError:
                    code &= ~1
            if code & 4:
                # The first child after unshare(CLONE_NEWPID) becomes the namespace's init; make sure forking
                # into it works here (some sandboxes accept the flag but fail the fork).
                try:
                    c = os.fork()
                    if c == 0:
                        os._exit(0 if os.getpid() == 1 else 1)
                    _, st = os.waitpid(c, 0)
                    if not (os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0):
                        code &= ~4
                except OSError:
                    code &= ~4
        finally:
            os._exit(code)
    _, st = os.waitpid(pid, 0)
    code = os.WEXITSTATUS(st) if os.WIFEXITED(st) else 0
    if not os.path.exists(marker):  # the probe's tmpfs leaked into our namespace: take it away again
        code &= ~1
        _libc.umount2(probe_dir.encode(), ctypes.c_int(2))  # MNT_DETACH
    os.unlink(marker)
    os.rmdir(probe_dir)
    iso["mount_ns"] = bool(code & 1)
    iso["net_ns"] = bool(code & 2)
    iso["pid_ns"] = bool(code & 4)
    return iso


# ----------------------------------------------------------------------------------------------------------
# Job side: everything below runs in the forked job process and never returns to the runner loop.


def _binds(fn, args):
    """For a plain function, what inspect.signature(fn).bind would say, read off its code object (importing
    and running inspect touches many objects, i.e. copy-on-write faults in a fresh fork).

    Returns (as_keywords, as_single), or None when fn is not a plain function."""
    code = getattr(fn, "__code__", None)
    if (type(fn) is not _FunctionType or code is None or "__wrapped__" in fn.__dict__
            or "__signature__" in fn.__dict__):
        return None
    npos, nkw, nposonly = code.co_argcount, code.co_kwonlyargcount, code.co_posonlyargcount
    names = code.co_varnames[:npos + nkw]
    varargs, varkw = bool(code.co_flags & 0x04), bool(code.co_flags & 0x08)
    ndef = len(fn.__defaults__ or ())
    kwdefs = fn.__kwdefaults__ or {}
    required_pos = names[:npos - ndef]
    required_kw = [n for n in names[npos:] if n not in kwdefs]
    # main(**args): every key names a parameter that takes a keyword (or main has **kwargs); every required
    # parameter is among the keys, and none of them is positional-only.
    keyword_names = set(names[nposonly:])
    as_keywords = (all(k in keyword_names or varkw for k in args)
                   and len(required_pos[:nposonly]) == 0
                   and all(n in args for n in required_pos)
                   and all(n in args for n in required_kw))
    # main(args): one positional parameter (or *args) and nothing else required.
    as_single = (npos >= 1 or varargs) and len(required_pos) <= 1 and not required_kw
    return as_keywords, as_single


def _call_main(fn, args):
    """RAGFlow's convention: main(**args) for an object whose keys main accepts, else main(args)."""
    if not isinstance(args, dict):
        return fn(args)
    fast = _binds(fn, args)
    if fast is not None:
        as_keywords, as_single = fast
        if as_single and not as_keywords:
            return fn(args)
        return fn(**args)
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return fn(**args)
    as_keywords = as_single = False
    try:
        sig.bind(**args)
        as_keywords = True
    except TypeError:
        try:
            sig.bind(args)
            as_single = True
        except TypeError:
            pass
    # Called outside the except blocks so a failure inside main does not show the binding attempts.
    if as_single and not as_keywords:
        return fn(args)
    return fn(**args)


def _job_body(job, res_fd):
    """Runs the snippet with fds 0/1/2 already the job's pipes. Returns the exit code."""
    import builtins
    import io
    import traceback
    import types

    memory_marker = b'{"kind":"memory"}\n'

    def record(obj):
        data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        view = memoryview(data)
        while view:
            n = os.write(res_fd, view)
            view = view[n:]

    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8", errors="replace")
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                                  write_through=False)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=True)
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    sys.argv = ["<snippet>"]
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module

    def report_exception(exc):
        if isinstance(exc, MemoryError):
            try:
                os.write(res_fd, memory_marker)
                os.write(2, b"MemoryError: memory limit exceeded\n")
            except OSError:
                pass
            return 1
        try:
            # Drop the runner's own frames: the traceback starts at the snippet's first frame.
            tb = exc.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename != "<snippet>":
                tb = tb.tb_next
            traceback.print_exception(type(exc), exc, tb)
            if isinstance(exc, OSError) and exc.errno == errno.EAGAIN:
                sys.stderr.write("gvshim: could not create a process or thread: the process limit "
                                 "(max_processes=%d) was probably reached\n" % job["limits"]["max_processes"])
        except BaseException:
            pass
        return 1

    def exit_code_of(e):
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code & 0xFF
        try:
            sys.stderr.write(str(e.code) + "\n")
        except BaseException:
            pass
        return 1

    # Let tracebacks show the snippet's source lines.
    import linecache

    linecache.cache["<snippet>"] = (len(job["code"]), None, job["code"].splitlines(True), "<snippet>")
    code = 0
    try:
        try:
            compiled = compile(job["code"], "<snippet>", "exec", dont_inherit=True)
            exec(compiled, module.__dict__)
            main = module.__dict__.get("main")
            if callable(main):
                result = _call_main(main, job["args"])
                if hasattr(result, "__await__"):
                    import asyncio

                    async def _await(aw):
                        return await aw

                    result = asyncio.run(_await(result))
                try:
                    text = json.dumps(result, allow_nan=False)
                except (TypeError, ValueError, RecursionError) as e:
                    msg = "main returned a value that is not JSON-serialisable: %s" % e
                    sys.stderr.write(msg + "\n")
                    record({"kind": "bad_result", "message": msg})
                    code = 1
                else:
                    if len(text) > RESULT_CAP:
                        msg = "main returned a result larger than %d bytes" % RESULT_CAP
                        sys.stderr.write(msg + "\n")
                        record({"kind": "bad_result", "message": msg})
                        code = 1
                    else:
                        record({"kind": "result", "json": text})
        except SystemExit as e:
            code = exit_code_of(e)
        except BaseException as e:  # noqa: BLE001 - any failure of the snippet is its exit status
            code = report_exception(e)
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except BaseException:
                pass
    except MemoryError:
        try:
            os.write(res_fd, memory_marker)
        except OSError:
            pass
        code = 1
    stamps = job.get("stamps")
    if stamps is not None:
        stamps["code_done"] = time.monotonic()
    return code


def _job_setup_and_run(job, ctx, in_pid_ns, unshared):
    """In the job process (root until the privilege drop): mounts, cwd, rlimits, uid, then the snippet."""
    setup = {"pid_ns": in_pid_ns, "net_ns": bool(unshared & CLONE_NEWNET), "mount_ns": bool(unshared & CLONE_NEWNS),
             "proc": False, "tmp_hidden": False, "uid": os.getuid()}
    workdir = job["workdir"]
    notes = list(job.get("notes", ()))
    if unshared & CLONE_NEWNS:
        # Mounts made here stay in this job's mount namespace. Each step is best effort (gVisor, for one,
        # refuses propagation changes); what worked is reported in the setup record, not on the job's stderr.
        private = True
        try:
            _mount(None, b"/", None, MS_REC | MS_PRIVATE, None)
        except OSError as e:
            notes.append(str(e))
            # Without private propagation a mount here could show up in the runner's namespace: go on
            # only if no mount is shared at all (as in gVisor, which has no propagation changes).
            try:
                with open("/proc/self/mountinfo") as f:
                    private = " shared:" not in f.read()
            except FileNotFoundError:
                private = True  # no mountinfo (gVisor): no propagation either
            except OSError:
                private = False
        if in_pid_ns and private:
            try:
                _mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
                setup["proc"] = True
            except OSError as e:
                notes.append(str(e))
        # Hide the other jobs' directories: bind our own directory over the runner's job directory, so that
        # path shows only our files. (A path source: gVisor mis-binds from /proc/self/fd paths.)
        try:
            if not private:
                raise OSError(errno.EPERM, "mount propagation could not be made private")
            _mount(workdir.encode(), ctx["job_base"].encode(), None, MS_BIND, None)
            workdir = ctx["job_base"]
            setup["tmp_hidden"] = True
        except OSError as e:
            notes.append("hide job directories: %s" % e)
    if notes:
        setup["notes"] = notes
    os.chdir(workdir)
    lim = job["limits"]
    _set_job_rlimits(lim)
    if os.geteuid() == 0:
        _drop_privileges(job["uid"], job["gid"])
        setup["uid"] = os.getuid()
    _stamp(job, "setuid")
    # NPROC counts the processes of the (now unprivileged) uid; set it after the drop so root is not limited.
    resource.setrlimit(resource.RLIMIT_NPROC, (lim["max_processes"], lim["max_processes"]))
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    # The credential change cleared any parent-death signal; the job dies with its parent.
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _set_job_env(job, workdir)
    os.write(3, (json.dumps({"kind": "setup", "isolation": setup}) + "\n").encode())
    # Address-space limit last: everything above may still allocate.
    resource.setrlimit(resource.RLIMIT_AS, (lim["memory_bytes"], lim["memory_bytes"]))
    _stamp(job, "rlimits")
    code = _job_body(job, 3)
    _write_stamps(job, 3)
    return code


def _stamp(job, name):
    stamps = job.get("stamps")
    if stamps is not None:
        stamps[name] = time.monotonic()


def _write_stamps(job, fd):
    if job.get("stamps") is not None:
        try:
            os.write(fd, (json.dumps({"kind": "stamps", "stamps": job["stamps"]}) + "\n").encode())
        except OSError:
            pass


def _set_job_rlimits(lim):
    """CORE, CPU and FSIZE; NPROC and AS are set by the callers at the right moment."""
    cpu_s = max(1, -(-lim["cpu_time_ms"] // 1000))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (lim["file_size_bytes"], lim["file_size_bytes"]))


def _drop_privileges(uid, gid):
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() == 0 or os.geteuid() == 0:
        raise OSError(errno.EPERM, "privilege drop did not take effect")


def _set_job_env(job, workdir):
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1"}
    env.update(job["env"])
    os.environ.clear()
    os.environ.update(env)


def _child_entry(job, ctx, fds):
    """First process of a job (forked from the runner). Never returns."""
    code = SETUP_FAILED_EXIT
    _stamp(job, "forked")
    try:
        runner_pid = ctx["runner_pid"]
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != runner_pid:
            os._exit(SETUP_FAILED_EXIT)
        signal.set_wakeup_fd(-1)
        for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setsid()
        # Job fds onto 0..4 (stdin, stdout, stderr, records, status), everything else closed.
        high = [fcntl.fcntl(f, fcntl.F_DUPFD, 64) for f in fds]
        for i, f in enumerate(high):
            os.dup2(f, i)
        os.closerange(5, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") < 1 << 16 else 1 << 16)
        flags = 0
        iso = ctx["isolation"]
        if iso["mount_ns"]:
            flags |= CLONE_NEWNS
        if ctx["isolate_net"] and not job["allow_network"]:
            flags |= CLONE_NEWNET
        if iso["pid_ns"]:
            flags |= CLONE_NEWPID
        unshared = 0
        if flags:
            try:
                _unshare(flags)
                unshared = flags
            except OSError as e:
                job["notes"] = [str(e)]
        if not job["allow_network"] and not (unshared & CLONE_NEWNET) and ctx["isolate_net"]:
            raise OSError(errno.EPERM, "could not create the network namespace")
        _stamp(job, "unshared")
        if unshared & CLONE_NEWPID:
            # We stay outside the new pid namespace; our child is its init. When that child exits the kernel
            # kills everything else in the namespace, so nothing the snippet started can outlive it.
            pid = os.fork()
            if pid == 0:
                rc = SETUP_FAILED_EXIT
                _stamp(job, "pidns_forked")
                try:
                    os.close(4)
                    try:
                        rc = _job_setup_and_run(job, ctx, True, unshared)
                    except BaseException as e:  # noqa: BLE001
                        os.write(2, ("gvshim: job setup failed: %s\n" % e).encode())
                        rc = SETUP_FAILED_EXIT
                finally:
                    os._exit(rc)
            os.close(0)
            os.close(1)
            os.close(2)
            os.close(3)
            _, st, ru = os.wait4(pid, 0)
            os.write(4, json.dumps({"wait_status": st, "maxrss": ru.ru_maxrss * 1024}).encode())
            code = 0
        else:
            os.close(4)
            try:
                code = _job_setup_and_run(job, ctx, False, unshared)
            except BaseException as e:  # noqa: BLE001
                os.write(2, ("gvshim: job setup failed: %s\n" % e).encode())
                code = SETUP_FAILED_EXIT
    except BaseException as e:  # noqa: BLE001
        try:
            os.write(2, ("gvshim: job setup failed: %s\n" % e).encode())
        except BaseException:
            pass
        code = SETUP_FAILED_EXIT
    finally:
        os._exit(code)



# ----------------------------------------------------------------------------------------------------------
# Prefork mode: a zygote process forks workers ahead of time; each worker is already in its own session,
# under its own uid, and waits for exactly one job. A fork costs 15-20 ms inside gVisor (ptrace), almost all
# of it in the forking process, so the runner's loop never forks: the zygote does, concurrently.
#
# While a worker lives it shares the zygote's memory copy-on-write, and gVisor breaks that sharing in chunks
# of up to 2 MiB: every chunk the zygote writes to after a fork (any Python code touches objects all over the
# heap) is copied, once per fork. So the zygote does as little as possible between forks: it takes every
# request already queued on its channel, forks all the workers asked for back to back, and only then answers.
#
# Runner -> zygote (SOCK_SEQPACKET, one JSON message each):
#   {"op":"spawn","seq":N,"uid":U,"gid":G,"net":bool}   fork a worker (net: give it its own network namespace)
#   {"op":"sweep","seq":N,"uid":U,"gid":G}               kill(-1, SIGKILL) as U from a throw-away child
# Zygote -> runner:
#   {"op":"spawned","seq":N,"pid":P} + fds [job_w, stdout_r, stderr_r, records_r]   (or "error")
#   {"op":"exited","pid":P,"status":S,"maxrss":B}         a worker (or sweeper) was reaped
#   {"op":"swept","seq":N,"uid":U}


def _zygote_main(ctl, runner_pid, isolation):
    """The zygote's loop. Never returns."""
    import socket

    code = 0
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != runner_pid:
            os._exit(0)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        # Workers' orphans are the runner's business (it is their subreaper); the zygote reaps its children.
        wake_r, wake_w = os.pipe()
        _set_nonblock(wake_r)
        _set_nonblock(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_w)
        sel = selectors.DefaultSelector()
        sel.register(ctl.fileno(), selectors.EVENT_READ, "ctl")
        sel.register(wake_r, selectors.EVENT_READ, "wake")
        sweepers = {}  # pid -> (seq, uid)
        # The interpreter's objects are shared with every worker; keep the collector from touching (and so
        # copying) them in each worker.
        import gc

        gc.collect()
        gc.freeze()

        def send(obj, fds=()):
            data = json.dumps(obj).encode()
            if fds:
                socket.send_fds(ctl, [data], list(fds))
            else:
                ctl.send(data)

        def reap():
            while True:
                try:
                    pid, st, ru = os.wait4(-1, os.WNOHANG)
                except ChildProcessError:
                    return
                if pid == 0:
                    return
                if pid in sweepers:
                    seq, uid = sweepers.pop(pid)
                    send({"op": "swept", "seq": seq, "uid": uid})
                else:
                    send({"op": "exited", "pid": pid, "status": st, "maxrss": ru.ru_maxrss * 1024})

        while True:
            for key, _ in sel.select():
                if key.data == "wake":
                    try:
                        while os.read(wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                try:
                    data = ctl.recv(1 << 16)
                except InterruptedError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    os._exit(0)  # the runner closed its end: shutting down
                reqs = [json.loads(data)]
                while True:  # everything else already queued: one batch of forks
                    try:
                        more = ctl.recv(1 << 16, socket.MSG_DONTWAIT)
                    except (BlockingIOError, InterruptedError):
                        break
                    if not more:
                        break  # end of input: seen again (and acted on) by the next blocking recv
                    reqs.append(json.loads(more))
                _serve_batch(reqs, send, sweepers)
            reap()
    except (BrokenPipeError, ConnectionResetError):
        code = 0  # the runner is gone or shutting down
    except BaseException as e:  # noqa: BLE001
        _diag("zygote: %s" % e)
        code = 1
    finally:
        os._exit(code)


def _serve_batch(reqs, send, sweepers):
    """Forks the workers and sweepers asked for in reqs back to back, then answers each request.

    Between two forks the zygote runs only the few lines of the fork loop (see the comment above)."""
    forks = []  # (request, fds): fds = [job_r, job_w, out_r, out_w, err_r, err_w, rec_r, rec_w], or None
    for req in reqs:
        if req["op"] == "spawn":
            fds = []
            try:
                for _ in range(4):
                    fds.extend(os.pipe())
            except OSError as e:
                for fd in fds:
                    os.close(fd)
                send({"op": "error", "seq": req["seq"], "message": "spawn worker: %s" % e})
                continue
            forks.append((req, fds))
        elif req["op"] == "sweep":
            forks.append((req, None))
    pids = []
    t0 = time.monotonic()
    for req, fds in forks:
        try:
            pid = os.fork()
        except OSError as e:
            pid = e
        if pid == 0:
            _forked_child(req, fds, t0)  # never returns
        pids.append(pid)
    for (req, fds), pid in zip(forks, pids):
        if fds is None:  # a sweeper
            if isinstance(pid, OSError):
                send({"op": "swept", "seq": req["seq"], "uid": req["uid"]})  # the runner checks again
            else:
                sweepers[pid] = (req["seq"], req["uid"])
            continue
        for i in (0, 3, 5, 7):  # the worker's ends
            os.close(fds[i])
        mine = [fds[1], fds[2], fds[4], fds[6]]  # job_w, stdout_r, stderr_r, records_r
        try:
            if isinstance(pid, OSError):
                send({"op": "error", "seq": req["seq"], "message": "spawn worker: %s" % pid})
            else:
                send({"op": "spawned", "seq": req["seq"], "pid": pid, "t": time.monotonic()}, mine)
        finally:
            for fd in mine:
                os.close(fd)


def _forked_child(req, fds, t0):
    """A child of the zygote's fork loop: a sweeper (fds is None) or a worker. Never returns."""
    if fds is None:
        try:
            os.setgid(req["gid"])
            os.setuid(req["uid"])
            os.kill(-1, signal.SIGKILL)  # every process this uid may signal, i.e. its own
        finally:
            os._exit(0)
    code = SETUP_FAILED_EXIT
    try:
        code = _worker_main(req, [fds[0], fds[3], fds[5], fds[7]], t0)
    except BaseException as e:  # noqa: BLE001
        try:
            os.write(2, ("gvshim: worker setup failed: %s\n" % e).encode())
        except BaseException:
            pass
    finally:
        os._exit(code)


def _worker_main(req, fds, t_fork):
    """A pre-forked worker: set up everything that does not depend on the job, wait for it, run it."""
    t_start = time.monotonic()
    zygote = os.getppid()
    signal.set_wakeup_fd(-1)
    for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(s, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setsid()
    # stdin (/dev/null until the job's bytes arrive), stdout, stderr, records, job channel; nothing else.
    high = [fcntl.fcntl(f, fcntl.F_DUPFD, 64) for f in fds]
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(high[1], 1)
    os.dup2(high[2], 2)
    os.dup2(high[3], 3)
    os.dup2(high[0], 4)
    os.closerange(5, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") < 1 << 16 else 1 << 16)
    setup = {"pid_ns": False, "net_ns": False, "mount_ns": False, "proc": False, "tmp_hidden": False,
             "uid": os.getuid(), "mode": "prefork", "network_isolated": False}
    if req.get("net"):
        _unshare(CLONE_NEWNET)
        setup["net_ns"] = setup["network_isolated"] = True
    elif req.get("sandbox_no_network"):
        setup["network_isolated"] = True
    os.chdir(req["workdir"])  # as root: the path's parents need not be searchable by the job's uid
    if os.geteuid() == 0:
        _drop_privileges(req["uid"], req["gid"])
        setup["uid"] = os.getuid()
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    # Dies with the zygote, which dies with the runner. (Set after the uid change, which clears it.)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != zygote:
        return SETUP_FAILED_EXIT
    # Run a dummy job through the same code (result records to /dev/null): after a fork, every first write
    # to a page costs a trip through gVisor's sentry, so take those faults now rather than on the job's time.
    sink = os.open(os.devnull, os.O_WRONLY)
    try:
        warm = {"code": "def main(a, b):\n    return {'sum': a + b}\n", "args": {"a": 1, "b": 2},
                "limits": {"max_processes": 0}}
        _job_body(json.loads(json.dumps(warm)), sink)
        resource.setrlimit(resource.RLIMIT_CORE, resource.getrlimit(resource.RLIMIT_CORE))
        base64.b64decode("")
    finally:
        os.close(sink)
    t_ready = time.monotonic()
    data = bytearray()
    while True:
        chunk = os.read(4, 65536)  # below malloc's mmap threshold: no mmap/munmap per read
        if not chunk:
            break
        data += chunk
    os.close(4)
    if not data:
        return 0  # retired by the runner
    t_got = time.monotonic()
    job = json.loads(data)
    kill = _libc.kill  # taken before the snippet runs: a snippet can only break it for itself
    if job.get("phase_times"):
        job["stamps"] = {"w_fork": t_fork, "w_start": t_start, "w_ready": t_ready, "w_got_job": t_got}
    stdin = base64.b64decode(job.get("stdin") or "")
    if stdin:
        mfd = os.memfd_create("stdin", 0)
        os.write(mfd, stdin)
        os.lseek(mfd, 0, os.SEEK_SET)
        os.dup2(mfd, 0)
        os.close(mfd)
    workdir = job["workdir"]
    lim = job["limits"]
    _set_job_rlimits(lim)
    resource.setrlimit(resource.RLIMIT_NPROC, (lim["max_processes"], lim["max_processes"]))
    _set_job_env(job, workdir)
    os.write(3, (json.dumps({"kind": "setup", "isolation": setup}) + "\n").encode())
    resource.setrlimit(resource.RLIMIT_AS, (lim["memory_bytes"], lim["memory_bytes"]))
    _stamp(job, "w_setup")
    code = _job_body(job, 3)
    # Everything else of this uid is the job's leftovers (background children, setsid daemons): kill them
    # before reporting the end, so nothing runs on once the result is out. (The runner verifies later.)
    if req.get("own_uid"):
        kill(-1, signal.SIGKILL)
    _stamp(job, "w_swept")
    _write_stamps(job, 3)
    try:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except BaseException:
        maxrss = 0
    os.write(3, (json.dumps({"kind": "exit", "code": code, "maxrss": maxrss}) + "\n").encode())
    return code

# ----------------------------------------------------------------------------------------------------------
# Runner side.


def _uids_with_processes(uids, skip=()):
    """Which of uids have a live (not zombie) process, by one scan of /proc.

    skip: pids known not to run as any of uids (the runner, its zygotes, live workers of other uids); their
    status is not read (three syscalls each, a round trip through gVisor's sentry apiece). A job's leftover is
    a process the job created, so its pid is never one of those while they live."""
    # /proc/N's owner is not enough: a process that changed uid without exec is non-dumpable and shows as root.
    want = {str(u): u for u in uids}
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        try:
            fd = os.open("/proc/%s/status" % entry, os.O_RDONLY)
            try:
                text = os.read(fd, 16384).decode("ascii", "replace")
            finally:
                os.close(fd)
        except OSError:
            continue
        state = uid_line = None
        for line in text.split("\n"):
            if line.startswith("State:"):
                state = line.split()[1:2]
            elif line.startswith("Uid:"):
                uid_line = line.split()[1:]
                break
        if state and state[0] in ("Z", "X"):
            continue  # a zombie holds nothing and cannot be killed
        for u in uid_line or ():
            if u in want:
                found.add(want[u])
    return found


def _uid_has_processes(uid):
    return uid in _uids_with_processes([uid])


class Job:
    def __init__(self, jid, spec):
        self.id = jid
        self.spec = spec
        self.pid = None
        self.double_fork = False
        self.start = 0.0
        self.deadline = 0.0
        self.out = {"stdout": bytearray(), "stderr": bytearray()}
        self.truncated = {"stdout": False, "stderr": False}
        self.fds = {}  # fd -> role ("stdout", "stderr", "records", "status")
        self.records = bytearray()
        self.status_raw = bytearray()
        self.exited = False
        self.wait_status = None
        self.maxrss = 0
        self.kill_reason = None
        self.workdir = None
        self.uid = None
        self.worker = None  # prefork mode: the Worker running this job
        self.net = False  # prefork mode: needs a worker with its own network namespace
        self.setup_error = None
        self.stamps = {}  # phase name -> monotonic time (with --phase-times)
        self.rec_scanned = 0  # records bytes already searched for the worker's "exit" record


class Zygote:
    """A process forked from the runner before any job, that forks workers on request."""

    def __init__(self, pid, sock):
        self.pid = pid
        self.sock = sock
        self.inflight = 0  # spawn requests not answered yet


class Worker:
    """A pre-forked process (child of a zygote) that waits for one job."""

    def __init__(self, pid, uid, net, fds, workdir, zygote=None):
        self.zygote = zygote
        self.pid = pid
        self.uid = uid
        self.net = net
        self.workdir = workdir  # made (empty, owned by uid) before the worker was forked
        self.job_w, self.out_r, self.err_r, self.rec_r = fds
        self.job = None
        self.exited = False


class Runner:
    def __init__(self, opts):
        self.opts = opts
        self.pid = os.getpid()
        # Keep the protocol on private fds; fd 0 becomes /dev/null and fd 1 goes to stderr, so a stray print
        # in the runner (or a library it loaded) can never corrupt the frame stream.
        self.pin = os.dup(0)
        self.pout = os.dup(1)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(2, 1)
        _set_nonblock(self.pin)
        self.inbuf = bytearray()
        self.jobs = {}
        self.by_pid = {}
        self.by_fd = {}
        self.free_uids = list(range(opts.uid, opts.uid + opts.uid_count))
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        _set_nonblock(self.wake_r)
        _set_nonblock(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        # Orphans of a job (if its first process dies early) are reparented to us and reaped by the loop.
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        self.sel.register(self.pin, selectors.EVENT_READ, "proto")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.job_base = os.path.join(opts.tmp_base, "gvshim-py-%d" % self.pid)
        os.makedirs(self.job_base, exist_ok=True)
        os.chmod(self.job_base, 0o711)
        self.isolation = _probe_isolation(opts, self.job_base)
        root = os.geteuid() == 0
        sandbox_offline = opts.sandbox_network == "none"
        # With runsc --network=none the sandbox has only its own loopback: a job cannot reach the host or
        # anything outside, so the per-job network namespace (and its cost) is not needed.
        self.isolate_net = self.isolation["net_ns"] and not sandbox_offline
        mode = opts.job_mode
        if mode == "auto":
            # Prefork needs a uid per worker to clean up after a job without a pid namespace.
            mode = "prefork" if not root or opts.uid_count >= opts.max_jobs + opts.prefork else "fork"
        self.mode = mode
        self.own_uids = root and opts.uid_count > 1
        self.isolation.update({"mode": mode, "sandbox_network": opts.sandbox_network or "unknown",
                               "network_isolated": bool(self.isolate_net or sandbox_offline)})
        self.ctx = {"runner_pid": self.pid, "isolation": self.isolation, "job_base": self.job_base,
                    "isolate_net": self.isolate_net}
        self.running = True
        # Prefork mode state.
        self.zygotes = {}  # fd of its channel -> Zygote
        self.seq = 0
        self.spawning = {}  # seq -> (uid, net, workdir, Zygote)
        self.idle = {False: [], True: []}  # net -> [Worker]
        self.workers = {}  # pid -> Worker
        self.pending = []  # jobs waiting for a worker
        self.sweeping = {}  # seq -> (uid, Zygote)
        self.sweep_tries = {}  # uid -> sweeps done for its current release
        # Housekeeping that is not on any job's path (removing directories, checking that a released uid has
        # no process left) runs when the loop has nothing else to do, so a request never waits behind it.
        self.deferred = []
        self.unverified = set()  # uids whose worker is gone, waiting for the /proc check
        self.verify_scheduled = False
        if mode == "prefork":
            n = opts.zygotes or min(os.cpu_count() or 1, opts.prefork, 4)
            self.n_zygotes = max(1, n)
            for _ in range(self.n_zygotes):
                self.start_zygote()
            if self.own_uids:
                # A runner killed during a job (or a job that outlived it) may have left processes under the
                # pool's uids: every uid is checked, and swept if needed, before its first use.
                self.unverified, self.free_uids = set(self.free_uids), []
                self.verify_uids()  # refills
            else:
                self.refill()

    # --- prefork: zygote and workers -----------------------------------------------------------------------
    def start_zygote(self):
        import socket

        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            # Keep only stdio and the channel: no copies of the protocol or of any job's pipes.
            keep = b.fileno()
            os.closerange(3, keep)
            os.closerange(keep + 1, 1 << 16)
            _zygote_main(b, self.pid, self.isolation)  # never returns
        b.close()
        a.setblocking(False)
        z = Zygote(pid, a)
        self.zygotes[a.fileno()] = z
        self.sel.register(a.fileno(), selectors.EVENT_READ, "zygote")

    def zsend(self, z, obj):
        data = json.dumps(obj).encode()
        try:
            z.sock.send(data)  # a small message into an empty channel: practically never blocks
            return
        except BlockingIOError:
            pass
        z.sock.setblocking(True)
        try:
            z.sock.send(data)
        finally:
            z.sock.setblocking(False)

    def pick_zygote(self):
        """The zygote with the fewest forks outstanding (they fork in parallel, one per CPU)."""
        if not self.zygotes:
            return None
        return min(self.zygotes.values(), key=lambda z: z.inflight)

    def refill(self):
        """Keeps `prefork` idle workers of the default kind, plus one on the way per waiting job."""
        if self.mode != "prefork" or not self.running or not self.zygotes:
            return
        want = {self.isolate_net: self.opts.prefork, (not self.isolate_net): 0}
        for job in self.pending:
            want[job.net] = want.get(job.net, 0) + 1
        for net in (self.isolate_net, not self.isolate_net):
            if net and not self.isolate_net:
                continue
            have = len(self.idle[net]) + sum(1 for _, n, _, _ in self.spawning.values() if n == net)
            while have < want[net]:
                if self.own_uids:
                    if not self.free_uids:
                        self.schedule_verify(now=True)
                        return
                    uid = self.free_uids.pop(0)
                else:
                    uid = self.opts.uid
                try:
                    workdir = self.make_workdir(uid)
                except OSError as e:
                    _diag("job directory: %s" % e)
                    self.release_uid(uid)
                    return
                self.seq += 1
                z = self.pick_zygote()
                z.inflight += 1
                self.spawning[self.seq] = (uid, net, workdir, z)
                self.zsend(z, {"op": "spawn", "seq": self.seq, "uid": uid, "gid": self.opts.gid, "net": net,
                            "own_uid": self.own_uids, "sandbox_no_network": self.opts.sandbox_network == "none",
                            "workdir": workdir})
                have += 1

    def make_workdir(self, uid):
        workdir = os.path.join(self.job_base, _token())
        os.mkdir(workdir, 0o700)
        os.mkdir(os.path.join(workdir, "artifacts"), 0o700)
        if os.geteuid() == 0:
            os.chown(workdir, uid, self.opts.gid)
            os.chown(os.path.join(workdir, "artifacts"), uid, self.opts.gid)
        return workdir

    def on_zygote_readable(self, z):
        import socket

        while True:
            try:
                data, fds, _, _ = socket.recv_fds(z.sock, 1 << 16, 8)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                _diag("zygote channel: %s" % e)
                data, fds = b"", []
            if not data:
                self.zygote_lost(z)
                return
            msg = json.loads(data)
            op = msg.get("op")
            if op == "spawned":
                uid, net, workdir, _ = self.spawning.pop(msg["seq"])
                z.inflight -= 1
                w = Worker(msg["pid"], uid, net, fds, workdir, z)
                for fd in fds[1:]:
                    _set_nonblock(fd)
                self.workers[w.pid] = w
                waiting = next((j for j in self.pending if j.net == net), None)
                if waiting is not None:
                    self.pending.remove(waiting)
                    self.dispatch_job(waiting, w)
                else:
                    self.idle[net].append(w)
            elif op == "error":
                uid, _, workdir, _ = self.spawning.pop(msg["seq"])
                z.inflight -= 1
                _rmtree(workdir)
                _diag(msg.get("message"))
                for fd in fds:
                    os.close(fd)
                self.release_uid(uid)
                # Jobs waiting for a worker of that kind would wait forever: fail them.
                for job in list(self.pending):
                    self.pending.remove(job)
                    job.kill_reason = "setup"
                    job.setup_error = "could not start a worker: %s" % msg.get("message")
                    job.exited = True
                    self.maybe_finish(job)
            elif op == "exited":
                self.on_worker_exit(msg["pid"], msg["status"], msg["maxrss"])
            elif op == "swept":
                uid, _ = self.sweeping.pop(msg["seq"])
                self.release_uid_when_clean(uid)  # had leftovers: check again

    def on_worker_exit(self, pid, status, maxrss):
        w = self.workers.pop(pid, None)
        if w is None:
            return
        w.exited = True
        job = w.job
        if job is None:
            if w in self.idle[w.net]:
                self.idle[w.net].remove(w)
            for fd in (w.job_w, w.out_r, w.err_r, w.rec_r):
                os.close(fd)
            self.defer_rmtree(w.workdir)
            self.release_uid_when_clean(w.uid, clean=True)  # it never ran a job
            self.refill()
            return
        # The worker killed everything else of its uid before its "exit" record; a job without that record (killed
        # on a limit, crashed) may have left processes running: check its uid now rather than with the next batch.
        clean = job.exited and job.kill_reason is None
        if not job.exited:
            job.exited = True
            job.wait_status = status
            job.maxrss = maxrss
            self.end_job_processes(job)
        self.release_uid_when_clean(w.uid, clean=clean)

    def defer(self, fn, *args):
        self.deferred.append((fn, args))

    def defer_rmtree(self, path):
        self.defer(_rmtree, path)

    def release_uid_when_clean(self, uid, clean=False):
        """Returns a worker's uid to the pool once no process of it is alive; sweeps (as that uid) if needed.

        The check (a /proc scan, deferred) waits for a few released uids only when the uid is known clean: its
        worker never ran a job, or ended its job with its own kill(-1) and "exit" record. Any other uid may have
        processes running on, and is checked at once."""
        if not self.own_uids:
            return
        self.unverified.add(uid)
        self.schedule_verify(now=not clean)

    # Released uids checked by one /proc scan (a few syscalls per process, each a trip through gVisor).
    VERIFY_BATCH = 4

    def schedule_verify(self, now=False):
        """Defers a check of the released uids: once a few have gathered; at once when asked (now), when the pool
        runs short or when a job waits for a worker."""
        if self.verify_scheduled or not self.unverified:
            return
        if now or len(self.unverified) >= self.VERIFY_BATCH or len(self.free_uids) < 2 or self.pending:
            self.verify_scheduled = True
            self.defer(self.verify_uids)

    def verify_uids(self):
        self.verify_scheduled = False
        uids, self.unverified = self.unverified, set()
        skip = {self.pid}
        skip.update(z.pid for z in self.zygotes.values())
        skip.update(pid for pid, w in self.workers.items() if not w.exited and w.uid not in uids)
        busy = _uids_with_processes(uids, skip)
        for uid in sorted(uids):
            if uid not in busy:
                self.sweep_tries.pop(uid, None)
                self.free_uids.append(uid)
                continue
            tries = self.sweep_tries.get(uid, 0)
            z = self.pick_zygote()
            if tries >= 20 or z is None:
                _diag("uid %d still has processes after %d sweeps; not reusing it" % (uid, tries))
                continue
            self.sweep_tries[uid] = tries + 1
            self.seq += 1
            self.sweeping[self.seq] = (uid, z)
            self.zsend(z, {"op": "sweep", "seq": self.seq, "uid": uid, "gid": self.opts.gid})
        self.refill()

    def zygote_lost(self, z):
        """A zygote died: its workers died with it (parent-death signal). Fail their jobs, start anew."""
        _diag("zygote exited; restarting it")
        if self.zygotes.pop(z.sock.fileno(), None) is not None:
            self.sel.unregister(z.sock.fileno())
            z.sock.close()
        for seq, (uid, _, workdir, sz) in list(self.spawning.items()):
            if sz is z:
                del self.spawning[seq]
                _rmtree(workdir)
                self.release_uid_when_clean(uid, clean=True)  # its worker was never handed over
        for seq, (uid, sz) in list(self.sweeping.items()):
            if sz is z:
                del self.sweeping[seq]
                self.release_uid_when_clean(uid)
        for w in list(self.workers.values()):
            if w.zygote is not z:
                continue
            self.workers.pop(w.pid, None)
            try:
                os.kill(-w.pid, signal.SIGKILL)
            except OSError:
                pass
            if w.job is not None and not w.job.exited:
                if w.job.kill_reason is None:
                    w.job.kill_reason = "lost"
                w.job.exited = True
                self.end_job_processes(w.job)
            elif w.job is None:
                for fd in (w.job_w, w.out_r, w.err_r, w.rec_r):
                    os.close(fd)
                _rmtree(w.workdir)
            # Leftovers of a job killed here may still run: the uid is checked (and swept) before reuse.
            self.release_uid_when_clean(w.uid)
        for net in self.idle:
            self.idle[net] = [w for w in self.idle[net] if w.zygote is not z]
        if self.running:
            self.start_zygote()
            self.refill()

    def dispatch_job(self, job, w):
        """Hands a job to an idle worker: working directory for its uid, then the job over its channel."""
        w.job = job
        job.worker = w
        job.uid = w.uid
        job.pid = w.pid
        spec = job.spec
        job.workdir = w.workdir
        if self.opts.phase_times:
            job.stamps["dir"] = time.monotonic()
        for fd, role in ((w.out_r, "stdout"), (w.err_r, "stderr"), (w.rec_r, "records")):
            job.fds[fd] = role
            self.by_fd[fd] = job
            self.sel.register(fd, selectors.EVENT_READ, "job")
        job.start = time.monotonic()
        job.deadline = job.start + spec["limits"]["wall_timeout_ms"] / 1000.0
        if getattr(job, "setup_error", None):
            os.close(w.job_w)  # the worker retires without running anything
            self.kill(job, "setup")
            return
        payload = {"code": spec["code"], "args": spec["args"], "env": spec["env"], "limits": spec["limits"],
                   "stdin": spec["stdin_b64"], "workdir": job.workdir, "id": job.id,
                   "phase_times": self.opts.phase_times}
        try:
            data = json.dumps(payload).encode()
            view = memoryview(data)
            while view:
                view = view[os.write(w.job_w, view):]
        except OSError as e:
            job.setup_error = "could not hand the job to its worker: %s" % e
            self.kill(job, "setup")
        finally:
            os.close(w.job_w)
        if self.opts.phase_times:
            job.stamps["handoff"] = time.monotonic()

    def check_exit_record(self, job):
        """Prefork: the worker's own "exit" record ends the job without waiting for the process to be reaped."""
        end = job.records.rfind(b"\n")
        if end < job.rec_scanned:
            return
        lines = bytes(job.records[job.rec_scanned:end]).split(b"\n")
        job.rec_scanned = end + 1
        for line in lines:
            if b'"exit"' not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("kind") == "exit" and isinstance(rec.get("code"), int):
                job.exited = True
                job.wait_status = (rec["code"] & 0xFF) << 8
                job.maxrss = rec.get("maxrss") if isinstance(rec.get("maxrss"), int) else 0
                return

    def end_job_processes(self, job):
        """The job's main process is done (or gone): kill its group, take what its pipes hold, finish."""
        if self.opts.phase_times:
            job.stamps.setdefault("end", time.monotonic())
        # Stragglers (a job without a pid namespace, a worker's leftovers): the group dies with the job.
        try:
            os.kill(-job.pid, signal.SIGKILL)
        except OSError:
            pass
        # Take what the pipes already hold; a writer that escaped the group must not keep the job open.
        for fd in list(job.fds):
            role = job.fds[fd]
            while True:
                try:
                    chunk = os.read(fd, 1 << 16)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                if not chunk:
                    break
                self.take(job, role, chunk)
            self.sel.unregister(fd)
            os.close(fd)
            del job.fds[fd]
            del self.by_fd[fd]
        self.maybe_finish(job)

    # --- protocol -------------------------------------------------------------------------------------
    def send(self, obj):
        data = json.dumps(obj, separators=(",", ":")).encode()
        frame = struct.pack(">I", len(data)) + data
        view = memoryview(frame)
        while view:
            try:
                n = os.write(self.pout, view)
            except InterruptedError:
                continue
            except BrokenPipeError:
                self.running = False
                return
            view = view[n:]

    def on_proto_readable(self):
        try:
            chunk = os.read(self.pin, 65536)  # below malloc's mmap threshold: no mmap/munmap per read
        except BlockingIOError:
            return
        if not chunk:
            self.running = False  # the shim went away: stop, killing every job
            return
        self.inbuf += chunk
        while len(self.inbuf) >= 4:
            (n,) = struct.unpack(">I", self.inbuf[:4])
            if n > MAX_FRAME:
                self.send({"type": "error", "message": "frame of %d bytes exceeds the %d byte limit; "
                           "stream cannot be resynchronised" % (n, MAX_FRAME)})
                self.running = False
                return
            if len(self.inbuf) < 4 + n:
                break
            body = bytes(self.inbuf[4:4 + n])
            del self.inbuf[:4 + n]
            try:
                msg = json.loads(body)
                if not isinstance(msg, dict):
                    raise ValueError("frame is not a JSON object")
            except ValueError as e:
                self.send({"type": "error", "message": "malformed frame: %s" % e})
                continue
            self.dispatch(msg)

    def dispatch(self, msg):
        t = msg.get("type")
        if t == "exec":
            self.start_job(msg)
        elif t == "cancel":
            job = self.jobs.get(msg.get("id"))
            if job is not None:
                self.kill(job, "cancel")
        elif t == "ping":
            self.send({"type": "pong", "id": msg.get("id"), "active_jobs": len(self.jobs)})
        elif t == "shutdown":
            self.running = False
        else:
            self.send({"type": "error", "id": msg.get("id"), "message": "unknown frame type %r" % (t,)})

    def reject(self, jid, message):
        self.send({"type": "result", "id": jid, "status": STATUS_REJECTED, "exit_code": None, "signal": None,
                   "stdout": "", "stderr": "", "stdout_truncated": False, "stderr_truncated": False,
                   "result_json": None, "duration_ms": 0.0, "peak_memory_bytes": 0, "artifacts": [],
                   "artifacts_truncated": False, "error": message})

    def parse_spec(self, msg):
        code = msg.get("code")
        if not isinstance(code, str):
            raise ValueError("code must be a string")
        args_json = msg.get("args_json")
        if args_json in (None, ""):
            args = {}
        elif isinstance(args_json, str):
            try:
                args = json.loads(args_json)
            except ValueError as e:
                raise ValueError("args_json is not valid JSON: %s" % e)
        else:
            raise ValueError("args_json must be a string")
        env = msg.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) and k and "=" not in k
                                                and "\0" not in k + v for k, v in env.items()):
            raise ValueError("env must map names to strings")
        limits = dict(self.opts.defaults)
        for k, v in (msg.get("limits") or {}).items():
            if k not in limits:
                raise ValueError("unknown limit %r" % k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError("limit %s must be a non-negative integer" % k)
            if v:
                limits[k] = v
        stdin_b64 = msg.get("stdin") or ""
        stdin = base64.b64decode(stdin_b64, validate=True)
        return {"code": code, "args": args, "env": env, "limits": limits, "stdin": stdin, "stdin_b64": stdin_b64,
                "allow_network": bool(msg.get("allow_network")), "stream": bool(msg.get("stream"))}

    # --- jobs ---------------------------------------------------------------------------------------------
    def start_job(self, msg):
        jid = msg.get("id")
        if not isinstance(jid, str) or not jid:
            self.send({"type": "error", "message": "exec frame without a string id"})
            return
        if jid in self.jobs:
            self.reject(jid, "a job with id %r is already running" % jid)
            return
        t_recv = time.monotonic()
        if len(self.jobs) >= self.opts.max_jobs or (self.mode == "fork" and self.opts.uid_count > 1
                                                     and not self.free_uids):
            self.reject(jid, "runner busy: %d jobs running" % len(self.jobs))
            return
        try:
            spec = self.parse_spec(msg)
        except (ValueError, TypeError) as e:
            self.reject(jid, "bad request: %s" % e)
            return
        job = Job(jid, spec)
        if self.opts.phase_times:
            job.stamps["recv"] = t_recv
        if self.mode == "prefork":
            job.net = bool(self.isolate_net and not spec["allow_network"])
            # Until a worker takes it, the wall clock runs from arrival (reset at hand-over).
            job.deadline = t_recv + spec["limits"]["wall_timeout_ms"] / 1000.0
            self.jobs[jid] = job
            if self.idle[job.net]:
                # The replacement worker is asked for after this job's result is out (maybe_finish), so its
                # fork does not compete with the job for the CPU.
                self.dispatch_job(job, self.idle[job.net].pop(0))
            else:
                self.pending.append(job)
                self.refill()
            return
        if self.opts.phase_times:
            spec["stamps"] = {}
        spec["id"] = jid
        job.uid = self.free_uids.pop(0) if self.opts.uid_count > 1 else self.opts.uid
        spec["uid"] = job.uid
        spec["gid"] = self.opts.gid
        parent_fds = []
        child_fds = []
        try:
            job.workdir = os.path.join(self.job_base, _token())
            os.mkdir(job.workdir, 0o700)
            os.mkdir(os.path.join(job.workdir, "artifacts"), 0o700)
            if os.geteuid() == 0:
                os.chown(job.workdir, job.uid, self.opts.gid)
                os.chown(os.path.join(job.workdir, "artifacts"), job.uid, self.opts.gid)
            spec["workdir"] = job.workdir
            if self.opts.phase_times:
                job.stamps["dir"] = time.monotonic()
            stdin_fd = os.memfd_create("stdin", 0)
            child_fds.append(stdin_fd)
            if spec["stdin"]:
                os.write(stdin_fd, spec["stdin"])
                os.lseek(stdin_fd, 0, os.SEEK_SET)
            for role in ("stdout", "stderr", "records", "status"):
                r, w = os.pipe()
                parent_fds.append((r, role))
                child_fds.append(w)
            job.start = time.monotonic()
            job.deadline = job.start + spec["limits"]["wall_timeout_ms"] / 1000.0
            pid = os.fork()
            if pid == 0:
                _child_entry(spec, self.ctx, child_fds)  # never returns
                os._exit(SETUP_FAILED_EXIT)
        except OSError as e:
            for fd, _ in parent_fds:
                os.close(fd)
            for fd in child_fds:
                os.close(fd)
            self.release_uid(job.uid)
            if job.workdir:
                _rmtree(job.workdir)
            err = STATUS_PROGRAM_ERROR if e.errno == errno.EAGAIN else STATUS_INTERNAL
            self.send({"type": "result", "id": jid, "status": err, "error": "could not start job: %s" % e,
                       "exit_code": None, "signal": None, "stdout": "", "stderr": "", "stdout_truncated": False,
                       "stderr_truncated": False, "result_json": None, "duration_ms": 0.0,
                       "peak_memory_bytes": 0, "artifacts": [], "artifacts_truncated": False})
            return
        for fd in child_fds:
            os.close(fd)
        job.pid = pid
        job.double_fork = self.isolation["pid_ns"]
        for fd, role in parent_fds:
            _set_nonblock(fd)
            job.fds[fd] = role
            self.by_fd[fd] = job
            self.sel.register(fd, selectors.EVENT_READ, "job")
        self.jobs[jid] = job
        self.by_pid[pid] = job

    def release_uid(self, uid):
        if self.opts.uid_count > 1:
            self.free_uids.append(uid)

    def kill(self, job, reason):
        if job.kill_reason is None:
            job.kill_reason = reason
        if job.pid is None:  # prefork: still waiting for a worker
            if job in self.pending:
                self.pending.remove(job)
            job.exited = True
            self.maybe_finish(job)
            return
        for target in (-job.pid, job.pid):
            try:
                os.kill(target, signal.SIGKILL)
            except OSError:
                pass

    def on_job_readable(self, fd):
        job = self.by_fd[fd]
        role = job.fds[fd]
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        if not chunk:
            self.close_fd(job, fd)
            return
        self.take(job, role, chunk)

    def take(self, job, role, chunk):
        if role in ("stdout", "stderr"):
            buf = job.out[role]
            room = job.spec["limits"]["output_bytes"] - len(buf)
            if len(chunk) > room:
                chunk = chunk[:max(room, 0)]
                job.truncated[role] = True
                self.kill(job, "output")
            if chunk:
                buf += chunk
                if job.spec["stream"]:
                    self.send({"type": "output", "id": job.id, "stream": role, "data": _b64(chunk)})
        elif role == "records":
            if len(job.records) < RESULT_CAP + 4096:
                job.records += chunk
            if job.worker is not None and not job.exited:
                self.check_exit_record(job)
                if job.exited:
                    self.end_job_processes(job)
        else:
            job.status_raw += chunk

    def close_fd(self, job, fd):
        self.sel.unregister(fd)
        os.close(fd)
        del job.fds[fd]
        del self.by_fd[fd]
        self.maybe_finish(job)

    def reap(self):
        while True:
            try:
                pid, st, ru = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            z = next((z for z in self.zygotes.values() if z.pid == pid), None)
            if z is not None:
                self.zygote_lost(z)
                continue
            job = self.by_pid.pop(pid, None)
            if job is None:
                continue  # an orphan handed to us as subreaper
            job.exited = True
            job.wait_status = st
            job.maxrss = ru.ru_maxrss * 1024
            if self.opts.phase_times:
                job.stamps["end"] = time.monotonic()
            self.end_job_processes(job)

    def sweep_uid(self, uid):
        """Kills what a finished job left running under its uid.

        The pid namespace normally takes care of that, but not every kernel does (gVisor 20221219 leaves a
        namespace's processes alive when its init exits), and without one a setsid() escapes the group.
        Only done when no other live job shares the uid, and only if such a process exists."""
        # Only a uid from the runner's own pool: a single shared uid (65534, nobody, by default) is used by other
        # software too (runsc's own sandbox processes run as nobody on a host) and must never be swept.
        if uid == 0 or self.opts.uid_count <= 1 or any(j.uid == uid for j in self.jobs.values()):
            return
        if not _uid_has_processes(uid):
            return
        pid = os.fork()
        if pid == 0:
            try:
                os.setgid(self.opts.gid)
                os.setuid(uid)
                os.kill(-1, signal.SIGKILL)  # every process this uid may signal, i.e. its own
            finally:
                os._exit(0)
        os.waitpid(pid, 0)

    def maybe_finish(self, job):
        if not job.exited or job.fds or job.id not in self.jobs:
            return
        del self.jobs[job.id]
        if job.worker is None and os.geteuid() == 0 and job.uid is not None:
            self.sweep_uid(job.uid)  # fork mode; in prefork mode the uid is checked when the worker is reaped
        duration = (time.monotonic() - job.start) * 1000.0 if job.start else 0.0
        try:
            self.send(self.result_frame(job, duration))
        finally:
            if job.workdir:
                self.defer_rmtree(job.workdir)
            if job.worker is None and job.uid is not None:
                self.release_uid(job.uid)
            self.refill()

    def collect_artifacts(self, job):
        out, total, truncated = [], 0, False
        try:
            # The usual case, nothing written: one rmdir instead of open, list and close. (It never follows a
            # symlink the job may have put there; the directory is removed with the job's anyway.)
            os.rmdir(os.path.join(job.workdir, "artifacts"))
            return out, False
        except OSError:
            pass
        try:
            dfd = os.open(os.path.join(job.workdir, "artifacts"), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            return out, False
        try:
            for name in sorted(os.listdir(dfd)):
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
                except OSError:
                    continue
                try:
                    st = os.fstat(fd)
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    if len(out) >= self.opts.max_artifacts or total + st.st_size > self.opts.max_artifact_bytes:
                        truncated = True
                        continue
                    data = bytearray()
                    while len(data) < st.st_size:
                        chunk = os.read(fd, st.st_size - len(data))
                        if not chunk:
                            break
                        data += chunk
                    total += len(data)
                    out.append({"name": name, "content": _b64(bytes(data)), "size": len(data)})
                finally:
                    os.close(fd)
        finally:
            os.close(dfd)
        return out, truncated

    def result_frame(self, job, duration):
        lim = job.spec["limits"]
        st = job.wait_status
        iso = None
        result_json = None
        kind = None
        bad_result = None
        for line in bytes(job.records).split(b"\n"):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if not isinstance(rec, dict):
                continue
            k = rec.get("kind")
            if k == "setup" and iso is None:
                iso = rec.get("isolation")
            elif k == "result":
                result_json = rec.get("json")
            elif k == "memory":
                kind = "memory"
            elif k == "bad_result":
                bad_result = rec.get("message")
            elif k == "stamps" and isinstance(rec.get("stamps"), dict):
                for name, t in rec["stamps"].items():
                    if isinstance(t, (int, float)):
                        job.stamps.setdefault(name, t)
        peak = job.maxrss
        if job.double_fork:
            try:
                info = json.loads(bytes(job.status_raw))
                st = info["wait_status"]
                peak = info["maxrss"]
            except (ValueError, KeyError, TypeError):
                st = None  # the supervisor process was killed before it could report
        exit_code = sig = None
        if st is not None:
            if os.WIFEXITED(st):
                exit_code = os.WEXITSTATUS(st)
            elif os.WIFSIGNALED(st):
                sig = os.WTERMSIG(st)
        elif job.kill_reason:
            sig = signal.SIGKILL
        stderr_tail = bytes(job.out["stderr"][-512:])
        error = ""
        if getattr(job, "setup_error", None):
            status, error = STATUS_INTERNAL, job.setup_error
        elif job.kill_reason == "lost":
            status, error = STATUS_INTERNAL, "the job's worker was lost (the runner's zygote died)"
        elif job.kill_reason == "timeout":
            status, error = STATUS_TIMEOUT, "wall timeout of %d ms exceeded" % lim["wall_timeout_ms"]
        elif job.kill_reason == "output":
            status, error = STATUS_OUTPUT, "output limit of %d bytes exceeded" % lim["output_bytes"]
        elif job.kill_reason == "cancel":
            status, error = STATUS_INTERNAL, "cancelled"
        elif job.kill_reason == "shutdown":
            status, error = STATUS_INTERNAL, "runner shutting down"
        elif sig in (signal.SIGXCPU,) or (sig == signal.SIGKILL and self._cpu_exhausted(job, duration)):
            status, error = STATUS_TIMEOUT, "cpu time limit of %d ms exceeded" % lim["cpu_time_ms"]
        elif kind == "memory" or (exit_code not in (0, None) and b"\nMemoryError" in b"\n" + stderr_tail):
            status, error = STATUS_MEMORY, "memory limit of %d bytes exceeded" % lim["memory_bytes"]
        elif exit_code == SETUP_FAILED_EXIT and iso is None:
            status, error = STATUS_INTERNAL, "job setup failed: %s" % stderr_tail.decode("utf-8", "replace").strip()
        elif exit_code == 0 and bad_result is None:
            status = STATUS_SUCCESS
        else:
            status = STATUS_PROGRAM_ERROR
            if bad_result:
                error = bad_result
            elif sig is not None:
                error = "killed by signal %d" % sig
            else:
                error = "exit status %d" % exit_code
        artifacts, art_trunc = self.collect_artifacts(job) if job.workdir else ([], False)
        frame = {"type": "result", "id": job.id, "status": status, "exit_code": exit_code, "signal": sig,
                "stdout": _b64(bytes(job.out["stdout"])), "stderr": _b64(bytes(job.out["stderr"])),
                "stdout_truncated": job.truncated["stdout"], "stderr_truncated": job.truncated["stderr"],
                "result_json": result_json if status == STATUS_SUCCESS else None,
                "duration_ms": round(duration, 3), "peak_memory_bytes": peak, "artifacts": artifacts,
                "artifacts_truncated": art_trunc, "error": error, "isolation": iso or {}}
        if self.opts.phase_times:
            frame["phases"] = self.phases(job)
        return frame

    @staticmethod
    def phases(job):
        """Milliseconds between consecutive timestamps of the job's path, named by the later one.

        Worker stamps taken before the job arrived (prefork) are reported as prefork_*: not on the path."""
        st = dict(job.stamps)
        st["sent"] = time.monotonic()
        out = {}
        t0 = st.get("recv")
        if "w_fork" in st and "w_start" in st and "w_ready" in st:
            wf, ws, wr = st.pop("w_fork"), st.pop("w_start"), st.pop("w_ready")
            out["prefork_fork"] = round((ws - wf) * 1000, 3)
            out["prefork_setup"] = round((wr - ws) * 1000, 3)
        order = sorted((t, n) for n, t in st.items() if t0 is None or t >= t0)
        for (ta, _), (tb, name) in zip(order, order[1:]):
            out[name] = round((tb - ta) * 1000, 3)
        if t0 is not None:
            out["total"] = round((st["sent"] - t0) * 1000, 3)
        return out

    @staticmethod
    def _cpu_exhausted(job, duration_ms):
        # RLIMIT_CPU's hard limit ends in SIGKILL; with a wall clock well below it, that is the only source.
        return duration_ms >= job.spec["limits"]["cpu_time_ms"] and job.kill_reason is None

    # --- loop ---------------------------------------------------------------------------------------------
    def run(self):
        self.send({"type": "ready", "runner": "python", "protocol": PROTOCOL_VERSION, "pid": self.pid,
                   "version": "%d.%d.%d" % sys.version_info[:3], "isolation": self.isolation,
                   "max_jobs": self.opts.max_jobs, "defaults": self.opts.defaults})
        while self.running:
            now = time.monotonic()
            timeout = None
            for job in list(self.jobs.values()):
                if job.kill_reason is None:
                    left = job.deadline - now
                    if left <= 0:
                        self.kill(job, "timeout")
                    elif timeout is None or left < timeout:
                        timeout = left
            if self.deferred:
                # Housekeeping only when nothing is ready: requests and job output come first.
                if not self.poll(0):
                    fn, args = self.deferred.pop(0)
                    try:
                        fn(*args)
                    except Exception as e:  # noqa: BLE001 - housekeeping must not end the runner
                        _diag("housekeeping: %s" % e)
                continue
            self.poll(timeout)
        self.shutdown()

    # Order in which ready descriptors are served: a new request first, then the jobs' pipes.
    _EVENT_ORDER = {"proto": 0, "job": 1, "zygote": 2, "wake": 3}

    def poll(self, timeout, protocol=True):
        """Waits up to timeout for events and serves them; returns whether there were any."""
        try:
            events = self.sel.select(timeout)
        except InterruptedError:
            return True
        if len(events) > 1:
            events.sort(key=lambda e: self._EVENT_ORDER.get(e[0].data, 1))
        for key, _ in events:
            if key.data == "proto":
                if protocol:
                    self.on_proto_readable()
            elif key.data == "wake":
                try:
                    while os.read(self.wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                self.reap()  # every zombie there is now: a later SIGCHLD writes a new wakeup byte
            elif key.data == "zygote":
                z = self.zygotes.get(key.fd)
                if z is not None:
                    self.on_zygote_readable(z)
            elif key.fd in self.by_fd:
                self.on_job_readable(key.fd)
        return bool(events)

    def shutdown(self):
        self.running = False
        for job in list(self.jobs.values()):
            self.kill(job, "shutdown")
        deadline = time.monotonic() + 5
        while self.jobs and time.monotonic() < deadline:
            self.poll(0.05, protocol=False)
        if self.zygotes:
            # Closing the channels ends the zygotes; idle workers die with them (parent-death signal).
            for fd, z in list(self.zygotes.items()):
                self.sel.unregister(fd)
                z.sock.close()
            self.zygotes.clear()
            for w in list(self.workers.values()):
                try:
                    os.kill(-w.pid, signal.SIGKILL)
                except OSError:
                    pass
        import shutil

        shutil.rmtree(self.job_base, ignore_errors=True)


def _preload(mods):
    import importlib

    # Kept small on purpose: every preloaded page makes each fork (a worker per job) more expensive inside
    # gVisor. Heavier modules (asyncio, decimal, numpy...) can be added with --preload.
    for m in ["json", "math", "re", "random", "datetime", "collections", "itertools", "functools", "string",
              "base64", "hashlib", "io", "time", "typing", "inspect", "traceback", "copy", "heapq",
              "bisect"] + mods:
        try:
            importlib.import_module(m)
        except Exception as e:  # noqa: BLE001 - a missing optional module is not fatal
            _diag("preload %s: %s" % (m, e))


def main(argv):
    opts = Options(argv)
    _preload(opts.preload)
    Runner(opts).run()


if __name__ == "__main__":
    main(sys.argv[1:])
