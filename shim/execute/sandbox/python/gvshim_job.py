# The job itself, inside its worker: limits, environment, the snippet (RAGFlow's calling convention), and the
# records it sends back on fd 3 (newline-delimited JSON): setup, result / bad_result, memory, artifacts, exit.
#
# Everything here runs as the job's uid in the job's own namespaces, after the snippet may have run: a
# snippet can make these records lie about itself, never about another job.

import errno
import json
import os
import resource
import signal
import stat
import sys
import time

from gvshim_protocol import RESULT_CAP

_FunctionType = type(lambda: None)


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


def call_main(fn, args):
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


def record(fd, obj):
    data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def run_snippet(job, res_fd):
    """Runs the snippet with fds 0/1/2 already the job's. Returns the exit code."""
    import builtins
    import io
    import traceback
    import types

    memory_marker = b'{"kind":"memory"}\n'
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
                result = call_main(main, job["args"])
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
                    record(res_fd, {"kind": "bad_result", "message": msg})
                    code = 1
                else:
                    if len(text) > RESULT_CAP:
                        msg = "main returned a result larger than %d bytes" % RESULT_CAP
                        sys.stderr.write(msg + "\n")
                        record(res_fd, {"kind": "bad_result", "message": msg})
                        code = 1
                    else:
                        record(res_fd, {"kind": "result", "json": text})
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


def set_rlimits(lim):
    cpu_s = max(1, -(-lim["cpu_time_ms"] // 1000))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (lim["file_size_bytes"], lim["file_size_bytes"]))
    resource.setrlimit(resource.RLIMIT_NPROC, (lim["max_processes"], lim["max_processes"]))


def set_env(job, workdir, isolated):
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": "/tmp" if isolated else workdir,
           "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    env.update(job["env"])
    os.environ.clear()
    os.environ.update(env)


def collect_artifacts(workdir, max_files, max_bytes):
    """Regular files in <workdir>/artifacts (not following links), within the bounds."""
    out, total, truncated = [], 0, False
    import base64

    try:
        dfd = os.open(os.path.join(workdir, "artifacts"), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
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
                if len(out) >= max_files or total + st.st_size > max_bytes:
                    truncated = True
                    continue
                data = bytearray()
                while len(data) < st.st_size:
                    chunk = os.read(fd, st.st_size - len(data))
                    if not chunk:
                        break
                    data += chunk
                total += len(data)
                out.append({"name": name, "content": base64.b64encode(bytes(data)).decode("ascii"),
                            "size": len(data)})
            finally:
                os.close(fd)
    finally:
        os.close(dfd)
    return out, truncated


def run_job(job, workdir, setup, opts, isolated, kill):
    """The worker's part once its job arrived (fds: 0 stdin, 1/2 output, 3 records). Returns the exit code."""
    import base64

    stamps = job.get("stamps")
    stdin = base64.b64decode(job.get("stdin") or "")
    if stdin:
        mfd = os.memfd_create("stdin", 0)
        os.write(mfd, stdin)
        os.lseek(mfd, 0, os.SEEK_SET)
        os.dup2(mfd, 0)
        os.close(mfd)
    lim = job["limits"]
    set_rlimits(lim)
    set_env(job, workdir, isolated)
    record(3, {"kind": "setup", "isolation": setup})
    resource.setrlimit(resource.RLIMIT_AS, (lim["memory_bytes"], lim["memory_bytes"]))
    if stamps is not None:
        stamps["w_setup"] = time.monotonic()
    code = run_snippet(job, 3)
    if stamps is not None:
        stamps["code_done"] = time.monotonic()
    # Everything else of this uid in this pid namespace is the job's leftovers (background children, setsid
    # daemons): gone before the end is reported. (The namespace dies with this process anyway.)
    try:
        kill(-1, signal.SIGKILL)
    except OSError:
        pass  # nothing else was left
    try:
        arts, truncated = collect_artifacts(workdir, opts.max_artifacts, opts.max_artifact_bytes)
    except MemoryError:
        arts, truncated = [], True
    if arts or truncated:
        record(3, {"kind": "artifacts", "files": arts, "truncated": truncated})
    if stamps is not None:
        record(3, {"kind": "stamps", "stamps": stamps})
    try:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except BaseException:
        maxrss = 0
    record(3, {"kind": "exit", "code": code, "maxrss": maxrss})
    return code
