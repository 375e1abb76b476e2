// One pre-started Node child (run as `node -e <this text>` by gvshim-launch, already isolated and unprivileged,
// its working directory the job's). It waits for exactly one job on fd 3, runs it, and reports on fd 4 with
// newline-delimited JSON records: setup, result / bad_result, memory, usage, artifacts, exit.
// A snippet can make these records lie about itself, never about another job.
'use strict';
(function () {
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
  function artifacts(dir, maxFiles, maxBytes) {
    const files = [];
    let total = 0;
    let truncated = false;
    let names = [];
    try {
      if (!fs.lstatSync(dir).isDirectory()) return { files, truncated };
      names = fs.readdirSync(dir).sort();
    } catch (e) {
      return { files, truncated };
    }
    for (const name of names) {
      let fd;
      try {
        fd = fs.openSync(path.join(dir, name), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
      } catch (e) {
        continue;
      }
      try {
        const st = fs.fstatSync(fd);
        if (!st.isFile()) continue;
        if (files.length >= maxFiles || total + st.size > maxBytes) {
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
        files.push({ name, content: buf.subarray(0, off).toString('base64'), size: off });
      } catch (e) {
        truncated = true;
      } finally {
        fs.closeSync(fd);
      }
    }
    return { files, truncated };
  }

  const now = () => Number(process.hrtime.bigint()) / 1e6;
  const workdir = process.cwd();
  // The runner's first child reports what it sees before any job (phase 2 of the runner's probe).
  if (process.argv[1] === '--self-check') {
    const want = JSON.parse(process.argv[2]);
    let pids = [];
    let tmpfs = false;
    try {
      pids = fs.readdirSync('/proc').filter((p) => /^[0-9]+$/.test(p));
      tmpfs = want.tmpfs.length > 0 && want.tmpfs.every((p) => fs.readdirSync(p).length === 0);
    } catch (e) { /* reported as false */ }
    record({
      kind: 'check', proc: process.pid === 1 && pids.length === 1 && pids[0] === '1', tmpfs,
      setuid: process.getuid() === want.uid && process.geteuid() === want.uid,
    });
  }
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
      process.exit(125);  // the runner closed fd 3 without a job: retired
    }
    run(job);
  });

  function run(job) {
    const stamps = job.phase_times ? { c_got_job: now() } : null;
    Object.assign(process.env, job.env);
    record({ kind: 'setup', isolation: Object.assign({ uid: process.getuid(), pid: process.pid }, job.isolation) });
    if (stamps) stamps.c_setup = now();
    const kill = process.kill.bind(process);  // taken before the snippet runs
    process.on('exit', (code) => {
      try {
        record({ kind: 'usage', maxrss: process.resourceUsage().maxRSS * 1024 });
      } catch (e) { /* best effort */ }
      // Everything else in this pid namespace is the job's leftovers: gone before the end is reported.
      try {
        kill(-1, 'SIGKILL');
      } catch (e) { /* nothing left */ }
      try {
        const a = artifacts(path.join(workdir, 'artifacts'), job.max_artifacts, job.max_artifact_bytes);
        if (a.files.length || a.truncated) record({ kind: 'artifacts', files: a.files, truncated: a.truncated });
      } catch (e) {
        record({ kind: 'artifacts', files: [], truncated: true });
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
    const filename = path.join(workdir, 'snippet.js');
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
    fn.call(mod.exports, mod.exports, Module.createRequire(filename), mod, filename, workdir)
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
        if (text.length > job.result_cap) {
          const msg = `main returned a result larger than ${job.result_cap} bytes`;
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
})();
