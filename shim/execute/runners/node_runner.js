// gvshim Node runner: runs JavaScript snippets for the Execute service.
//
// Started by the shim inside the sandbox as `node -e <this file's text> -- [options]`; it speaks the frame
// protocol of PROTOCOL.md (next to this file) on its stdin/stdout and writes diagnostics to stderr.
// Node cannot fork a warm interpreter, so the runner keeps a small pool of pre-started, single-use child
// processes. Each child is started through util-linux tools when present (unshare for pid/net/mount
// namespaces, prlimit for rlimits, setpriv for the unprivileged uid), then waits for its job on fd 3.
// Warm children are started with the default limits; a job asking for other limits gets a fresh child.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const { spawn, spawnSync } = require('child_process');

const PROTOCOL_VERSION = 1;
const MAX_FRAME = 64 << 20;
const RESULT_CAP = 16 << 20;
const SETUP_FAILED_EXIT = 125;

const DEFAULT_LIMITS = {
  wall_timeout_ms: 10000,
  cpu_time_ms: 10000,
  memory_bytes: 512 * 1024 * 1024,
  output_bytes: 1 << 20,
  max_processes: 64,
  file_size_bytes: 16 << 20,
};

// Everything a runner diagnostic or a stray console.log prints goes to stderr: stdout carries frames only.
console.log = console.info = console.debug = console.error;
function diag(msg) {
  process.stderr.write(`gvshim-node-runner: ${msg}\n`);
}

// ---------------------------------------------------------------------------------------------------------
// The child bootstrap: runs as `node -e` in the pre-started process. Serialised with toString(), so it must
// not refer to anything outside its own body.
function childMain() {
  const fs = require('fs');
  const net = require('net');
  const path = require('path');
  const vm = require('vm');
  const Module = require('module');

  function record(obj) {
    const buf = Buffer.from(JSON.stringify(obj) + '\n');
    let off = 0;
    while (off < buf.length) {
      try {
        off += fs.writeSync(4, buf, off, buf.length - off);
      } catch (e) {
        if (e.code !== 'EAGAIN') return;
      }
    }
  }
  // Stack text without the bootstrap's own frames, so a snippet's error reads like a plain script's.
  function stackOf(e) {
    const text = String(e && e.stack || e);
    return text.split('\n').filter((l) => !/^\s+at .*(\[eval\]|node:internal\/|node:vm:|node:events:)/.test(l))
      .join('\n');
  }
  function isMemoryError(e) {
    return e instanceof RangeError && /allocation failed|out of memory/i.test(String(e.message));
  }

  const now = () => Number(process.hrtime.bigint()) / 1e6;
  const chunks = [];
  const jobIn = new net.Socket({ fd: 3, readable: true, writable: false });
  jobIn.on('data', (c) => chunks.push(c));
  jobIn.on('error', () => process.exit(125));
  jobIn.on('end', () => {
    jobIn.destroy();
    let job;
    try {
      job = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch (e) {
      process.exit(125);  // the runner closed fd 3 without a job: pool shutdown
    }
    run(job);
  });

  function run(job) {
    const stamps = job.phase_times ? { c_got_job: now() } : null;
    try {
      process.chdir(job.workdir);
      if (job.drop_in_child && process.getuid() === 0) {
        process.setgroups([]);
        process.setgid(job.gid);
        process.setuid(job.uid);
      }
      if (job.drop && (process.getuid() === 0 || process.geteuid() === 0)) {
        throw new Error('privilege drop did not take effect');
      }
    } catch (e) {
      process.stderr.write(`gvshim: job setup failed: ${e.message}\n`);
      process.exit(125);
    }
    for (const k of Object.keys(process.env)) delete process.env[k];
    Object.assign(process.env, {
      PATH: '/usr/local/bin:/usr/bin:/bin', HOME: job.workdir, TMPDIR: job.workdir, LANG: 'C.UTF-8',
    }, job.env);
    record({
      kind: 'setup',
      isolation: {
        pid_ns: job.ns.pid && process.pid === 1, net_ns: job.ns.net, mount_ns: job.ns.mount, proc: job.ns.proc,
        tmp_hidden: false, uid: process.getuid(),
      },
    });
    if (stamps) stamps.c_setup = now();
    process.on('exit', (code) => {
      try {
        record({ kind: 'usage', maxrss: process.resourceUsage().maxRSS * 1024 });
      } catch (e) { /* best effort */ }
      // With a uid of its own, everything else of this uid is the job's leftovers: kill them now, so
      // nothing runs on once the result is out (the runner verifies before reusing the uid).
      if (job.own_uid) {
        try {
          process.kill(-1, 'SIGKILL');
        } catch (e) { /* nothing left */ }
      }
      if (stamps) {
        stamps.c_done = now();
        record({ kind: 'stamps', stamps });
      }
      // Our output is complete (pipe writes are synchronous on Linux); closing it lets the runner see the
      // end of both streams without waiting for this process to be torn down.
      try {
        fs.closeSync(1);
        fs.closeSync(2);
      } catch (e) { /* already closed */ }
      record({ kind: 'exit', code: typeof code === 'number' ? code : 0 });
    });
    const filename = path.join(job.workdir, 'snippet.js');
    const mod = { exports: {}, filename, id: '.', loaded: false };
    // CommonJS-style wrapper; async so top-level await works. The trailer hands back `main` if the code
    // declared one (or exported it).
    const head = '(async function (exports, require, module, __filename, __dirname) {';
    const wrapper = head + job.code +
      '\n;return typeof main === "function" ? main : (module.exports && typeof module.exports.main === ' +
      '"function" ? module.exports.main : undefined);\n})';
    let fn;
    try {
      fn = vm.runInThisContext(wrapper, { filename });
    } catch (e) {
      let err = e;
      try {
        vm.runInThisContext(head + job.code + '\n})', { filename });  // the same error, without the trailer
      } catch (e2) {
        err = e2;
      }
      process.stderr.write(stackOf(err) + '\n');
      process.exit(1);
    }
    fn.call(mod.exports, mod.exports, Module.createRequire(filename), mod, filename, job.workdir)
      .then(async (main) => {
        if (typeof main !== 'function') return;  // a script: it ends when its event loop drains
        const value = await main(job.args);
        let text;
        try {
          text = JSON.stringify(value);
        } catch (e) {
          const msg = `main returned a value that is not JSON-serialisable: ${e.message}`;
          process.stderr.write(msg + '\n');
          record({ kind: 'bad_result', message: msg });
          process.exit(1);
        }
        if (text === undefined) text = 'null';
        if (text.length > 16 << 20) {
          const msg = 'main returned a result larger than 16777216 bytes';
          process.stderr.write(msg + '\n');
          record({ kind: 'bad_result', message: msg });
          process.exit(1);
        }
        record({ kind: 'result', json: text });
        process.exit(0);
      })
      .catch((e) => {
        if (isMemoryError(e)) record({ kind: 'memory' });
        try {
          process.stderr.write(stackOf(e) + '\n');
        } catch (e2) { /* stderr gone */ }
        process.exit(1);
      });
  }
}

// ---------------------------------------------------------------------------------------------------------
// Runner side.

function parseOptions(argv) {
  const o = {
    uid: 65534, gid: 65534, uidCount: 1, tmpBase: os.tmpdir(), maxJobs: 8, poolSize: 2, namespaces: true,
    maxArtifacts: 16, maxArtifactBytes: 4 << 20, asSlackBytes: 1024 * 1024 * 1024,
    defaults: Object.assign({}, DEFAULT_LIMITS), node: process.execPath, sandboxNetwork: '', pidNamespace: 'auto',
    phaseTimes: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`option ${a} needs a value`);
      return argv[++i];
    };
    if (a === '--') continue;
    else if (a === '--uid') o.uid = Number(next());
    else if (a === '--gid') o.gid = Number(next());
    else if (a === '--uid-count') o.uidCount = Math.max(1, Number(next()));
    else if (a === '--tmp-base') o.tmpBase = next();
    else if (a === '--max-jobs') o.maxJobs = Math.max(1, Number(next()));
    else if (a === '--pool-size') o.poolSize = Math.max(0, Number(next()));
    else if (a === '--no-namespaces') o.namespaces = false;
    else if (a === '--max-artifacts') o.maxArtifacts = Number(next());
    else if (a === '--max-artifact-bytes') o.maxArtifactBytes = Number(next());
    else if (a === '--as-slack-bytes') o.asSlackBytes = Number(next());
    else if (a === '--node') o.node = next();
    else if (a === '--sandbox-network') o.sandboxNetwork = next();
    else if (a === '--phase-times') o.phaseTimes = true;
    else if (a === '--pid-namespace') {
      o.pidNamespace = next();
      if (!['auto', 'on', 'off'].includes(o.pidNamespace)) throw new Error('--pid-namespace must be auto, on or off');
    }
    else if (a.startsWith('--default-') && a.slice(10).replace(/-/g, '_') in DEFAULT_LIMITS) {
      o.defaults[a.slice(10).replace(/-/g, '_')] = Number(next());
    } else throw new Error(`unknown option ${a}`);
  }
  return o;
}

function findTool(name) {
  for (const dir of (process.env.PATH || '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin').split(':')) {
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch (e) { /* next */ }
  }
  return null;
}

// Finds out which isolation tools exist and work here, by running them once on a trivial node.
function probeIsolation(opts, scratch) {
  const root = process.getuid() === 0;
  const iso = {
    root, pid_ns: false, net_ns: false, mount_ns: false, proc: false, rlimits: false, setuid: false,
    tools: { unshare: findTool('unshare'), prlimit: findTool('prlimit'), setpriv: findTool('setpriv') },
  };
  const ok = (argv) => spawnSync(argv[0], argv.slice(1).concat([opts.node, '-e', '0']), { stdio: 'ignore' })
    .status === 0;
  const t = iso.tools;
  if (root && opts.namespaces && t.unshare) {
    iso.pid_ns = ok([t.unshare, '--pid', '--fork', '--kill-child', '--']);
    iso.net_ns = ok([t.unshare, '--net', '--']);
    // A mount namespace only counts if a mount made in it stays there: gVisor 20221219 accepts
    // unshare(CLONE_NEWNS) but its mounts land in the container's shared namespace, where --mount-proc
    // would replace everyone's /proc.
    t.mount = findTool('mount');
    t.umount = findTool('umount');
    if (t.mount) {
      const probeDir = fs.mkdtempSync(path.join(scratch, 'probe-'));
      fs.writeFileSync(path.join(probeDir, 'marker'), '');
      const r = spawnSync(t.unshare, ['--mount', '--', t.mount, '-t', 'tmpfs', '-o', 'size=4k', 'tmpfs', probeDir],
        { stdio: 'ignore' });
      iso.mount_ns = r.status === 0 && fs.existsSync(path.join(probeDir, 'marker'));
      if (!fs.existsSync(path.join(probeDir, 'marker')) && t.umount) {
        spawnSync(t.umount, ['-l', probeDir], { stdio: 'ignore' });
      }
      fs.rmSync(probeDir, { recursive: true, force: true });
    }
    if (iso.pid_ns && iso.mount_ns) iso.proc = ok([t.unshare, '--pid', '--fork', '--mount', '--mount-proc', '--']);
  }
  if (t.prlimit) iso.rlimits = ok([t.prlimit, '--core=0', '--']);
  iso.setuid = root;
  return iso;
}

class Runner {
  constructor(opts) {
    this.opts = opts;
    this.jobs = new Map();
    this.pool = [];  // idle warm children for the default profile
    this.inbuf = Buffer.alloc(0);
    this.freeUids = [];
    for (let u = opts.uid; u < opts.uid + opts.uidCount; u++) this.freeUids.push(u);
    this.jobBase = path.join(opts.tmpBase, `gvshim-js-${process.pid}`);
    fs.mkdirSync(this.jobBase, { recursive: true });
    fs.chmodSync(this.jobBase, 0o711);
    this.iso = probeIsolation(opts, this.jobBase);
    // A uid per child lets the runner clean up after a job by uid, so the pid namespace (an extra exec and
    // fork per child, and zombies under the container's init in gVisor) is not needed.
    this.ownUids = this.iso.root && opts.uidCount > 1;
    this.usePidNs = this.iso.pid_ns && (opts.pidNamespace === 'on' || (opts.pidNamespace === 'auto' && !this.ownUids));
    // With runsc --network=none the sandbox has only its own loopback: no network namespace per job needed.
    this.isolateNet = this.iso.net_ns && opts.sandboxNetwork !== 'none';
    Object.assign(this.iso, {
      mode: this.usePidNs ? 'pid-namespace' : 'uid', sandbox_network: opts.sandboxNetwork || 'unknown',
      network_isolated: this.isolateNet || opts.sandboxNetwork === 'none',
    });
    this.childSource = `(${childMain.toString()})()`;
    this.poolKey = this.profileKey(opts.defaults, false);
    this.stopping = false;
    this.refillPending = false;
  }

  send(obj) {
    const body = Buffer.from(JSON.stringify(obj));
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length);
    process.stdout.write(Buffer.concat([head, body]));
  }

  start() {
    process.stdout.on('error', () => this.shutdown());
    process.stdin.on('data', (c) => this.onInput(c));
    process.stdin.on('end', () => this.shutdown());
    process.stdin.on('error', () => this.shutdown());
    if (this.iso.root && this.opts.uidCount > 1) {
      // A runner killed during a job (or a job that outlived it) may have left processes under the pool's
      // uids: every uid is checked, and swept if needed, before its first use (releasing it refills the pool).
      const uids = this.freeUids;
      this.freeUids = [];
      for (const uid of uids) this.sweepThenRelease(uid);
    } else {
      for (let i = 0; i < this.opts.poolSize; i++) this.refill();
    }
    this.send({
      type: 'ready', runner: 'javascript', protocol: PROTOCOL_VERSION, pid: process.pid, version: process.version,
      isolation: this.iso, max_jobs: this.opts.maxJobs, defaults: this.opts.defaults,
    });
  }

  onInput(chunk) {
    this.inbuf = Buffer.concat([this.inbuf, chunk]);
    while (this.inbuf.length >= 4) {
      const n = this.inbuf.readUInt32BE(0);
      if (n > MAX_FRAME) {
        this.send({ type: 'error', message: `frame of ${n} bytes exceeds the ${MAX_FRAME} byte limit; ` +
          'stream cannot be resynchronised' });
        this.shutdown();
        return;
      }
      if (this.inbuf.length < 4 + n) break;
      const body = this.inbuf.subarray(4, 4 + n);
      this.inbuf = this.inbuf.subarray(4 + n);
      let msg;
      try {
        msg = JSON.parse(body.toString('utf8'));
        if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) throw new Error('frame is not a JSON object');
      } catch (e) {
        this.send({ type: 'error', message: `malformed frame: ${e.message}` });
        continue;
      }
      this.dispatch(msg);
    }
  }

  dispatch(msg) {
    switch (msg.type) {
      case 'exec': this.startJob(msg); break;
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

  // What must be fixed when a child starts. The wall clock and output caps are enforced by the runner, so
  // jobs that differ only in those can still use a warm child.
  profileKey(limits, allowNetwork) {
    return JSON.stringify([limits.cpu_time_ms, limits.memory_bytes, limits.max_processes, limits.file_size_bytes,
      !!allowNetwork]);
  }

  // argv that starts a child with the given limits: namespaces, then rlimits (set while still root, so the
  // process limit is checked at the privilege drop), then the drop, then node itself.
  childArgv(limits, allowNetwork, uid) {
    const t = this.iso.tools;
    const argv = [];
    const ns = { pid: false, net: false, mount: false, proc: false };
    const wantNet = this.isolateNet && !allowNetwork;
    if (this.usePidNs || wantNet || (this.usePidNs && this.iso.mount_ns)) {
      argv.push(t.unshare);
      if (this.usePidNs) {
        argv.push('--pid', '--fork', '--kill-child');
        ns.pid = true;
      }
      if (this.usePidNs && this.iso.mount_ns) {
        argv.push('--mount');
        ns.mount = true;
        if (this.iso.proc) {
          argv.push('--mount-proc');
          ns.proc = true;
        }
      }
      if (wantNet) {
        argv.push('--net');
        ns.net = true;
      }
      argv.push('--');
    }
    const cpu = Math.max(1, Math.ceil(limits.cpu_time_ms / 1000));
    const as = limits.memory_bytes + this.opts.asSlackBytes;
    if (this.iso.rlimits) {
      argv.push(t.prlimit, `--as=${as}`, `--cpu=${cpu}:${cpu + 1}`, `--nproc=${limits.max_processes}`,
        `--fsize=${limits.file_size_bytes}`, '--core=0', '--');
    }
    let dropInChild = false;
    if (this.iso.root) {
      if (t.setpriv) {
        argv.push(t.setpriv, `--reuid=${uid}`, `--regid=${this.opts.gid}`, '--clear-groups', '--no-new-privs', '--');
      } else {
        dropInChild = true;
      }
    }
    const heapMb = Math.max(16, Math.floor(limits.memory_bytes / (1024 * 1024)));
    argv.push(this.opts.node, `--max-old-space-size=${heapMb}`, '-e', this.childSource);
    return { argv, ns, dropInChild };
  }

  spawnChild(limits, allowNetwork) {
    const uid = this.opts.uidCount > 1 ? this.freeUids.shift() : this.opts.uid;
    const { argv, ns, dropInChild } = this.childArgv(limits, allowNetwork, uid);
    const child = spawn(argv[0], argv.slice(1), {
      stdio: ['pipe', 'pipe', 'pipe', 'pipe', 'pipe'], detached: true, env: {}, cwd: '/',
    });
    const entry = { child, uid, ns, dropInChild, exited: false, key: this.profileKey(limits, allowNetwork) };
    child.on('error', (e) => diag(`spawn ${argv[0]}: ${e.message}`));
    child.on('exit', () => {
      entry.exited = true;
      if (!entry.job) {
        const i = this.pool.indexOf(entry);
        if (i >= 0) this.pool.splice(i, 1);
        this.releaseUid(uid);
      }
    });
    for (const s of child.stdio) s.on('error', () => {});
    return entry;
  }

  refill() {
    if (this.stopping || this.pool.length >= this.opts.poolSize) return;
    if (this.opts.uidCount > 1 && this.freeUids.length === 0) return;
    this.pool.push(this.spawnChild(this.opts.defaults, false));
  }

  // Kills what a finished job left running under its uid before the uid is reused. The pid namespace
  // normally did that already, but not every kernel does (gVisor 20221219 leaves a namespace's processes
  // alive when its init exits). Only with a uid per job: a shared uid also runs the warm children.
  sweepThenRelease(uid) {
    if (!this.iso.root || this.opts.uidCount <= 1 || !uidHasProcesses(uid)) return this.releaseUid(uid);
    const k = spawn(this.opts.node, ['-e', 'try { process.kill(-1, "SIGKILL"); } catch (e) {}'],
      { uid, gid: this.opts.gid, stdio: 'ignore', env: {} });
    let released = false;
    const release = () => {
      if (!released) this.releaseUid(uid);
      released = true;
    };
    k.on('exit', release);
    k.on('error', release);
  }

  releaseUid(uid) {
    if (this.opts.uidCount > 1 && uid !== undefined) this.freeUids.push(uid);
    if (this.pool.length < this.opts.poolSize) this.refillSoon();
  }

  reject(id, message) {
    this.send(Object.assign(emptyResult(id), { status: 'rejected', error: message }));
  }

  parseSpec(msg) {
    if (typeof msg.code !== 'string') throw new Error('code must be a string');
    let args = {};
    if (msg.args_json !== undefined && msg.args_json !== null && msg.args_json !== '') {
      if (typeof msg.args_json !== 'string') throw new Error('args_json must be a string');
      try {
        args = JSON.parse(msg.args_json);
      } catch (e) {
        throw new Error(`args_json is not valid JSON: ${e.message}`);
      }
    }
    const env = msg.env || {};
    if (typeof env !== 'object' || Array.isArray(env)) throw new Error('env must map names to strings');
    for (const [k, v] of Object.entries(env)) {
      if (!k || k.includes('=') || typeof v !== 'string' || (k + v).includes('\0')) {
        throw new Error('env must map names to strings');
      }
    }
    const limits = Object.assign({}, this.opts.defaults);
    for (const [k, v] of Object.entries(msg.limits || {})) {
      if (!(k in limits)) throw new Error(`unknown limit ${JSON.stringify(k)}`);
      if (!Number.isSafeInteger(v) || v < 0) throw new Error(`limit ${k} must be a non-negative integer`);
      if (v) limits[k] = v;
    }
    if (msg.stdin !== undefined && msg.stdin !== null && typeof msg.stdin !== 'string') {
      throw new Error('stdin must be base64 text');
    }
    const stdin = Buffer.from(msg.stdin || '', 'base64');
    return { code: msg.code, args, env, limits, stdin, allowNetwork: !!msg.allow_network, stream: !!msg.stream };
  }

  startJob(msg) {
    const id = msg.id;
    if (typeof id !== 'string' || !id) {
      this.send({ type: 'error', message: 'exec frame without a string id' });
      return;
    }
    if (this.jobs.has(id)) return this.reject(id, `a job with id ${JSON.stringify(id)} is already running`);
    if (this.jobs.size >= this.opts.maxJobs) return this.reject(id, `runner busy: ${this.jobs.size} jobs running`);
    let spec;
    try {
      spec = this.parseSpec(msg);
    } catch (e) {
      return this.reject(id, `bad request: ${e.message}`);
    }
    const tRecv = Number(process.hrtime.bigint()) / 1e6;
    const key = this.profileKey(spec.limits, spec.allowNetwork && this.isolateNet);
    let entry = null;
    let warm = false;
    if (key === this.poolKey) {
      while (this.pool.length && !entry) {
        const e = this.pool.shift();
        if (!e.exited) entry = e;
      }
      warm = !!entry;
    }
    if (!entry) {
      if (this.opts.uidCount > 1 && this.freeUids.length === 0) return this.reject(id, 'runner busy: no free uid');
      entry = this.spawnChild(spec.limits, spec.allowNetwork);
    }
    // The replacement is started after this job's result is out (finish), so that starting a node process
    // does not compete with the job for the CPU; a job that found no warm child needs one now.
    if (!warm) setImmediate(() => this.refill());
    const job = {
      id, spec, entry, warm, start: process.hrtime.bigint(), out: { stdout: [], stderr: [] },
      outLen: { stdout: 0, stderr: 0 }, truncated: { stdout: false, stderr: false }, records: [], recordsLen: 0,
      killReason: null, exitCode: null, signal: null, workdir: null, closed: false, finished: false,
      stamps: this.opts.phaseTimes ? { recv: tRecv } : null, selfExit: null, ended: 0, recScan: 0,
    };
    entry.job = job;
    this.jobs.set(id, job);
    try {
      job.workdir = path.join(this.jobBase, crypto.randomBytes(16).toString('hex'));
      fs.mkdirSync(job.workdir, { mode: 0o700 });
      fs.mkdirSync(path.join(job.workdir, 'artifacts'), { mode: 0o700 });
      if (this.iso.root) {
        fs.chownSync(job.workdir, entry.uid, this.opts.gid);
        fs.chownSync(path.join(job.workdir, 'artifacts'), entry.uid, this.opts.gid);
      }
    } catch (e) {
      this.kill(job, 'setup');
      job.setupError = `could not create the working directory: ${e.message}`;
    }
    const child = entry.child;
    job.timer = setTimeout(() => this.kill(job, 'timeout'), spec.limits.wall_timeout_ms);
    for (const role of ['stdout', 'stderr']) {
      child[role].on('data', (c) => this.takeOutput(job, role, c));
    }
    child.stdio[4].on('data', (c) => {
      if (job.recordsLen < RESULT_CAP + 4096) {
        job.records.push(c);
        job.recordsLen += c.length;
      }
      if (job.selfExit === null && c.includes('"exit"')) {
        const m = /\{"kind":"exit","code":(-?\d+)\}/.exec(Buffer.concat(job.records).toString('utf8'));
        if (m) {
          job.selfExit = Number(m[1]);
          this.maybeSelfFinish(job);
        }
      }
    });
    // The child's own "exit" record and the end of both output streams finish the job; the process
    // itself may still be tearing down (slow for a V8 process inside gVisor).
    for (const role of ['stdout', 'stderr']) {
      child[role].on('end', () => {
        job.ended++;
        this.maybeSelfFinish(job);
      });
    }
    const onExit = (code, sig) => {
      if (job.finished) return;
      if (job.stamps) job.stamps.end = Number(process.hrtime.bigint()) / 1e6;
      job.exitCode = code;
      job.signal = sig ? os.constants.signals[sig] : null;
      // Stragglers outside a pid namespace die with the job's process group.
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch (e) { /* already gone */ }
      // A writer that escaped the group must not hold the job open: give the pipes a moment, then cut them.
      job.closeTimer = setTimeout(() => {
        for (const s of child.stdio) if (s) s.destroy();
        this.finish(job);
      }, 500);
    };
    if (entry.exited) onExit(child.exitCode, child.signalCode);
    else child.on('exit', onExit);
    child.on('close', () => this.finish(job));
    if (!job.setupError) {
      const payload = {
        code: spec.code, args: spec.args, env: spec.env, workdir: job.workdir, uid: entry.uid, gid: this.opts.gid,
        drop_in_child: entry.dropInChild, drop: this.iso.root, ns: entry.ns, own_uid: this.ownUids,
        phase_times: this.opts.phaseTimes,
      };
      child.stdin.end(spec.stdin);
      child.stdio[3].end(JSON.stringify(payload));
      if (job.stamps) job.stamps.handoff = Number(process.hrtime.bigint()) / 1e6;
    }
  }

  // Starting a child blocks the event loop for its fork/exec (≈ 10 ms inside gVisor): one child per turn of
  // the loop, so pending I/O (a request, a job's output) is served in between. Measured alternatives (starting
  // the replacement after the next hand-over, or only when idle) were not faster under a steady stream.
  refillSoon() {
    if (this.refillPending || this.stopping) return;
    this.refillPending = true;
    setImmediate(() => {
      this.refillPending = false;
      const before = this.pool.length;
      this.refill();
      if (this.pool.length > before && this.pool.length < this.opts.poolSize) this.refillSoon();
    });
  }

  maybeSelfFinish(job) {
    if (job.finished || job.selfExit === null || job.ended < 2 || job.killReason) return;
    if (job.stamps) job.stamps.end = Number(process.hrtime.bigint()) / 1e6;
    job.exitCode = job.selfExit;
    job.signal = null;
    try {
      process.kill(-job.entry.child.pid, 'SIGKILL');
    } catch (e) { /* already gone */ }
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

  kill(job, reason) {
    if (!job.killReason) job.killReason = reason;
    try {
      process.kill(-job.entry.child.pid, 'SIGKILL');
    } catch (e) {
      try {
        job.entry.child.kill('SIGKILL');
      } catch (e2) { /* gone */ }
    }
  }

  finish(job) {
    if (job.finished || job.exitCode === null && job.signal === null && !job.entry.exited) return;
    job.finished = true;
    this.refillSoon();
    clearTimeout(job.timer);
    clearTimeout(job.closeTimer);
    this.jobs.delete(job.id);
    const durationMs = Number(process.hrtime.bigint() - job.start) / 1e6;
    try {
      this.send(this.resultFrame(job, durationMs));
    } finally {
      if (job.workdir) fs.rmSync(job.workdir, { recursive: true, force: true });
      const entry = job.entry;
      if (entry.exited) this.sweepThenRelease(entry.uid);
      else entry.child.once('exit', () => this.sweepThenRelease(entry.uid));
    }
  }

  collectArtifacts(job) {
    const out = [];
    let total = 0;
    let truncated = false;
    const dir = path.join(job.workdir, 'artifacts');
    try {
      if (!fs.lstatSync(dir).isDirectory()) return { out, truncated };
    } catch (e) {
      return { out, truncated };
    }
    for (const name of fs.readdirSync(dir).sort()) {
      let fd;
      try {
        fd = fs.openSync(path.join(dir, name),
          fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
      } catch (e) {
        continue;
      }
      try {
        const st = fs.fstatSync(fd);
        if (!st.isFile()) continue;
        if (out.length >= this.opts.maxArtifacts || total + st.size > this.opts.maxArtifactBytes) {
          truncated = true;
          continue;
        }
        const buf = Buffer.alloc(st.size);
        let off = 0;
        while (off < st.size) {
          const n = fs.readSync(fd, buf, off, st.size - off, null);
          if (n === 0) break;
          off += n;
        }
        total += off;
        out.push({ name, content: buf.subarray(0, off).toString('base64'), size: off });
      } finally {
        fs.closeSync(fd);
      }
    }
    return { out, truncated };
  }

  resultFrame(job, durationMs) {
    const lim = job.spec.limits;
    let iso = null;
    let resultJson = null;
    let memory = false;
    let badResult = null;
    let peak = 0;
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
      else if (rec.kind === 'usage') peak = rec.maxrss;
      else if (rec.kind === 'stamps' && job.stamps && rec.stamps && typeof rec.stamps === 'object') {
        for (const [k, v] of Object.entries(rec.stamps)) if (typeof v === 'number' && !(k in job.stamps)) job.stamps[k] = v;
      }
    }
    const stdout = Buffer.concat(job.out.stdout);
    let stderr = Buffer.concat(job.out.stderr);
    let code = job.exitCode;
    let sig = job.signal;
    // util-linux unshare passes a child's death by signal on by raising the same signal on itself; for
    // SIGKILL (e.g. the RLIMIT_CPU hard limit) that fails, and it exits 1 with this message instead.
    const unshareKilled = Buffer.from('unshare: sigprocmask unblock failed: Invalid argument\n');
    if (job.entry.ns.pid && code === 1 && stderr.subarray(stderr.length - unshareKilled.length).equals(unshareKilled)) {
      stderr = stderr.subarray(0, stderr.length - unshareKilled.length);
      code = null;
      sig = os.constants.signals.SIGKILL;
    }
    const tail = stderr.subarray(Math.max(0, stderr.length - 4096)).toString('utf8');
    let status;
    let error = '';
    if (job.setupError) [status, error] = ['internal_error', job.setupError];
    else if (job.killReason === 'timeout') [status, error] = ['timeout', `wall timeout of ${lim.wall_timeout_ms} ms exceeded`];
    else if (job.killReason === 'output') [status, error] = ['output_limit', `output limit of ${lim.output_bytes} bytes exceeded`];
    else if (job.killReason === 'cancel') [status, error] = ['internal_error', 'cancelled'];
    else if (job.killReason === 'shutdown') [status, error] = ['internal_error', 'runner shutting down'];
    else if (sig === os.constants.signals.SIGXCPU ||
             (sig === os.constants.signals.SIGKILL && durationMs >= lim.cpu_time_ms)) {
      [status, error] = ['timeout', `cpu time limit of ${lim.cpu_time_ms} ms exceeded`];
    } else if (memory || (code !== 0 && /heap out of memory|Fatal process out of memory|Allocation failed|FATAL ERROR: .*(memory|Zone)/i.test(tail))) {
      [status, error] = ['memory_limit', `memory limit of ${lim.memory_bytes} bytes exceeded`];
    } else if (code === SETUP_FAILED_EXIT && !iso) {
      [status, error] = ['internal_error', `job setup failed: ${tail.trim()}`];
    } else if (code === 0 && badResult === null) status = 'success';
    else {
      status = 'program_error';
      error = badResult || (sig !== null ? `killed by signal ${sig}` : `exit status ${code}`);
    }
    const art = job.workdir ? this.collectArtifacts(job) : { out: [], truncated: false };
    const frame = {
      type: 'result', id: job.id, status, exit_code: code, signal: sig,
      stdout: stdout.toString('base64'), stderr: stderr.toString('base64'),
      stdout_truncated: job.truncated.stdout, stderr_truncated: job.truncated.stderr,
      result_json: status === 'success' ? resultJson : null, duration_ms: Math.round(durationMs * 1000) / 1000,
      peak_memory_bytes: peak, artifacts: art.out, artifacts_truncated: art.truncated, error,
      isolation: Object.assign({ warm: job.warm }, iso || {}),
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
      fs.rmSync(this.jobBase, { recursive: true, force: true });
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

function uidHasProcesses(uid) {
  for (const e of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(e)) continue;
    try {
      const status = fs.readFileSync(`/proc/${e}/status`, 'utf8');
      if (/^State:\s+[ZX]/m.test(status)) continue;  // a zombie holds nothing and cannot be killed
      const m = /^Uid:\s+(.*)$/m.exec(status);
      if (m && m[1].split(/\s+/).includes(String(uid))) return true;
    } catch (err) { /* gone */ }
  }
  return false;
}

// Milliseconds between consecutive timestamps of the job's path, each named by the later one.
function phasesOf(stamps) {
  const st = Object.assign({}, stamps, { sent: Number(process.hrtime.bigint()) / 1e6 });
  const order = Object.entries(st).filter(([, t]) => t >= st.recv).sort((a, b) => a[1] - b[1]);
  const out = {};
  for (let i = 1; i < order.length; i++) out[order[i][0]] = Math.round((order[i][1] - order[i - 1][1]) * 1000) / 1000;
  out.total = Math.round((st.sent - st.recv) * 1000) / 1000;
  return out;
}

function emptyResult(id) {
  return {
    type: 'result', id, status: 'internal_error', exit_code: null, signal: null, stdout: '', stderr: '',
    stdout_truncated: false, stderr_truncated: false, result_json: null, duration_ms: 0, peak_memory_bytes: 0,
    artifacts: [], artifacts_truncated: false, error: '',
  };
}

function main() {
  let opts;
  try {
    opts = parseOptions(process.argv.slice(1));
  } catch (e) {
    diag(e.message);
    process.exit(2);
  }
  process.on('SIGPIPE', () => {});
  new Runner(opts).start();
}

main();
