// How a Node child is isolated, and the probe that checks the sandbox can do it.
//
// Node cannot fork a warm interpreter nor make the system calls isolation needs, so each child is started
// through gvshim's static launcher (/.gvshim/gvshim-launch, see ../launch/launch.cc): new pid (the child is
// its pid 1: everything it starts dies with it), IPC and (unless the job may use the network) network
// namespaces, a mount namespace with a fresh /proc and private size-limited tmpfs on /tmp, /var/tmp, /dev/shm
// and the working directory, rlimits, its own uid, no_new_privs, umask 077. Nothing comes from the image but
// node itself.
//
// "Weak" mode (mounts are not private to a namespace, runsc 0.0~20221219): no mounts; the child works in a
// directory of its own under --weak-dir and can see the execute container's processes. `ready` says so.
'use strict';

const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const REQUIRED = ['launcher', 'pid_ns', 'mount_ns', 'proc', 'tmpfs', 'net_ns', 'ipc_ns', 'setuid'];

function launcherPath(opts) {
  return path.join(opts.helpers, 'gvshim-launch');
}

// The launcher's argv for one child. `dir` is the weak-mode working directory (null when isolated).
function launchArgv(opts, iso, { uid, limits, allowNetwork, dir, childSource, isolated, check }) {
  // --parent: the launcher dies with this runner (and its child, pid 1 of the job's namespace, with it).
  const a = [launcherPath(opts), 'job', '--parent', String(process.pid), '--uid', String(uid), '--gid', String(opts.gid)];
  if (iso.pid_ns) a.push('--pid-ns');
  if (iso.ipc_ns) a.push('--ipc-ns');
  if (iso.net_ns && !allowNetwork) a.push('--net-ns');
  let workdir = dir;
  if (isolated) {
    workdir = opts.workspace;
    a.push('--mount-ns', '--proc', '--tmpfs-bytes', String(opts.tmpfsBytes));
    for (const p of iso.tmpfs_paths) a.push('--tmpfs', `${p}:1777`);
    a.push('--tmpfs', `${workdir}:700`, '--own-workdir');
  }
  a.push('--workdir', workdir);
  const cpu = Math.max(1, Math.ceil(limits.cpu_time_ms / 1000));
  a.push('--rlimit', 'CORE=0', '--rlimit', `CPU=${cpu}`, '--rlimit', `FSIZE=${limits.file_size_bytes}`,
    '--rlimit', `NPROC=${limits.max_processes}`, '--rlimit', `AS=${limits.memory_bytes + opts.asSlackBytes}`);
  for (const e of [`PATH=/usr/local/bin:/usr/bin:/bin`, `HOME=${workdir}`,
    `TMPDIR=${isolated ? '/tmp' : workdir}`, 'LANG=C.UTF-8']) {
    a.push('--env', e);
  }
  const heapMb = Math.max(16, Math.floor(limits.memory_bytes / (1024 * 1024)));
  a.push('--', opts.node, `--max-old-space-size=${heapMb}`, '-e', childSource);
  if (check) a.push('--', '--self-check', JSON.stringify({ uid, tmpfs: iso.tmpfs_paths }));
  return a;
}

// Phase 1, before any child: which namespaces work here and whether a mount stays private to its namespace,
// from gvshim-launch's `probe`. Phase 2 is the first child's own check (child.js, selfCheck), which the runner
// waits for before it says `ready` (finish() then completes the report).
function probe(opts) {
  const iso = { root: process.getuid() === 0 };
  for (const k of REQUIRED) iso[k] = false;
  iso.setuid = iso.root;  // checked for real by the first child
  const notes = [];
  const launcher = launcherPath(opts);
  try {
    fs.accessSync(launcher, fs.constants.X_OK);
    iso.launcher = true;
  } catch (e) {
    notes.push(`no launcher at ${launcher}: ${e.message}`);
  }
  iso.tmpfs_paths = opts.tmpfsPaths.filter((p) => {
    try {
      return fs.statSync(p).isDirectory();
    } catch (e) {
      return false;
    }
  });
  if (!fs.existsSync(opts.workspace)) notes.push(`no working directory mount point ${opts.workspace}`);
  if (iso.launcher && iso.root) {
    const scratch = fs.mkdtempSync(path.join(opts.weakDir, 'gvshim-js-probe-'));
    const r = spawnSync(launcher, ['probe', scratch], { encoding: 'utf8', env: {} });
    fs.rmSync(scratch, { recursive: true, force: true });
    try {
      const found = JSON.parse(r.stdout);
      for (const k of ['pid_ns', 'net_ns', 'ipc_ns', 'mount_ns']) iso[k] = found[k] === true;
    } catch (e) {
      notes.push(`launcher probe: ${(r.stderr || r.stdout || String(r.error)).trim()}`);
    }
  }
  if (notes.length) iso.notes = notes;
  return iso;
}

// Whether the first child should be started fully isolated (and then checks what it sees).
function canIsolate(iso) {
  return iso.root && iso.launcher && iso.pid_ns && iso.mount_ns;
}

function finish(iso) {
  iso.missing = REQUIRED.filter((k) => !iso[k]);
  iso.complete = iso.missing.length === 0;
  iso.mode = iso.complete ? 'isolated' : 'weak';
  return iso;
}

module.exports = { probe, canIsolate, finish, launchArgv, REQUIRED };
