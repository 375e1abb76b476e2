// The Node runner: frames from the Execute server, jobs handed to pre-started single-use children (each
// started isolated through gvshim-launch, see isolation.js), results. Event-driven, one process.
//
// Warm children are started with the default limits; a job asking for other limits (or for the network) gets
// a fresh child. Every child has a uid of its own from the pool, given back when the child (pid 1 of its pid
// namespace, so with everything it started) has exited.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');
const P = require('gvshim:protocol');
const isolation = require('gvshim:isolation');
const childSource = require('gvshim:sources').child;

const now = () => Number(process.hrtime.bigint()) / 1e6;

class Runner {
  constructor(opts) {
    this.opts = opts;
    this.jobs = new Map();
    this.pool = [];  // idle warm children with the default profile
    this.input = { buf: Buffer.alloc(0) };
    this.freeUids = [];
    for (let u = opts.uid; u < opts.uid + opts.uidCount; u++) this.freeUids.push(u);
    this.iso = isolation.probe(opts);
    this.isolated = false;
    this.usable = false;
    this.weakBase = null;
    this.poolKey = this.profileKey(opts.defaults, false);
    this.stopping = false;
    this.refillPending = false;
    // Until the first job's result is out (or the runner sat idle), keep just one child ready: more node starts
    // would compete with the first job for the CPU.
    this.warming = true;
    this.settled = false;
    this.early = [];  // exec frames that came before `ready`: run once the isolation is known
  }

  // Completes the isolation report (after the first child's check, if one ran) and says `ready`.
  settle(found) {
    Object.assign(this.iso, found);
    isolation.finish(this.iso);
    this.isolated = this.iso.complete;
    this.usable = this.isolated || (this.opts.allowWeak && this.iso.launcher && this.iso.setuid);
    if (!this.isolated) {
      for (const e of this.pool) this.killEntry(e);  // set up for full isolation: of no use now
      this.pool = [];
    }
    if (this.usable && !this.isolated) {
      this.weakBase = path.join(this.opts.weakDir, `gvshim-js-${process.pid}`);
      fs.mkdirSync(this.weakBase, { recursive: true });
      fs.chmodSync(this.weakBase, 0o711);
    }
    this.send({
      type: 'ready', runner: 'javascript', protocol: P.PROTOCOL_VERSION, pid: process.pid, version: process.version,
      isolation: this.iso, max_jobs: this.opts.maxJobs, defaults: this.opts.defaults,
    });
    if (this.usable) this.refillSoon();
    this.warmTimer = setTimeout(() => this.endWarming(), 300);
    this.settled = true;
    for (const msg of this.early.splice(0)) this.startJob(msg);
  }

  endWarming() {
    if (!this.warming) return;
    this.warming = false;
    clearTimeout(this.warmTimer);
    this.refillSoon();
  }

  // Phase 2 of the probe: the first child, started fully isolated, reports what it sees (child.js).
  checkFirstChild() {
    const entry = this.spawnChild(this.opts.defaults, false, { isolated: true, check: true });
    if (!entry) return this.settle({ proc: false, tmpfs: false, setuid: false });
    let buf = Buffer.alloc(0);
    let err = Buffer.alloc(0);
    let done = false;
    const onErr = (c) => { err = Buffer.concat([err, c]).subarray(0, 4096); };
    const finish = (found) => {
      if (done) return;
      done = true;
      entry.child.stdio[4].removeListener('data', onData);
      entry.child.stderr.removeListener('data', onErr);
      clearTimeout(timer);
      this.settle(found);
    };
    const onData = (c) => {
      buf = Buffer.concat([buf, c]);
      const nl = buf.indexOf(10);
      if (nl < 0) return;
      try {
        const rec = JSON.parse(buf.subarray(0, nl).toString('utf8'));
        finish({ proc: rec.proc === true, tmpfs: rec.tmpfs === true, setuid: rec.setuid === true });
        this.pool.push(entry);
      } catch (e) {
        finish({ proc: false, tmpfs: false, setuid: false });
      }
    };
    const failed = () => finish({
      proc: false, tmpfs: false,  // setuid keeps phase 1's answer: the child did not get far enough to say
      notes: (this.iso.notes || []).concat([`the isolated start of the first child failed: ${err.toString().trim()}`]),
    });
    entry.child.stdio[4].on('data', onData);
    entry.child.stderr.on('data', onErr);
    entry.child.once('exit', () => setImmediate(failed));
    const timer = setTimeout(failed, 60000);
  }

  killEntry(e) {
    try {
      process.kill(-e.child.pid, 'SIGKILL');
    } catch (err) { /* gone */ }
  }

  send(obj) {
    process.stdout.write(P.encodeFrame(obj));
  }

  // A result larger than a frame may be would make the server kill this runner, with every job in it: such a
  // result becomes an internal_error saying so, with the job's exit status.
  sendResult(frame) {
    let data = P.encodeFrame(frame);
    if (data.length - 4 > P.MAX_FRAME) {
      const small = P.emptyResult(frame.id, 'internal_error',
        `the job's result (${data.length - 4} bytes with its output and artifacts) exceeds the ` +
        `${P.MAX_FRAME} byte frame limit`);
      for (const k of ['exit_code', 'signal', 'duration_ms', 'peak_memory_bytes', 'isolation']) small[k] = frame[k];
      data = P.encodeFrame(small);
    }
    process.stdout.write(data);
  }

  start() {
    process.stdout.on('error', () => this.shutdown());
    process.stdin.on('data', (c) => {
      if (!P.takeFrames(this.input, c, (m) => this.onMessage(m), (e) => this.send({ type: 'error', message: e }))) {
        this.shutdown();
      }
    });
    process.stdin.on('end', () => this.shutdown());
    process.stdin.on('error', () => this.shutdown());
    if (isolation.canIsolate(this.iso)) this.checkFirstChild();
    else this.settle({});
  }

  onMessage(msg) {
    switch (msg.type) {
      case 'exec':
        if (this.settled) this.startJob(msg);
        else this.early.push(msg);
        break;
      case 'cancel': {
        const job = this.jobs.get(msg.id);
        if (job) this.kill(job, 'cancel');
        break;
      }
      case 'ping': this.send({ type: 'pong', id: msg.id, active_jobs: this.jobs.size }); break;
      case 'shutdown': this.shutdown(); break;
      default: this.send({ type: 'error', id: msg.id, message: `unknown frame type ${JSON.stringify(msg.type)}` });
    }
  }

  // What is fixed when a child starts. The wall clock and output caps are the runner's, so jobs that differ
  // only in those can use a warm child.
  profileKey(limits, allowNetwork) {
    return JSON.stringify([limits.cpu_time_ms, limits.memory_bytes, limits.max_processes, limits.file_size_bytes,
      !!allowNetwork]);
  }

  spawnChild(limits, allowNetwork, { isolated = this.isolated, check = false } = {}) {
    const uid = this.freeUids.shift();
    if (uid === undefined) return null;
    let dir = null;
    if (this.weakBase) {
      dir = path.join(this.weakBase, require('crypto').randomBytes(16).toString('hex'));
      fs.mkdirSync(path.join(dir, 'artifacts'), { recursive: true, mode: 0o700 });
      fs.chownSync(dir, uid, this.opts.gid);
      fs.chownSync(path.join(dir, 'artifacts'), uid, this.opts.gid);
    }
    const argv = isolation.launchArgv(this.opts, this.iso, { uid, limits, allowNetwork, dir, childSource, isolated, check });
    const child = spawn(argv[0], argv.slice(1), {
      stdio: ['pipe', 'pipe', 'pipe', 'pipe', 'pipe'], detached: true, env: {}, cwd: '/',
    });
    const entry = { child, uid, dir, exited: false, key: this.profileKey(limits, allowNetwork), job: null };
    child.on('error', (e) => P.diag(`spawn ${argv[0]}: ${e.message}`));
    child.on('exit', () => {
      entry.exited = true;
      if (!entry.job) {
        const i = this.pool.indexOf(entry);
        if (i >= 0) this.pool.splice(i, 1);
        this.retire(entry);
      }
    });
    for (const s of child.stdio) s.on('error', () => {});
    return entry;
  }

  // The child has exited (with its whole pid namespace): its uid and directory can go.
  retire(entry) {
    if (entry.dir) fs.rmSync(entry.dir, { recursive: true, force: true });
    if (!this.freeUids.includes(entry.uid)) this.freeUids.push(entry.uid);
    if (this.pool.length < this.opts.poolSize) this.refillSoon();
  }

  // Starting a child blocks the event loop for its fork/exec: one child per turn of the loop, so pending I/O
  // (a request, a job's output) is served in between.
  refillSoon() {
    if (this.refillPending || this.stopping || !this.usable) return;
    this.refillPending = true;
    setImmediate(() => {
      this.refillPending = false;
      if (this.stopping || this.pool.length >= (this.warming ? 1 : this.opts.poolSize)) return;
      const e = this.spawnChild(this.opts.defaults, false);
      if (!e) return;  // no free uid: a child's exit refills
      this.pool.push(e);
      if (this.pool.length < (this.warming ? 1 : this.opts.poolSize)) this.refillSoon();
    });
  }

  startJob(msg) {
    const id = msg.id;
    if (typeof id !== 'string' || !id) return this.send({ type: 'error', message: 'exec frame without a string id' });
    if (this.jobs.has(id)) return this.send(P.emptyResult(id, 'rejected', `a job with id ${JSON.stringify(id)} is already running`));
    if (!this.usable) {
      return this.send(P.emptyResult(id, 'rejected',
        `snippet isolation is incomplete here (missing: ${this.iso.missing.join(', ')})`));
    }
    if (this.jobs.size >= this.opts.maxJobs) return this.send(P.emptyResult(id, 'rejected', `runner busy: ${this.jobs.size} jobs running`));
    let spec;
    try {
      spec = P.parseJob(msg, this.opts.defaults);
    } catch (e) {
      return this.send(P.emptyResult(id, 'rejected', `bad request: ${e.message}`));
    }
    const tRecv = now();
    const allowNetwork = spec.allowNetwork && this.iso.net_ns;
    const key = this.profileKey(spec.limits, allowNetwork);
    let entry = null;
    if (key === this.poolKey) {
      while (this.pool.length && !entry) {
        const e = this.pool.shift();
        if (!e.exited) entry = e;
      }
    }
    const warm = !!entry;
    if (!entry) entry = this.spawnChild(spec.limits, allowNetwork);
    if (!entry) return this.send(P.emptyResult(id, 'rejected', 'runner busy: no free uid'));
    // A warm child's replacement starts after this job's result is out (finish), so it does not compete with
    // the job for the CPU; a job that found no warm child needs one now.
    if (!warm && !this.warming) this.refillSoon();
    const job = {
      id, spec, entry, warm, start: process.hrtime.bigint(), out: { stdout: [], stderr: [] },
      outLen: { stdout: 0, stderr: 0 }, truncated: { stdout: false, stderr: false }, records: [], recordsLen: 0,
      killReason: null, exitCode: null, signal: null, finished: false, selfExit: null, ended: 0,
      stamps: this.opts.phaseTimes ? { recv: tRecv } : null,
    };
    entry.job = job;
    this.jobs.set(id, job);
    const child = entry.child;
    job.timer = setTimeout(() => this.kill(job, 'timeout'), spec.limits.wall_timeout_ms);
    for (const role of ['stdout', 'stderr']) child[role].on('data', (c) => this.takeOutput(job, role, c));
    const cap = P.RESULT_CAP + 2 * this.opts.maxArtifactBytes + 65536;
    // The exit record is looked for in each chunk and the end of the one before (a record may be split), never
    // in all the records again: a snippet writing many chunks must not make each read scan megabytes.
    let tail = Buffer.alloc(0);
    child.stdio[4].on('data', (c) => {
      if (job.recordsLen < cap) {
        job.records.push(c);
        job.recordsLen += c.length;
      }
      if (job.selfExit === null) {
        const seen = Buffer.concat([tail, c]);
        const m = /\{"kind":"exit","code":(-?\d+)\}/.exec(seen.toString('latin1'));
        if (m) {
          job.selfExit = Number(m[1]);
          this.maybeSelfFinish(job);
        }
        tail = seen.subarray(Math.max(0, seen.length - 64));
      }
    });
    // The child's own "exit" record and the end of both output streams finish the job; the process itself
    // may still be tearing down (slow for a V8 process inside gVisor).
    for (const role of ['stdout', 'stderr']) {
      child[role].on('end', () => {
        job.ended++;
        this.maybeSelfFinish(job);
      });
    }
    const onExit = (code, sig) => {
      if (job.finished) return;
      if (job.stamps) job.stamps.end = now();
      job.exitCode = code;
      job.signal = sig ? os.constants.signals[sig] : null;
      // Everything of the job was in the child's pid namespace; the pipes may still hold its last output.
      job.closeTimer = setTimeout(() => {
        for (const s of child.stdio) if (s) s.destroy();
        this.finish(job);
      }, 500);
    };
    if (entry.exited) onExit(child.exitCode, child.signalCode);
    else child.on('exit', onExit);
    child.on('close', () => this.finish(job));
    const payload = {
      code: spec.code, args: spec.args, env: spec.env, phase_times: this.opts.phaseTimes, result_cap: P.RESULT_CAP,
      max_artifacts: this.opts.maxArtifacts, max_artifact_bytes: this.opts.maxArtifactBytes,
      isolation: {
        mode: this.iso.mode, pid_ns: this.iso.pid_ns, mount_ns: this.isolated, proc: this.isolated,
        net_ns: this.iso.net_ns && !allowNetwork, ipc_ns: this.iso.ipc_ns, warm,
      },
    };
    child.stdin.end(spec.stdin);
    child.stdio[3].end(JSON.stringify(payload));
    if (job.stamps) job.stamps.handoff = now();
  }

  maybeSelfFinish(job) {
    if (job.finished || job.selfExit === null || job.ended < 2 || job.killReason) return;
    if (job.stamps) job.stamps.end = now();
    job.exitCode = job.selfExit;
    job.signal = null;
    this.killTree(job);
    this.finish(job);
  }

  takeOutput(job, role, chunk) {
    const room = job.spec.limits.output_bytes - job.outLen[role];
    if (chunk.length > room) {
      chunk = chunk.subarray(0, Math.max(room, 0));
      job.truncated[role] = true;
      this.kill(job, 'output');
    }
    if (chunk.length) {
      job.out[role].push(chunk);
      job.outLen[role] += chunk.length;
      if (job.spec.stream) this.send({ type: 'output', id: job.id, stream: role, data: chunk.toString('base64') });
    }
  }

  // With a pid namespace, SIGTERM to the launcher: it kills its child (pid 1 of the job's namespace, so all of
  // the job) and exits. Not SIGKILL to the launcher's process group: a job that ran native code may have left
  // that group and cleared its parent-death signal, and would outlive the launcher. Without one (weak mode),
  // the launcher is the job itself: SIGKILL to its process group.
  killTree(job) {
    try {
      if (this.iso.pid_ns) process.kill(job.entry.child.pid, 'SIGTERM');
      else process.kill(-job.entry.child.pid, 'SIGKILL');
    } catch (e) {
      try {
        job.entry.child.kill('SIGKILL');
      } catch (e2) { /* gone */ }
    }
  }

  kill(job, reason) {
    if (!job.killReason) job.killReason = reason;
    this.killTree(job);
  }

  finish(job) {
    if (job.finished || (job.exitCode === null && job.signal === null && !job.entry.exited)) return;
    job.finished = true;
    if (this.warming) this.endWarming();
    else this.refillSoon();
    clearTimeout(job.timer);
    clearTimeout(job.closeTimer);
    this.jobs.delete(job.id);
    const durationMs = Number(process.hrtime.bigint() - job.start) / 1e6;
    try {
      this.sendResult(this.resultFrame(job, durationMs));
    } finally {
      const entry = job.entry;
      if (entry.exited) this.retire(entry);
      else entry.child.once('exit', () => this.retire(entry));
    }
  }

  resultFrame(job, durationMs) {
    const lim = job.spec.limits;
    let iso = null;
    let resultJson = null;
    let memory = false;
    let badResult = null;
    let peak = 0;
    let arts = [];
    let artsTruncated = false;
    for (const line of Buffer.concat(job.records).toString('utf8').split('\n')) {
      let rec;
      try {
        rec = JSON.parse(line);
      } catch (e) {
        continue;
      }
      if (!rec || typeof rec !== 'object') continue;
      if (rec.kind === 'setup' && !iso) iso = rec.isolation;
      else if (rec.kind === 'result') resultJson = rec.json;
      else if (rec.kind === 'memory') memory = true;
      else if (rec.kind === 'bad_result') badResult = rec.message;
      else if (rec.kind === 'usage' && Number.isSafeInteger(rec.maxrss)) peak = rec.maxrss;
      else if (rec.kind === 'artifacts' && Array.isArray(rec.files)) {
        arts = rec.files.filter((a) => a && typeof a === 'object').slice(0, this.opts.maxArtifacts);
        artsTruncated = !!rec.truncated;
      } else if (rec.kind === 'stamps' && job.stamps && rec.stamps && typeof rec.stamps === 'object') {
        for (const [k, v] of Object.entries(rec.stamps)) if (typeof v === 'number' && !(k in job.stamps)) job.stamps[k] = v;
      }
    }
    const stdout = Buffer.concat(job.out.stdout);
    const stderr = Buffer.concat(job.out.stderr);
    const code = job.exitCode;
    const sig = job.signal;
    const tail = stderr.subarray(Math.max(0, stderr.length - 4096)).toString('utf8');
    let status;
    let error = '';
    if (job.killReason === 'timeout') [status, error] = ['timeout', `wall timeout of ${lim.wall_timeout_ms} ms exceeded`];
    else if (job.killReason === 'output') [status, error] = ['output_limit', `output limit of ${lim.output_bytes} bytes exceeded`];
    else if (job.killReason === 'cancel') [status, error] = ['internal_error', 'cancelled'];
    else if (job.killReason === 'shutdown') [status, error] = ['internal_error', 'runner shutting down'];
    else if (sig === os.constants.signals.SIGXCPU ||
             (sig === os.constants.signals.SIGKILL && durationMs >= lim.cpu_time_ms)) {
      [status, error] = ['timeout', `cpu time limit of ${lim.cpu_time_ms} ms exceeded`];
    } else if (memory || (code !== 0 && /heap out of memory|Fatal process out of memory|Allocation failed|FATAL ERROR: .*(memory|Zone)/i.test(tail))) {
      [status, error] = ['memory_limit', `memory limit of ${lim.memory_bytes} bytes exceeded`];
    } else if (code === P.SETUP_FAILED_EXIT && !iso) {
      [status, error] = ['internal_error', `job setup failed: ${tail.trim()}`];
    } else if (code === 0 && badResult === null) status = 'success';
    else {
      status = 'program_error';
      error = badResult || (sig !== null ? `killed by signal ${sig}` : `exit status ${code}`);
    }
    const frame = {
      type: 'result', id: job.id, status, exit_code: code, signal: sig,
      stdout: stdout.toString('base64'), stderr: stderr.toString('base64'),
      stdout_truncated: job.truncated.stdout, stderr_truncated: job.truncated.stderr,
      result_json: status === 'success' ? resultJson : null, duration_ms: Math.round(durationMs * 1000) / 1000,
      peak_memory_bytes: peak, artifacts: arts,
      artifacts_truncated: artsTruncated, error, isolation: iso || {},
    };
    if (job.stamps) frame.phases = phasesOf(job.stamps);
    return frame;
  }

  shutdown() {
    if (this.stopping) return;
    this.stopping = true;
    for (const e of this.pool) {
      try {
        process.kill(-e.child.pid, 'SIGKILL');
      } catch (err) { /* gone */ }
    }
    this.pool = [];
    for (const job of this.jobs.values()) this.kill(job, 'shutdown');
    const done = () => {
      if (this.weakBase) fs.rmSync(this.weakBase, { recursive: true, force: true });
      process.exit(0);
    };
    if (this.jobs.size === 0) return done();
    const check = setInterval(() => {
      if (this.jobs.size === 0) {
        clearInterval(check);
        done();
      }
    }, 20);
    setTimeout(done, 5000).unref();
  }
}

// Milliseconds between consecutive timestamps of the job's path, each named by the later one.
function phasesOf(stamps) {
  const st = Object.assign({}, stamps, { sent: now() });
  const order = Object.entries(st).filter(([, t]) => t >= st.recv).sort((a, b) => a[1] - b[1]);
  const out = {};
  for (let i = 1; i < order.length; i++) out[order[i][0]] = Math.round((order[i][1] - order[i - 1][1]) * 1000) / 1000;
  out.total = Math.round((st.sent - st.recv) * 1000) / 1000;
  return out;
}

module.exports = { Runner };
