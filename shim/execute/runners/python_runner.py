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
import secrets
import selectors
import shutil
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


def _call_main(fn, args):
    """RAGFlow's convention: main(**args) for an object whose keys main accepts, else main(args)."""
    import inspect

    if not isinstance(args, dict):
        return fn(args)
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
    cpu_s = max(1, -(-lim["cpu_time_ms"] // 1000))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (lim["file_size_bytes"], lim["file_size_bytes"]))
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(job["gid"])
        os.setuid(job["uid"])
        if os.getuid() == 0 or os.geteuid() == 0:
            raise OSError(errno.EPERM, "privilege drop did not take effect")
        setup["uid"] = os.getuid()
    # NPROC counts the processes of the (now unprivileged) uid; set it after the drop so root is not limited.
    resource.setrlimit(resource.RLIMIT_NPROC, (lim["max_processes"], lim["max_processes"]))
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    # The credential change cleared any parent-death signal; the job dies with its parent.
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1"}
    env.update(job["env"])
    os.environ.clear()
    os.environ.update(env)
    os.write(3, (json.dumps({"kind": "setup", "isolation": setup}) + "\n").encode())
    # Address-space limit last: everything above may still allocate.
    resource.setrlimit(resource.RLIMIT_AS, (lim["memory_bytes"], lim["memory_bytes"]))
    return _job_body(job, 3)


def _child_entry(job, ctx, fds):
    """First process of a job (forked from the runner). Never returns."""
    code = SETUP_FAILED_EXIT
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
        if iso["net_ns"] and not job["allow_network"]:
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
        if not job["allow_network"] and not (unshared & CLONE_NEWNET) and iso["net_ns"]:
            raise OSError(errno.EPERM, "could not create the network namespace")
        if unshared & CLONE_NEWPID:
            # We stay outside the new pid namespace; our child is its init. When that child exits the kernel
            # kills everything else in the namespace, so nothing the snippet started can outlive it.
            pid = os.fork()
            if pid == 0:
                rc = SETUP_FAILED_EXIT
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
# Runner side.


def _uid_has_processes(uid):
    # /proc/N's owner is not enough: a process that changed uid without exec is non-dumpable and shows as root.
    want = str(uid)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/status" % entry) as f:
                for line in f:
                    if line.startswith("State:") and line.split()[1] in ("Z", "X"):
                        break  # a zombie holds nothing and cannot be killed
                    if line.startswith("Uid:"):
                        if want in line.split()[1:]:
                            return True
                        break
        except OSError:
            continue
    return False


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
        self.ctx = {"runner_pid": self.pid, "isolation": self.isolation, "job_base": self.job_base}
        self.running = True

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
            chunk = os.read(self.pin, 1 << 20)
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
        stdin = base64.b64decode(msg.get("stdin") or "", validate=True)
        return {"code": code, "args": args, "env": env, "limits": limits, "stdin": stdin,
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
        if len(self.jobs) >= self.opts.max_jobs or (self.opts.uid_count > 1 and not self.free_uids):
            self.reject(jid, "runner busy: %d jobs running" % len(self.jobs))
            return
        try:
            spec = self.parse_spec(msg)
        except (ValueError, TypeError) as e:
            self.reject(jid, "bad request: %s" % e)
            return
        job = Job(jid, spec)
        spec["id"] = jid
        job.uid = self.free_uids.pop(0) if self.opts.uid_count > 1 else self.opts.uid
        spec["uid"] = job.uid
        spec["gid"] = self.opts.gid
        parent_fds = []
        child_fds = []
        try:
            job.workdir = os.path.join(self.job_base, secrets.token_hex(16))
            os.mkdir(job.workdir, 0o700)
            os.mkdir(os.path.join(job.workdir, "artifacts"), 0o700)
            if os.geteuid() == 0:
                os.chown(job.workdir, job.uid, self.opts.gid)
                os.chown(os.path.join(job.workdir, "artifacts"), job.uid, self.opts.gid)
            spec["workdir"] = job.workdir
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
                shutil.rmtree(job.workdir, ignore_errors=True)
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
            job = self.by_pid.pop(pid, None)
            if job is None:
                continue  # an orphan handed to us as subreaper
            job.exited = True
            job.wait_status = st
            job.maxrss = ru.ru_maxrss * 1024
            # Stragglers of a job without a pid namespace: the group dies with the job.
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
                    if not chunk:
                        break
                    self.take(job, role, chunk)
                self.sel.unregister(fd)
                os.close(fd)
                del job.fds[fd]
                del self.by_fd[fd]
            self.maybe_finish(job)

    def sweep_uid(self, uid):
        """Kills what a finished job left running under its uid.

        The pid namespace normally takes care of that, but not every kernel does (gVisor 20221219 leaves a
        namespace's processes alive when its init exits), and without one a setsid() escapes the group.
        Only done when no other live job shares the uid, and only if such a process exists."""
        if uid == 0 or any(j.uid == uid for j in self.jobs.values()):
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
        if os.geteuid() == 0:
            self.sweep_uid(job.uid)
        duration = (time.monotonic() - job.start) * 1000.0
        try:
            self.send(self.result_frame(job, duration))
        finally:
            shutil.rmtree(job.workdir, ignore_errors=True)
            self.release_uid(job.uid)

    def collect_artifacts(self, job):
        out, total, truncated = [], 0, False
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
        if job.kill_reason == "timeout":
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
        artifacts, art_trunc = self.collect_artifacts(job)
        return {"type": "result", "id": job.id, "status": status, "exit_code": exit_code, "signal": sig,
                "stdout": _b64(bytes(job.out["stdout"])), "stderr": _b64(bytes(job.out["stderr"])),
                "stdout_truncated": job.truncated["stdout"], "stderr_truncated": job.truncated["stderr"],
                "result_json": result_json if status == STATUS_SUCCESS else None,
                "duration_ms": round(duration, 3), "peak_memory_bytes": peak, "artifacts": artifacts,
                "artifacts_truncated": art_trunc, "error": error, "isolation": iso or {}}

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
            for job in self.jobs.values():
                if job.kill_reason is None:
                    left = job.deadline - now
                    if left <= 0:
                        self.kill(job, "timeout")
                    elif timeout is None or left < timeout:
                        timeout = left
            try:
                events = self.sel.select(timeout)
            except InterruptedError:
                continue
            for key, _ in events:
                if key.data == "proto":
                    self.on_proto_readable()
                elif key.data == "wake":
                    try:
                        while os.read(self.wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    self.reap()
                elif key.fd in self.by_fd:
                    self.on_job_readable(key.fd)
            self.reap()  # a wakeup byte can be consumed before the signal is delivered; reaping is cheap
        self.shutdown()

    def shutdown(self):
        for job in list(self.jobs.values()):
            self.kill(job, "shutdown")
        deadline = time.monotonic() + 5
        while self.jobs and time.monotonic() < deadline:
            self.sel.select(0.05)
            self.reap()
        shutil.rmtree(self.job_base, ignore_errors=True)


def _preload(mods):
    import importlib

    for m in ["json", "math", "re", "random", "datetime", "collections", "itertools", "functools", "string",
              "decimal", "fractions", "statistics", "base64", "hashlib", "io", "time", "typing", "dataclasses",
              "inspect", "traceback", "asyncio", "csv", "textwrap", "uuid", "copy", "heapq", "bisect"] + mods:
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
