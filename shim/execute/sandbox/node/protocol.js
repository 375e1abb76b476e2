// The frame protocol of the Execute runners (../PROTOCOL.md) and the Node runner's command line. No limit has
// a default here: the Execute server passes every default (--default-<limit>), so limits are defined in one
// place (the [execute] config).
'use strict';

const PROTOCOL_VERSION = 2;
const MAX_FRAME = 64 << 20;
const RESULT_CAP = 16 << 20;
const SETUP_FAILED_EXIT = 125;
const LIMIT_NAMES = ['wall_timeout_ms', 'cpu_time_ms', 'memory_bytes', 'output_bytes', 'max_processes',
  'file_size_bytes'];

function diag(msg) {
  process.stderr.write(`gvshim-node-runner: ${msg}\n`);
}

function parseOptions(argv) {
  const o = {
    uid: 0, gid: 0, uidCount: 0, maxJobs: 4, poolSize: 2, maxArtifacts: 16, maxArtifactBytes: 4 << 20,
    asSlackBytes: 1024 * 1024 * 1024, defaults: {}, node: process.execPath, helpers: '/.gvshim',
    workspace: '/workspace', tmpfsBytes: 64 << 20, tmpfsPaths: ['/tmp', '/var/tmp', '/dev/shm'], weakDir: '/tmp',
    allowWeak: false, phaseTimes: false,
  };
  const numbers = {
    '--uid': 'uid', '--gid': 'gid', '--uid-count': 'uidCount', '--max-jobs': 'maxJobs', '--pool-size': 'poolSize',
    '--max-artifacts': 'maxArtifacts', '--max-artifact-bytes': 'maxArtifactBytes',
    '--as-slack-bytes': 'asSlackBytes', '--tmpfs-bytes': 'tmpfsBytes',
  };
  const strings = { '--node': 'node', '--helpers': 'helpers', '--workspace': 'workspace', '--weak-dir': 'weakDir' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`option ${a} needs a value`);
      return argv[++i];
    };
    if (a === '--') continue;
    if (a in numbers) {
      const v = Number(next());
      if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${a} needs a non-negative integer`);
      o[numbers[a]] = v;
    } else if (a in strings) o[strings[a]] = next();
    else if (a === '--tmpfs') o.tmpfsPaths = next().split(',').filter((p) => p);
    else if (a === '--allow-weak-isolation') o.allowWeak = true;
    else if (a === '--phase-times') o.phaseTimes = true;
    else if (a.startsWith('--default-') && LIMIT_NAMES.includes(a.slice(10).replace(/-/g, '_'))) {
      o.defaults[a.slice(10).replace(/-/g, '_')] = Number(next());
    } else throw new Error(`unknown option ${a}`);
  }
  const missing = LIMIT_NAMES.filter((n) => !(n in o.defaults));
  if (missing.length) {
    throw new Error(`the default limits are required: ${missing.map((n) => `--default-${n.replace(/_/g, '-')}`).join(', ')}`);
  }
  if (o.uid <= 0 || o.gid <= 0) throw new Error('--uid and --gid (not 0) are required');
  o.helpers = require('path').resolve(o.helpers);  // children start with cwd "/"
  o.maxJobs = Math.max(1, o.maxJobs);
  // One uid per child that runs a job or waits in the pool, plus children being torn down.
  o.uidCount = Math.max(o.uidCount, o.maxJobs + o.poolSize + 2);
  return o;
}

// Splits complete frames off `state.buf` (a Buffer); calls onMessage(msg) / onError(text). Returns false when
// the stream cannot be resynchronised.
function takeFrames(state, chunk, onMessage, onError) {
  state.buf = state.buf.length ? Buffer.concat([state.buf, chunk]) : chunk;
  while (state.buf.length >= 4) {
    const n = state.buf.readUInt32BE(0);
    if (n > MAX_FRAME) {
      onError(`frame of ${n} bytes exceeds the ${MAX_FRAME} byte limit; stream cannot be resynchronised`);
      return false;
    }
    if (state.buf.length < 4 + n) break;
    const body = state.buf.subarray(4, 4 + n);
    state.buf = state.buf.subarray(4 + n);
    let msg;
    try {
      msg = JSON.parse(body.toString('utf8'));
      if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) throw new Error('frame is not a JSON object');
    } catch (e) {
      onError(`malformed frame: ${e.message}`);
      continue;
    }
    onMessage(msg);
  }
  return true;
}

// A lone UTF-16 surrogate (a snippet's records can carry one, in a value or a key) would be written as a \u
// escape that the server's JSON parser rejects, killing this runner: it becomes U+FFFD.
const SURROGATE = /[\ud800-\udfff]/;
const wellFormed = (s) => Buffer.from(s, 'utf8').toString('utf8');
function wellFormedJson(key, v) {
  if (typeof v === 'string') return SURROGATE.test(v) ? wellFormed(v) : v;
  if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).some((k) => SURROGATE.test(k))) {
    const o = {};
    for (const [k, x] of Object.entries(v)) o[wellFormed(k)] = x;
    return o;
  }
  return v;
}

function encodeFrame(obj) {
  const body = Buffer.from(JSON.stringify(obj, wellFormedJson));
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}

// The exec frame's fields, checked; throws with the reason.
function parseJob(msg, defaults) {
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
  const limits = Object.assign({}, defaults);
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

function emptyResult(id, status, error) {
  return {
    type: 'result', id, status, exit_code: null, signal: null, stdout: '', stderr: '', stdout_truncated: false,
    stderr_truncated: false, result_json: null, duration_ms: 0, peak_memory_bytes: 0, artifacts: [],
    artifacts_truncated: false, error,
  };
}

module.exports = {
  PROTOCOL_VERSION, MAX_FRAME, RESULT_CAP, SETUP_FAILED_EXIT, LIMIT_NAMES, diag, parseOptions, takeFrames,
  encodeFrame, parseJob, emptyResult,
};
