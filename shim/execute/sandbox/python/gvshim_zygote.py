# Zygotes and workers.
#
# A zygote forks workers on request: the runner's loop never forks, and several zygotes fork in parallel.
# Zygotes are forked by one process the runner forks at its start, before any job (mother_main): a zygote
# started later (after warm-up, or to replace one that died) must not carry the runner's memory of jobs.
# Just before each fork the zygote calls unshare(CLONE_NEWPID), so every worker is pid 1 of a pid namespace of
# its own (gVisor, like Linux, lets a process do that again before every fork). A worker isolates itself
# (gvshim_isolation.isolate_worker), warms up, waits for exactly one job on fd 4 and exits after it.
#
# While a worker lives it shares the zygote's memory copy-on-write, and gVisor breaks that sharing in chunks
# of up to 2 MiB: whatever the zygote writes between two forks is copied again for each. So a zygote takes
# every request already queued on its channel, forks all the workers asked for back to back, and only then
# answers.
#
# Runner -> zygote (SOCK_SEQPACKET, one JSON message each):
#   {"op":"spawn","seq":N,"uid":U,"gid":G,"net":bool,"isolated":bool,"check":bool,"weak_dir":D|null}
#   (check: the worker reports what it sees after its set-up, gvshim_isolation.self_check, on its records pipe)
# Zygote -> runner:
#   {"op":"spawned","seq":N,"pid":P} + fds [job_w, stdout_r, stderr_r, records_r]   (or {"op":"error",...})
#   {"op":"exited","pid":P,"status":S,"maxrss":B}         a worker was reaped (its namespace is empty then)

import fcntl
import json
import os
import selectors
import signal
import time

import gvshim_isolation as isolation
import gvshim_job as jobmod
import gvshim_native as native
from gvshim_protocol import SETUP_FAILED_EXIT, diag


def mother_main(ctl, runner_pid, opts, iso):
    """Forks a zygote for each channel end the runner sends, and answers its pid. Forked by the runner before
    any job, so the memory every zygote and worker copies from it holds no job's data. Never returns."""
    import socket

    code = 0
    try:
        signal.set_wakeup_fd(-1)
        native.prctl(native.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != runner_pid:
            os._exit(0)
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # zygotes are reaped by the kernel
        mother = os.getpid()
        while True:
            _, fds, _, _ = socket.recv_fds(ctl, 64, 1)
            if not fds:
                os._exit(0)  # the runner closed its end: shutting down
            pid = os.fork()
            if pid == 0:
                ctl.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                zygote_main(socket.socket(fileno=fds[0]), mother, opts, iso)  # never returns
            os.close(fds[0])
            ctl.send(b"%d" % pid)
    except (BrokenPipeError, ConnectionResetError):
        code = 0
    except BaseException as e:  # noqa: BLE001
        diag("zygote parent: %s" % e)
        code = 1
    finally:
        os._exit(code)


def zygote_main(ctl, parent_pid, opts, iso):
    """The zygote's loop. Never returns."""
    import socket

    code = 0
    workers = set()  # live workers: killed when the zygote ends

    def end(code):
        # A snippet can clear its worker's parent-death signal (prctl through gvshim_native, or native code):
        # kill them all before going, or they would outlive the runner.
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        os._exit(code)

    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGTERM, lambda *_: end(0))  # our parent died
        native.prctl(native.PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:
            os._exit(0)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_w)
        sel = selectors.DefaultSelector()
        sel.register(ctl.fileno(), selectors.EVENT_READ, "ctl")
        sel.register(wake_r, selectors.EVENT_READ, "wake")
        # The interpreter's objects are shared with every worker; keep the collector from touching (and so
        # copying) them in each worker.
        import gc

        gc.collect()
        gc.freeze()
        pidns = native.PidNamespaces() if iso["pid_ns"] else None

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
                workers.discard(pid)
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
                    end(0)  # the runner closed its end: shutting down (or gone)
                reqs = [json.loads(data)]
                while True:  # everything else already queued: one batch of forks
                    try:
                        more = ctl.recv(1 << 16, socket.MSG_DONTWAIT)
                    except (BlockingIOError, InterruptedError):
                        break
                    if not more:
                        break  # end of input: seen again (and acted on) by the next blocking recv
                    reqs.append(json.loads(more))
                _serve_batch(reqs, send, opts, iso, pidns, workers)
            reap()
    except (BrokenPipeError, ConnectionResetError):
        code = 0  # the runner is gone or shutting down
    except BaseException as e:  # noqa: BLE001
        diag("zygote: %s" % e)
        code = 1
    finally:
        end(code)


def _serve_batch(reqs, send, opts, iso, pidns, workers):
    """Forks the workers asked for in reqs back to back, then answers each request."""
    forks = []  # (request, fds = [job_r, job_w, out_r, out_w, err_r, err_w, rec_r, rec_w])
    for req in reqs:
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
    pids = []
    t0 = time.monotonic()
    for req, fds in forks:
        try:
            if pidns is not None:
                pidns.next()  # the next child is pid 1 of a namespace of its own
            pid = os.fork()
        except OSError as e:
            pid = e
        if pid == 0:
            code = SETUP_FAILED_EXIT
            try:
                code = worker_main(req, [fds[0], fds[3], fds[5], fds[7]], t0, opts, iso)
            except BaseException as e:  # noqa: BLE001
                try:
                    os.write(2, ("gvshim: worker setup failed: %s\n" % e).encode())
                except BaseException:
                    pass
            finally:
                os._exit(code)
        pids.append(pid)
        if not isinstance(pid, OSError):
            workers.add(pid)
    for (req, fds), pid in zip(forks, pids):
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


def worker_main(req, fds, t_fork, opts, iso):
    """A pre-forked worker: isolate, warm up, wait for one job, run it. Returns the exit code."""
    t_start = time.monotonic()
    kill = os.kill  # taken before any snippet runs: a snippet can only break it for itself
    zygote = os.getppid()
    signal.set_wakeup_fd(-1)
    for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(s, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    native.prctl(native.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != zygote:
        return SETUP_FAILED_EXIT
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
    isolated = bool(req.get("isolated"))
    workdir, setup = isolation.isolate_worker(req, opts, isolated)
    if req.get("check"):
        jobmod.record(3, isolation.self_check(setup, opts, req["uid"]))
    # Run a dummy job through the same code (records to /dev/null): after a fork, every first write to a page
    # costs a trip through gVisor's sentry, so take those faults now rather than on the job's time.
    sink = os.open(os.devnull, os.O_WRONLY)
    try:
        warm = {"code": "def main(a, b):\n    return {'sum': a + b}\n", "args": {"a": 1, "b": 2},
                "limits": {"max_processes": 0}}
        jobmod.run_snippet(json.loads(json.dumps(warm)), sink)
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
    # First thing after the job is read: the runner then knows it reached this worker. (A worker that dies
    # before this, e.g. with its zygote, never started the job, and the runner gives it to another worker.)
    jobmod.record(3, {"kind": "got"})
    job = json.loads(data)
    if job.get("phase_times"):
        job["stamps"] = {"w_fork": t_fork, "w_start": t_start, "w_ready": t_ready, "w_got_job": time.monotonic()}
    return jobmod.run_job(job, workdir, setup, opts, isolated, kill)
