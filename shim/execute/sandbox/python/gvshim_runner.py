# The Python runner's main loop: frames from the Execute server, jobs handed to pre-forked workers, results.
#
# Single-threaded on purpose (forking a multi-threaded interpreter is unsafe): one selector loop multiplexes
# the protocol, the zygotes' channels, the jobs' pipes, SIGCHLD and the deadlines. The runner never forks on a
# job's path; zygotes do (gvshim_zygote).

import json
import os
import select
import selectors
import signal
import sys
import time

import gvshim_isolation as isolation
from gvshim_protocol import (PROTOCOL_VERSION, RESULT_CAP, SETUP_FAILED_EXIT, STATUS_INTERNAL, STATUS_MEMORY,
                             STATUS_OUTPUT, STATUS_PROGRAM_ERROR, STATUS_REJECTED, STATUS_SUCCESS,
                             STATUS_TIMEOUT, FrameError, Options, diag, empty_result, encode_frame, parse_job,
                             split_frames)
from gvshim_uids import UidPool
import gvshim_zygote as zygote


def _nonblock(fd):
    import fcntl

    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)


def _b64(data):
    import base64

    return base64.b64encode(data).decode("ascii")


class Job:
    def __init__(self, jid, spec):
        self.id = jid
        self.spec = spec
        self.worker = None
        self.net = False  # needs a worker with its own network namespace
        self.start = 0.0
        self.deadline = 0.0
        self.out = {"stdout": bytearray(), "stderr": bytearray()}
        self.truncated = {"stdout": False, "stderr": False}
        self.fds = {}  # fd -> "stdout" | "stderr" | "records"
        self.records = bytearray()
        self.rec_scanned = 0
        self.exited = False
        self.wait_status = None
        self.maxrss = 0
        self.kill_reason = None
        self.error = None
        self.stamps = {}


class Zygote:
    def __init__(self, pid, sock):
        self.pid = pid
        self.sock = sock
        self.inflight = 0  # spawn requests not answered yet


class Worker:
    def __init__(self, pid, uid, net, fds, weak_dir, z):
        self.pid = pid
        self.uid = uid
        self.net = net
        self.weak_dir = weak_dir
        self.zygote = z
        self.job_w, self.out_r, self.err_r, self.rec_r = fds
        self.job = None


class Runner:
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
        iso = isolation.probe_namespaces(opts)
        self.default_net = bool(iso["net_ns"])  # jobs that did not ask for the network get none
        self.isolated = False
        if iso["root"] and iso["native"] and iso["launcher"] and iso["pid_ns"] and iso["mount_ns"]:
            self.isolated = True  # tried by the first worker, which reports what it sees (self_check)
            self.iso = iso
            self.start_zygote()
            iso.update(self.check_first_worker())
        self.iso = isolation.finish(iso)
        self.isolated = self.iso["complete"]
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

    def check_first_worker(self):
        """Phase 2 of the probe: forks the first worker in full isolation and waits (bounded) for what it reports
        it sees. Returns the proc/tmpfs/setuid findings (all false, with its error, if it failed)."""
        # setuid keeps phase 1's answer (root can drop) unless the worker got far enough to say.
        found = {"proc": False, "tmpfs": False}
        uid = self.uids.take()
        self.seq += 1
        z = next(iter(self.zygotes.values()))
        z.inflight += 1
        self.spawning[self.seq] = (uid, self.default_net, None, z)
        self.zsend(z, {"op": "spawn", "seq": self.seq, "uid": uid, "gid": self.opts.gid, "net": self.default_net,
                       "isolated": True, "check": True, "weak_dir": None})
        deadline = time.monotonic() + 60
        seq = self.seq
        while seq in self.spawning and time.monotonic() < deadline and z.sock.fileno() in self.zygotes:
            select.select([z.sock], [], [], max(0.0, deadline - time.monotonic()))
            self.on_zygote_readable(z)
        w = next((w for w in self.workers.values() if w.uid == uid), None)
        if w is None:
            found["notes"] = ["the first worker could not be started"]
            return found
        line = b""
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([w.rec_r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            try:
                chunk = os.read(w.rec_r, 4096)
            except BlockingIOError:
                continue
            if not chunk:
                break
            line += chunk
        try:
            rec = json.loads(line)
            for k in ("proc", "tmpfs", "setuid"):
                found[k] = rec.get(k) is True
        except ValueError:
            err = b""
            try:
                err = os.read(w.err_r, 4096)
            except OSError:
                pass
            found["notes"] = self.iso.get("notes", []) + [
                "the isolated set-up of the first worker failed: %s" % err.decode("utf-8", "replace").strip()]
            self.retire_worker(w)
        return found

    def retire_worker(self, w):
        """An idle worker that will get no job: closing its job channel makes it exit (its uid comes back when
        the zygote reports that)."""
        if w in self.idle[w.net]:
            self.idle[w.net].remove(w)
        try:
            os.kill(w.pid, signal.SIGKILL)
        except OSError:
            pass

    # --- zygotes and workers ---------------------------------------------------------------------------
    def start_zygote(self):
        import socket

        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            keep = b.fileno()  # only stdio and the channel: no copy of the protocol or of any job's pipes
            os.closerange(3, keep)
            os.closerange(keep + 1, 1 << 16)
            zygote.zygote_main(b, self.pid, self.opts, self.iso)  # never returns
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

    def end_warming(self):
        """After the first job (or a quiet moment): the other zygotes, and the full set of idle workers."""
        if not self.warming or not self.usable:
            return
        self.warming = False
        n = max(1, self.opts.zygotes or min(os.cpu_count() or 1, self.opts.prefork, 4))
        while len(self.zygotes) < n:
            self.start_zygote()
        self.refill()

    def refill(self):
        """Keeps `prefork` idle workers of the default kind (one while warming up), plus one per waiting job."""
        if not self.running or not self.zygotes:
            return
        want = {self.default_net: 1 if self.warming else self.opts.prefork, (not self.default_net): 0}
        for job in self.pending:
            want[job.net] += 1
        for net in (self.default_net, not self.default_net):
            have = len(self.idle[net]) + sum(1 for s in self.spawning.values() if s[1] == net)
            while have < want[net]:
                uid = self.uids.take()
                if uid is None:
                    return  # every uid is in use; a worker's exit returns one
                weak_dir = None
                if self.weak_base is not None:
                    try:
                        weak_dir = os.path.join(self.weak_base, os.urandom(16).hex())
                        os.mkdir(weak_dir, 0o700)
                        os.chown(weak_dir, uid, self.opts.gid)
                        os.mkdir(os.path.join(weak_dir, "artifacts"), 0o700)
                        os.chown(os.path.join(weak_dir, "artifacts"), uid, self.opts.gid)
                    except OSError as e:
                        diag("job directory: %s" % e)
                        self.uids.give_back(uid)
                        return
                self.seq += 1
                z = min(self.zygotes.values(), key=lambda z: z.inflight)
                z.inflight += 1
                self.spawning[self.seq] = (uid, net, weak_dir, z)
                self.zsend(z, {"op": "spawn", "seq": self.seq, "uid": uid, "gid": self.opts.gid, "net": net,
                               "isolated": self.isolated, "weak_dir": weak_dir, "ipc_ok": self.iso["ipc_ns"]})
                have += 1

    def on_zygote_readable(self, z):
        import socket

        while True:
            try:
                data, fds, _, _ = socket.recv_fds(z.sock, 1 << 16, 8)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                diag("zygote channel: %s" % e)
                data, fds = b"", []
            if not data:
                self.zygote_lost(z)
                return
            msg = json.loads(data)
            op = msg.get("op")
            if op == "spawned":
                uid, net, weak_dir, _ = self.spawning.pop(msg["seq"])
                z.inflight -= 1
                w = Worker(msg["pid"], uid, net, fds, weak_dir, z)
                for fd in fds[1:]:
                    _nonblock(fd)
                self.workers[w.pid] = w
                waiting = next((j for j in self.pending if j.net == net), None)
                if waiting is not None:
                    self.pending.remove(waiting)
                    self.dispatch(waiting, w)
                else:
                    self.idle[net].append(w)
            elif op == "error":
                uid, _, weak_dir, _ = self.spawning.pop(msg["seq"])
                z.inflight -= 1
                for fd in fds:
                    os.close(fd)
                diag(msg.get("message"))
                self.retire_uid(uid, weak_dir)
                for job in list(self.pending):  # they would wait forever for a worker that cannot be made
                    self.pending.remove(job)
                    job.kill_reason = "setup"
                    job.error = "could not start a worker: %s" % msg.get("message")
                    job.exited = True
                    self.maybe_finish(job)
            elif op == "exited":
                self.on_worker_exit(msg["pid"], msg["status"], msg["maxrss"])

    def retire_uid(self, uid, weak_dir):
        if weak_dir:
            import shutil

            shutil.rmtree(weak_dir, ignore_errors=True)
        self.uids.give_back(uid)

    def on_worker_exit(self, pid, status, maxrss):
        """The zygote reaped a worker: it was pid 1 of its namespace, so nothing of its job is left."""
        w = self.workers.pop(pid, None)
        if w is None:
            return
        job = w.job
        if job is None:
            if w in self.idle[w.net]:
                self.idle[w.net].remove(w)
            for fd in (w.job_w, w.out_r, w.err_r, w.rec_r):
                os.close(fd)
        elif not job.exited:
            job.exited = True
            job.wait_status = status
            job.maxrss = maxrss
            self.end_job_processes(job)
        self.retire_uid(w.uid, w.weak_dir)
        self.refill()

    def zygote_lost(self, z):
        """A zygote died: its workers died with it (parent-death signal). Fail their jobs, start anew."""
        diag("zygote exited; restarting it")
        if self.zygotes.pop(z.sock.fileno(), None) is not None:
            self.sel.unregister(z.sock.fileno())
            z.sock.close()
        for seq, (uid, _, weak_dir, sz) in list(self.spawning.items()):
            if sz is z:
                del self.spawning[seq]
                self.retire_uid(uid, weak_dir)
        for w in list(self.workers.values()):
            if w.zygote is not z:
                continue
            self.workers.pop(w.pid, None)
            try:
                os.kill(w.pid, signal.SIGKILL)
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
            self.retire_uid(w.uid, w.weak_dir)
        for net in self.idle:
            self.idle[net] = [w for w in self.idle[net] if w.zygote is not z]
        if self.running:
            self.start_zygote()
            self.refill()

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
        try:
            view = memoryview(json.dumps(payload).encode())
            while view:
                view = view[os.write(w.job_w, view):]
        except OSError as e:
            job.error = "could not hand the job to its worker: %s" % e
            self.kill(job, "setup")
        finally:
            os.close(w.job_w)
        if self.opts.phase_times:
            job.stamps["handoff"] = time.monotonic()

    def check_exit_record(self, job):
        """The worker's own "exit" record ends the job without waiting for the process to be reaped."""
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
        view = memoryview(encode_frame(obj))
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
                    self.send({"type": "output", "id": job.id, "stream": role, "data": _b64(chunk)})
        else:
            if len(job.records) < RESULT_CAP + (self.opts.max_artifact_bytes * 2) + 65536:
                job.records += chunk
            if not job.exited:
                self.check_exit_record(job)
                if job.exited:
                    self.end_job_processes(job)

    def maybe_finish(self, job):
        if not job.exited or job.fds or job.id not in self.jobs:
            return
        del self.jobs[job.id]
        duration = (time.monotonic() - job.start) * 1000.0 if job.start else 0.0
        try:
            self.send(self.result_frame(job, duration))
        finally:
            if self.warming:
                self.end_warming()  # the first result is out: now the rest of the warm-up
            else:
                self.refill()

    def result_frame(self, job, duration):
        lim = job.spec["limits"]
        iso = result_json = kind = bad_result = None
        artifacts, art_trunc = [], False
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
            elif k == "artifacts" and isinstance(rec.get("files"), list):
                artifacts = [a for a in rec["files"] if isinstance(a, dict)][:self.opts.max_artifacts]
                art_trunc = bool(rec.get("truncated"))
            elif k == "stamps" and isinstance(rec.get("stamps"), dict):
                for name, t in rec["stamps"].items():
                    if isinstance(t, (int, float)):
                        job.stamps.setdefault(name, t)
        st = job.wait_status
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
        if job.error:
            status, error = STATUS_INTERNAL, job.error
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
        elif sig == signal.SIGXCPU or (sig == signal.SIGKILL and duration >= lim["cpu_time_ms"]):
            # RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one (the wall clock is far below it).
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
        frame = {"type": "result", "id": job.id, "status": status, "exit_code": exit_code, "signal": sig,
                 "stdout": _b64(bytes(job.out["stdout"])), "stderr": _b64(bytes(job.out["stderr"])),
                 "stdout_truncated": job.truncated["stdout"], "stderr_truncated": job.truncated["stderr"],
                 "result_json": result_json if status == STATUS_SUCCESS else None,
                 "duration_ms": round(duration, 3), "peak_memory_bytes": job.maxrss, "artifacts": artifacts,
                 "artifacts_truncated": art_trunc, "error": error, "isolation": iso or {}}
        if self.opts.phase_times:
            frame["phases"] = self.phases(job)
        return frame

    @staticmethod
    def phases(job):
        """Milliseconds between consecutive timestamps of the job's path, named by the later one. Worker stamps
        taken before the job arrived are reported as prefork_*: they are not on the path."""
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
