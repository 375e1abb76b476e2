# The Python runner's main loop: frames from the Execute server, jobs handed to pre-forked workers, results.
#
# Single-threaded on purpose (forking a multi-threaded interpreter is unsafe): one selector loop multiplexes
# the protocol, the zygotes' channels, the jobs' pipes, SIGCHLD and the deadlines. The runner never forks on a
# job's path; zygotes do (gvshim_zygote).

import errno
import json
import os
import selectors
import signal
import sys
import time

import gvshim_isolation as isolation
from gvshim_pool import WorkerPool
from gvshim_records import Job, b64, result_frame
from gvshim_protocol import (PROTOCOL_VERSION, RESULT_CAP, STATUS_REJECTED, FrameError, Options, diag,
                             empty_result, encode_frame, encode_result, parse_job, split_frames)
from gvshim_uids import UidPool


def _nonblock(fd):
    import fcntl

    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)


class Runner(WorkerPool):
    def __init__(self, opts):
        self.opts = opts
        self.pid = os.getpid()
        # The protocol moves to private fds; fd 0 becomes /dev/null and fd 1 goes to stderr, so a stray print
        # can never corrupt the frame stream, and no job inherits it.
        self.pin = os.dup(0)
        self.pout = os.dup(1)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(2, 1)
        _nonblock(self.pin)
        self.inbuf = bytearray()
        self.jobs = {}
        self.by_fd = {}
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        _nonblock(self.wake_r)
        _nonblock(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.sel.register(self.pin, selectors.EVENT_READ, "proto")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.running = True
        self.zygotes = {}  # channel fd -> Zygote
        self.seq = 0
        self.spawning = {}  # seq -> (uid, net, weak_dir, Zygote)
        self.idle = {False: [], True: []}  # net -> [Worker]
        self.workers = {}  # pid -> Worker
        self.pending = []  # jobs waiting for a worker
        self.uids = UidPool(opts.uid, opts.uid_count)
        self.weak_base = None
        # Until the first job was handed over (or the runner sat idle), keep just one worker ready: more forks
        # would compete with the first job for the CPU.
        self.warming = True
        # While the first worker tries full isolation, no other worker is made: the mode is not known yet (a
        # worker that exits during the check would otherwise be replaced by one set up for full isolation,
        # which a job could get after the check chose weak isolation).
        self.probing = True
        iso = isolation.probe_namespaces(opts)
        self.mother = None
        if iso["native"]:
            self.start_mother(iso)  # now, while the runner holds no job's data: zygotes are forked from it
        self.default_net = bool(iso["net_ns"])  # jobs that did not ask for the network get none
        self.isolated = False
        if iso["root"] and iso["native"] and iso["launcher"] and iso["pid_ns"] and iso["mount_ns"]:
            self.isolated = True  # tried by the first worker, which reports what it sees (self_check)
            self.iso = iso
            self.start_zygote()
            iso.update(self.check_first_worker())
        self.iso = isolation.finish(iso)
        self.isolated = self.iso["complete"]
        self.probing = False
        # Jobs may run at all: with full isolation, or with weak isolation where the node allows it.
        self.usable = self.isolated or (opts.allow_weak and self.iso["native"] and self.iso["setuid"])
        if not self.isolated:
            for w in list(self.workers.values()):  # a worker set up for full isolation is of no use now
                self.retire_worker(w)
        if self.usable and not self.isolated:
            self.weak_base = os.path.join(opts.weak_dir, "gvshim-py-%d" % self.pid)
            os.makedirs(self.weak_base, exist_ok=True)
            os.chmod(self.weak_base, 0o711)
        if self.usable:
            if not self.zygotes:
                self.start_zygote()
            self.refill()
        else:
            for fd in list(self.zygotes):
                self.sel.unregister(fd)
                self.zygotes.pop(fd).sock.close()

    def dispatch(self, job, w):
        """Hands a job to an idle worker over its job channel."""
        w.job = job
        job.worker = w
        for fd, role in ((w.out_r, "stdout"), (w.err_r, "stderr"), (w.rec_r, "records")):
            job.fds[fd] = role
            self.by_fd[fd] = job
            self.sel.register(fd, selectors.EVENT_READ, "job")
        job.start = time.monotonic()
        job.deadline = job.start + job.spec["limits"]["wall_timeout_ms"] / 1000.0
        spec = job.spec
        payload = {"code": spec["code"], "args": spec["args"], "env": spec["env"], "limits": spec["limits"],
                   "stdin": spec["stdin_b64"], "phase_times": self.opts.phase_times}
        data = json.dumps(payload).encode()
        view = memoryview(data)
        failure = None
        try:
            while view:
                view = view[os.write(w.job_w, view):]
        except OSError as e:
            failure = e
        finally:
            os.close(w.job_w)
        if failure is not None and failure.errno == errno.EPIPE and len(view) == len(data):
            # The worker died idle (e.g. its zygote was killed and the runner has not read that yet): the job
            # never reached it, so it goes to another worker.
            self.drop_dead_worker(job, w)
            if self.idle[job.net]:
                self.dispatch(job, self.idle[job.net].pop(0))
            else:
                self.pending.append(job)
                self.refill()
            return
        if failure is not None:
            job.error = "could not hand the job to its worker: %s" % failure
            self.kill(job, "setup")
        if self.opts.phase_times:
            job.stamps["handoff"] = time.monotonic()

    def drop_dead_worker(self, job, w):
        """Undoes dispatch(job, w) for a worker that was already dead, and forgets the worker (its uid is free:
        nothing of it runs any more; a later exit report for it is ignored)."""
        for fd in (w.out_r, w.err_r, w.rec_r):
            self.sel.unregister(fd)
            job.fds.pop(fd, None)
            self.by_fd.pop(fd, None)
            os.close(fd)
        w.job = None
        job.worker = None
        self.workers.pop(w.pid, None)
        try:
            os.kill(w.pid, signal.SIGKILL)
        except OSError:
            pass
        self.retire_uid(w.uid, w.weak_dir)

    def check_exit_record(self, job, new):
        """The worker's own "exit" record ends the job without waiting for the process to be reaped. Looks at
        the last `new` bytes only: a snippet writing long lines must not make every read scan all its records.
        (Past the records' cap the job ends when the zygote reports its worker's exit.)"""
        end = job.records.rfind(b"\n", max(job.rec_scanned, len(job.records) - new))
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
        """The job is done (or gone): kill its worker (and with it its pid namespace), drain its pipes."""
        if self.opts.phase_times:
            job.stamps.setdefault("end", time.monotonic())
        if job.worker is not None:
            try:
                os.kill(job.worker.pid, signal.SIGKILL)
            except OSError:
                pass
        for fd in list(job.fds):
            role = job.fds[fd]
            while True:
                try:
                    chunk = os.read(fd, 1 << 16)
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
        view = memoryview(obj if isinstance(obj, bytes) else encode_frame(obj))
        while view:
            try:
                view = view[os.write(self.pout, view):]
            except InterruptedError:
                continue
            except BrokenPipeError:
                self.running = False
                return

    def on_proto_readable(self):
        try:
            chunk = os.read(self.pin, 65536)  # below malloc's mmap threshold: no mmap/munmap per read
        except BlockingIOError:
            return
        if not chunk:
            self.running = False  # the server went away: stop, killing every job
            return
        self.inbuf += chunk
        try:
            for msg, err in split_frames(self.inbuf):
                if msg is None:
                    self.send({"type": "error", "message": err})
                else:
                    self.on_message(msg)
        except FrameError as e:
            self.send({"type": "error", "message": str(e)})
            self.running = False

    def on_message(self, msg):
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

    # --- jobs -----------------------------------------------------------------------------------------
    def start_job(self, msg):
        jid = msg.get("id")
        if not isinstance(jid, str) or not jid:
            self.send({"type": "error", "message": "exec frame without a string id"})
            return
        if jid in self.jobs:
            self.send(empty_result(jid, STATUS_REJECTED, "a job with id %r is already running" % jid))
            return
        if not self.usable:
            self.send(empty_result(jid, STATUS_REJECTED, "snippet isolation is incomplete here (missing: %s)"
                                   % ", ".join(self.iso["missing"])))
            return
        t_recv = time.monotonic()
        if len(self.jobs) >= self.opts.max_jobs:
            self.send(empty_result(jid, STATUS_REJECTED, "runner busy: %d jobs running" % len(self.jobs)))
            return
        try:
            spec = parse_job(msg, self.opts.defaults)
        except (ValueError, TypeError) as e:
            self.send(empty_result(jid, STATUS_REJECTED, "bad request: %s" % e))
            return
        job = Job(jid, spec)
        if self.opts.phase_times:
            job.stamps["recv"] = t_recv
        job.net = bool(self.default_net and not spec["allow_network"])
        # Until a worker takes it, the wall clock runs from arrival (reset at hand-over).
        job.deadline = t_recv + spec["limits"]["wall_timeout_ms"] / 1000.0
        self.jobs[jid] = job
        if self.idle[job.net]:
            # The replacement worker is asked for after this job's result is out (maybe_finish), so its fork
            # does not compete with the job for the CPU.
            self.dispatch(job, self.idle[job.net].pop(0))
        else:
            self.pending.append(job)
            self.refill()

    def kill(self, job, reason):
        if job.kill_reason is None:
            job.kill_reason = reason
        if job.worker is None:  # still waiting for a worker
            if job in self.pending:
                self.pending.remove(job)
            job.exited = True
            self.maybe_finish(job)
            return
        try:
            os.kill(job.worker.pid, signal.SIGKILL)  # pid 1 of the job's namespace: all of it goes
        except OSError:
            pass

    def on_job_readable(self, fd):
        job = self.by_fd[fd]
        role = job.fds[fd]
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.sel.unregister(fd)
            os.close(fd)
            del job.fds[fd]
            del self.by_fd[fd]
            self.maybe_finish(job)
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
                    self.send({"type": "output", "id": job.id, "stream": role, "data": b64(chunk)})
        else:
            if len(job.records) < RESULT_CAP + (self.opts.max_artifact_bytes * 2) + 65536:
                job.records += chunk
                if not job.exited:
                    self.check_exit_record(job, len(chunk))
                    if job.exited:
                        self.end_job_processes(job)

    def maybe_finish(self, job):
        if not job.exited or job.fds or job.id not in self.jobs:
            return
        del self.jobs[job.id]
        duration = (time.monotonic() - job.start) * 1000.0 if job.start else 0.0
        try:
            self.send(encode_result(result_frame(job, duration, self.opts)))
        finally:
            if self.warming:
                self.end_warming()  # the first result is out: now the rest of the warm-up
            else:
                self.refill()

    # --- loop -----------------------------------------------------------------------------------------
    def run(self):
        self.send({"type": "ready", "runner": "python", "protocol": PROTOCOL_VERSION, "pid": self.pid,
                   "version": "%d.%d.%d" % sys.version_info[:3], "isolation": self.iso,
                   "max_jobs": self.opts.max_jobs, "defaults": self.opts.defaults})
        order = {"proto": 0, "job": 1, "zygote": 2, "wake": 3}
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
            if self.warming and not self.jobs:
                # Nothing asked for a while: finish warming up now rather than on the first job's time.
                if timeout is None or timeout > 0.3:
                    timeout = 0.3
                if not self.poll(timeout, order):
                    self.end_warming()
                continue
            self.poll(timeout, order)
        self.shutdown()

    def poll(self, timeout, order, protocol=True):
        """Serves what is ready within timeout; returns whether anything was."""
        try:
            events = self.sel.select(timeout)
        except InterruptedError:
            return True
        events.sort(key=lambda e: order.get(e[0].data, 1))  # a new request first, then the jobs' pipes
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
                self.reap()
            elif key.data == "zygote":
                z = self.zygotes.get(key.fd)
                if z is not None:
                    self.on_zygote_readable(z)
            elif key.fd in self.by_fd:
                self.on_job_readable(key.fd)
        return bool(events)

    def reap(self):
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            z = next((z for z in self.zygotes.values() if z.pid == pid), None)
            if z is not None:
                self.zygote_lost(z)

    def shutdown(self):
        self.running = False
        for job in list(self.jobs.values()):
            self.kill(job, "shutdown")
        deadline = time.monotonic() + 5
        while self.jobs and time.monotonic() < deadline:
            self.poll(0.05, {}, protocol=False)
        # Closing the channels ends the zygotes; idle workers die with them (parent-death signal).
        for fd, z in list(self.zygotes.items()):
            self.sel.unregister(fd)
            z.sock.close()
        self.zygotes.clear()
        if self.mother is not None:
            self.mother[1].close()  # ends the zygotes' parent
        for w in list(self.workers.values()):
            try:
                os.kill(w.pid, signal.SIGKILL)
            except OSError:
                pass
        if self.weak_base is not None:
            import shutil

            shutil.rmtree(self.weak_base, ignore_errors=True)


def preload(mods):
    import importlib

    # Kept small on purpose: every preloaded page makes each fork (a worker per job) more expensive inside
    # gVisor. Heavier modules (asyncio, decimal, numpy...) can be added with --preload.
    for m in ["json", "math", "re", "random", "datetime", "collections", "itertools", "functools", "string",
              "base64", "hashlib", "io", "time", "typing", "inspect", "traceback", "copy", "heapq",
              "bisect"] + mods:
        try:
            importlib.import_module(m)
        except Exception as e:  # noqa: BLE001 - a missing optional module is not fatal
            diag("preload %s: %s" % (m, e))


def main(argv):
    opts = Options(argv)
    preload(opts.preload)
    Runner(opts).run()
