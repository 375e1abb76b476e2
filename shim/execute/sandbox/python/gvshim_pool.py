# The Python runner's pool of pre-forked workers: zygotes, spawn requests, idle workers, their exits, and the
# first worker's report of what it sees (phase 2 of the isolation probe). A mixin of gvshim_runner.Runner, whose
# state (selector, uid pool, jobs) it shares.

import json
import os
import select
import selectors
import signal
import time

import gvshim_zygote as zygote
from gvshim_protocol import diag
from gvshim_records import Worker, Zygote


def _nonblock(fd):
    import fcntl

    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)


class WorkerPool:
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
    def start_mother(self, iso):
        """Forks the process every zygote is forked from, before any job arrived. A zygote forked by the runner
        later would copy the runner's memory (the requests and outputs of earlier and running jobs) into every
        worker it forks, where a snippet can read it (gc.get_objects, /proc/self/mem)."""
        import socket

        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            keep = b.fileno()  # only stdio and the channel: no copy of the protocol
            os.closerange(3, keep)
            os.closerange(keep + 1, 1 << 16)
            zygote.mother_main(b, self.pid, self.opts, iso)  # never returns
        b.close()
        self.mother = (pid, a)

    def start_zygote(self):
        import socket

        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            socket.send_fds(self.mother[1], [b"zygote"], [b.fileno()])
            pid = int(self.mother[1].recv(64))
        except (OSError, ValueError) as e:
            diag("cannot start a zygote (its parent process is gone: %s); stopping" % e)
            a.close()
            self.running = False
            return
        finally:
            b.close()
        a.setblocking(False)
        z = Zygote(pid, a)
        self.zygotes[a.fileno()] = z
        self.sel.register(a.fileno(), selectors.EVENT_READ, "zygote")

    def zsend(self, z, obj):
        """False when the zygote is gone (its end of the channel closed): the caller treats it as lost. Its death
        may not have been read yet, and must not end the runner."""
        data = json.dumps(obj).encode()
        try:
            z.sock.send(data)  # a small message into an empty channel: practically never blocks
            return True
        except BlockingIOError:
            pass
        except OSError as e:
            diag("zygote channel: %s" % e)
            return False
        z.sock.setblocking(True)
        try:
            z.sock.send(data)
            return True
        except OSError as e:
            diag("zygote channel: %s" % e)
            return False
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
        if not self.running or not self.zygotes or self.probing:
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
                if not self.zsend(z, {"op": "spawn", "seq": self.seq, "uid": uid, "gid": self.opts.gid, "net": net,
                                      "isolated": self.isolated, "weak_dir": weak_dir, "ipc_ok": self.iso["ipc_ns"]}):
                    self.zygote_lost(z)  # forgets this spawn too, starts a new zygote and refills
                    return
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

    def job_was_read(self, job, w):
        """Whether w read `job` (its "got" record, the first it writes once it has the job): what is left in its
        records pipe is taken first."""
        while True:
            try:
                chunk = os.read(w.rec_r, 1 << 16)
            except OSError:  # BlockingIOError included: nothing more for now
                break
            if not chunk:
                break
            self.take(job, "records", chunk)
        return b'"kind":"got"' in job.records

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
        unread = []  # jobs handed to a worker of this zygote that never read them: they go to another worker
        for w in list(self.workers.values()):
            if w.zygote is not z:
                continue
            job = w.job
            if job is not None and not job.exited and job.kill_reason is None and not self.job_was_read(job, w):
                self.drop_dead_worker(job, w)
                unread.append(job)
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
        self.pending[:0] = unread
        if self.running:
            self.start_zygote()
            self.refill()
