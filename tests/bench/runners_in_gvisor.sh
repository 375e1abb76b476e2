#!/usr/bin/env bash
# Execute runners inside a real gVisor sandbox: per-job latency of the warm runners against a cold
# `runsc exec python3 -c` / `runsc exec node -e` of the same snippet, and runner throughput at concurrency 1/4/8
# with the sandbox's CPU time per execution (cgroup v1 cpuacct/<sandbox id>, where runsc puts the sandbox; the
# runners' idle refill after each point is included).
#
# It builds a bundle whose rootfs bind-mounts the host's /usr and /etc read-only (python3 and node come from
# the host), starts a sandbox (`runsc --platform=ptrace --network=none`) whose pid 1 is a small reaping init,
# starts each runner with `runsc exec` exactly as the shim does (source text as the -c / -e argument, frames
# on stdin/stdout) and drives it from a Python driver on the host. Prints numbers; never asserts timings.
#
#   tests/bench/runners_in_gvisor.sh            (as root; needs runsc, python3, node)
# Then the cost of one fork in the patterns a fork-server can use (see FORK_PROBE).
# Env: JOBS (sequential jobs per runner, default 200), COLD (cold runs per language, default 15),
#      LANGS (default python,javascript,fork), FORKS (forks per probe, default 100), FORK_REPS (default 3),
#      TPUT_JOBS (jobs per throughput point, default 160), BUILD (default build/: the bundled runners and the
#      helpers mounted at /.gvshim come from it),
#      PY_RUNNER_ARGS / JS_RUNNER_ARGS (override the runner options), PLATFORM (default: runsc's), RUNSC_BIN.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
PY_RUNNER=$BUILD/shim/execute/python_runner.py
JS_RUNNER=$BUILD/shim/execute/node_runner.js
HELPERS=$BUILD/shim/main/gvshim-helpers
for f in "$PY_RUNNER" "$JS_RUNNER" "$HELPERS/gvshim-launch"; do
  [[ -e $f ]] || { echo "runners_in_gvisor: $f not built (scripts/build.sh --main)" >&2; exit 1; }
done
PLATFORM=${PLATFORM:-}  # empty: runsc's default (systrap in 0.0~20240729)
RUNSC_BIN=${RUNSC_BIN:-runsc}
PY=/usr/bin/python3
NODE=$(command -v node || true)

if [[ $(id -u) != 0 ]] || ! command -v runsc >/dev/null || [[ -z $NODE ]]; then
  echo "runners_in_gvisor: needs root, runsc and node; skipped" >&2
  exit 0
fi

DIR=$(mktemp -d /tmp/gvrb.XXXX)
ID=gvrb-$$
RUNSC=("$RUNSC_BIN" --root "$DIR/state" ${PLATFORM:+--platform="$PLATFORM"} --network=none)
cleanup() {
  "${RUNSC[@]}" delete --force "$ID" >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM
if [[ -n ${GVRB_REUSE_ROOT:-} ]]; then  # debugging: drive an already running sandbox, leave it alone
  ID=$GVRB_REUSE_ID
  RUNSC=("$RUNSC_BIN" --root "$GVRB_REUSE_ROOT" ${PLATFORM:+--platform="$PLATFORM"} --network=none)
  trap 'rm -rf "$DIR"' EXIT INT TERM
fi

mkdir -p "$DIR/state" "$DIR/bundle/rootfs"/{usr,etc,tmp,proc,dev,sys,root}
for l in bin lib lib64 sbin; do
  [[ -e /$l ]] && ln -s "usr/$l" "$DIR/bundle/rootfs/$l"
done

# A reaping init: orphans of jobs must not pile up as zombies under pid 1.
INIT='import os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
while True:
    signal.sigwaitinfo([signal.SIGCHLD])
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
'
INIT="$INIT" DIR="$DIR" HELPERS="$HELPERS" "$PY" - <<'EOF'
import json, os
caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETUID", "CAP_SETGID", "CAP_SYS_ADMIN",
        "CAP_SETPCAP", "CAP_SYS_RESOURCE"]
spec = {
    "ociVersion": "1.0.2",
    "process": {"user": {"uid": 0, "gid": 0}, "args": ["/usr/bin/python3", "-I", "-c", os.environ["INIT"]],
                "env": ["PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"], "cwd": "/",
                "capabilities": {k: caps for k in ("bounding", "effective", "permitted", "inheritable")},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 65536, "soft": 65536}]},
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "gvrb",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro", "nosuid", "noexec"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
        {"destination": "/var/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
        {"destination": "/workspace", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755"]},
        {"destination": "/.gvshim", "type": "bind", "source": os.environ["HELPERS"], "options": ["rbind", "ro"]},
        {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]},
        {"destination": "/etc", "type": "bind", "source": "/etc", "options": ["rbind", "ro"]},
    ],
    "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")]},
}
with open(os.path.join(os.environ["DIR"], "bundle", "config.json"), "w") as f:
    json.dump(spec, f)
EOF

# runsc's sandbox start fails now and then on a loaded machine ("waiting for sandbox to start: EOF"): retry.
for attempt in 1 2 3 4 5; do
  [[ -n ${GVRB_REUSE_ROOT:-} ]] && break
  if "${RUNSC[@]}" run --detach --bundle "$DIR/bundle" "$ID" >/dev/null 2>"$DIR/run.err"; then
    break
  fi
  "${RUNSC[@]}" delete --force "$ID" >/dev/null 2>&1 || true
  if [[ $attempt == 5 ]]; then
    echo "runsc run failed: $(cat "$DIR/run.err")" >&2
    exit 1
  fi
  sleep 1
done

cat >"$DIR/driver.py" <<'EOF'
import base64, json, os, shlex, statistics, struct, subprocess, sys, threading, time

runsc = shlex.split(os.environ["RUNSC"])
cid = os.environ["ID"]
PY_RUNNER = os.environ["PY_RUNNER"]
JS_RUNNER = os.environ["JS_RUNNER"]
COMMON = ("--uid 100000 --gid 100000 --helpers /.gvshim --workspace /workspace --max-jobs 8 --phase-times "
          "--default-wall-timeout-ms 10000 --default-cpu-time-ms 10000 --default-memory-bytes 536870912 "
          "--default-output-bytes 1048576 --default-max-processes 64 --default-file-size-bytes 16777216 ")
jobs_n = int(os.environ.get("JOBS", "200"))
cold_n = int(os.environ.get("COLD", "15"))
tput_n = int(os.environ.get("TPUT_JOBS", "160"))
py_args = shlex.split(os.environ.get("PY_RUNNER_ARGS") or COMMON + "--prefork 8")
js_args = shlex.split(os.environ.get("JS_RUNNER_ARGS") or COMMON.replace("100000", "200000") + "--pool-size 8")

PY_CODE = "def main(a, b):\n    return {'sum': a + b}\n"
JS_CODE = "function main(args) {\n  return { sum: args.a + args.b };\n}\n"
PY_COLD = PY_CODE + "import json\nprint(json.dumps(main(1, 2)))\n"
JS_COLD = JS_CODE + "console.log(JSON.stringify(main({ a: 1, b: 2 })));\n"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


class Runner:
    def __init__(self, argv):
        self.p = subprocess.Popen(runsc + ["exec", cid] + argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.lock = threading.Condition()
        self.results = {}
        self.stderr = []
        threading.Thread(target=self._err, daemon=True).start()
        self.ready = self._frame()
        if self.ready is None or self.ready.get("type") != "ready":
            raise SystemExit("runner did not start: %r %s" % (self.ready, b"".join(self.stderr[-20:])))
        threading.Thread(target=self._read, daemon=True).start()
        self.n = 0

    def _err(self):
        for line in self.p.stderr:
            self.stderr.append(line)

    def _frame(self):
        head = self.p.stdout.read(4)
        if len(head) < 4:
            return None
        return json.loads(self.p.stdout.read(struct.unpack(">I", head)[0]))

    def _read(self):
        while True:
            f = self._frame()
            if f is None:
                with self.lock:
                    self.results[None] = None
                    self.lock.notify_all()
                return
            if f.get("type") == "result":
                f["t_recv"] = time.monotonic()
                with self.lock:
                    self.results[f["id"]] = f
                    self.lock.notify_all()

    def submit(self, code, args):
        self.n += 1
        jid = "j%d" % self.n
        body = json.dumps({"type": "exec", "id": jid, "code": code, "args_json": json.dumps(args)}).encode()
        self.p.stdin.write(struct.pack(">I", len(body)) + body)
        self.p.stdin.flush()
        return jid

    def wait(self, jid):
        with self.lock:
            while jid not in self.results:
                if None in self.results:
                    raise SystemExit("runner died: %s" % b"".join(self.stderr[-20:]).decode(errors="replace"))
                self.lock.wait(60)
            return self.results.pop(jid)

    def close(self):
        self.p.stdin.close()
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def check(res):
    if res["status"] != "success":
        raise SystemExit("job failed: %s %s %s" % (res["status"], res.get("error"),
                                                   base64.b64decode(res.get("stderr") or "")[-500:]))


def sequential(r, code, n):
    lat, phases = [], {}
    for i in range(n):
        t0 = time.monotonic()
        res = r.wait(r.submit(code, {"a": i, "b": 2}))
        lat.append((res["t_recv"] - t0) * 1000)
        check(res)
        for k, v in (res.get("phases") or {}).items():
            phases.setdefault(k, []).append(v)
    return lat, phases


CG = os.environ.get("CG", "")


def sandbox_cpu_ms():
    """CPU time of the whole sandbox (sentry, gofer, ptrace stubs): runsc puts it in cpuacct/<id> (cgroup v1)."""
    try:
        with open(os.path.join(CG, "cpuacct.usage")) as f:
            return int(f.read()) / 1e6
    except (OSError, ValueError):
        return None


def throughput(r, code, conc, n):
    sem = threading.Semaphore(conc)
    done = []
    lock = threading.Lock()

    def one(i):
        try:
            res = r.wait(r.submit(code, {"a": i, "b": 1}))
            check(res)
            with lock:
                done.append(res)
        finally:
            sem.release()

    submit_lock = threading.Lock()
    threads = []
    c0 = sandbox_cpu_ms()
    t0 = time.monotonic()
    for i in range(n):
        sem.acquire()
        # submits are serialised (one writer on the runner's stdin); waits are concurrent
        with submit_lock:
            t = threading.Thread(target=one, args=(i,))
            t.start()
            threads.append(t)
    for t in threads:
        t.join()
    el = time.monotonic() - t0
    if len(done) != n:
        raise SystemExit("throughput run lost jobs: %d of %d" % (len(done), n))
    time.sleep(1)  # replacement workers / children started for these jobs are part of their cost
    c1 = sandbox_cpu_ms()
    return n / el, (c1 - c0) / n if c0 is not None and c1 is not None else None


def cold(argv):
    lat = []
    for _ in range(cold_n):
        t0 = time.monotonic()
        out = subprocess.run(runsc + ["exec", cid] + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lat.append((time.monotonic() - t0) * 1000)
        if out.returncode != 0:
            raise SystemExit("cold run failed: %r" % out.stderr[-500:])
    return lat


def report_phases(phases):
    order = sorted(phases, key=lambda k: statistics.median(phases[k]))
    for k in order:
        print("      phase %-22s p50 %7.2f ms  p99 %7.2f ms" % (k, statistics.median(phases[k]), pct(phases[k], 99)))


def bench(lang, argv, code, cold_argv):
    print("== %s" % lang)
    r = Runner(argv)
    print("   runner isolation: %s" % json.dumps(r.ready.get("isolation")))
    # a wrong job must not be measured: warm up and check once
    for i in range(10):
        check(r.wait(r.submit(code, {"a": i, "b": 2})))
    lat, phases = sequential(r, code, jobs_n)
    p50, p99 = statistics.median(lat), pct(lat, 99)
    print("   warm runner, %d sequential jobs: p50 %.1f ms  p99 %.1f ms  (min %.1f)" % (jobs_n, p50, p99, min(lat)))
    report_phases(phases)
    c = cold(cold_argv)
    cp50 = statistics.median(c)
    print("   cold `runsc exec %s`, %d runs: p50 %.1f ms  p99 %.1f ms" % (" ".join(cold_argv[:2]), cold_n, cp50,
                                                                       pct(c, 99)))
    print("   speed-up (cold p50 / warm p50): %.1fx" % (cp50 / p50))
    for conc in (1, 4, 8):
        rate, cpu = throughput(r, code, conc, tput_n)
        print("   throughput at concurrency %d: %.1f executions/s%s" % (
            conc, rate, "" if cpu is None else ", sandbox CPU %.1f ms per execution" % cpu))
    r.close()
    return p50, cp50


# Why a fork-server costs what it costs in gVisor: a forked child shares its parent's memory copy-on-write, and
# the sentry breaks that sharing in chunks of up to 2 MiB. So what the parent touches between forks while
# children are alive is copied again after every fork. The probe loads the Python runner's modules (its
# source arrives on stdin) and forks N times in one of these patterns; the sandbox CPU of N forks minus that
# of 0 forks gives the cost of one.
FORK_PROBE = r"""
import gc, json, os, signal, socket, sys
ns = {"__name__": "gvshim_bundle"}
exec(sys.stdin.read().replace("\nimport gvshim_main\n", "\n"), ns)  # the runner's modules, without running it
import gvshim_runner
gvshim_runner.preload([])
gc.collect()
gc.freeze()
n, live, work, batch = (int(x) for x in sys.argv[1:5])
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
r, w = os.pipe()
alive = []
done = 0
while done < n:
    pids = []
    for _ in range(batch):
        pid = os.fork()
        if pid == 0:
            if live:
                os.read(r, 1)  # nobody writes: waits until killed
            os._exit(0)
        pids.append(pid)
    done += batch
    if not live:
        for p in pids:
            os.waitpid(p, 0)
        pids = []
    for p in pids if work else ():  # what a zygote does per worker: a JSON message and its answer
        b.send(json.dumps({"op": "spawned", "pid": p, "fds": [1, 2, 3, 4]}).encode())
        json.loads(a.recv(65536))
    alive.extend(pids)
    while len(alive) > live:
        p = alive.pop(0)
        os.kill(p, signal.SIGKILL)
        os.waitpid(p, 0)
for p in alive:
    os.kill(p, signal.SIGKILL)
    os.waitpid(p, 0)
"""

FORK_PATTERNS = [
    ("child exits at once, parent waits for it", 0, 0, 1),
    ("8 children alive, parent does nothing else", 8, 0, 1),
    ("8 children alive, parent answers each fork", 8, 1, 1),
    ("8 children alive, 4 forks back to back, then the answers", 8, 1, 4),
]


def fork_cost():
    n = int(os.environ.get("FORKS", "100"))
    reps = int(os.environ.get("FORK_REPS", "3"))
    with open(PY_RUNNER, "rb") as f:
        src = f.read()

    def cpu_of(args):
        c0 = sandbox_cpu_ms()
        out = subprocess.run(runsc + ["exec", cid, "/usr/bin/python3", "-I", "-c", FORK_PROBE] + args,
                             input=src, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if out.returncode != 0:
            raise SystemExit("fork probe failed: %r" % out.stderr[-500:])
        return sandbox_cpu_ms() - c0

    print("== fork cost inside the sandbox (Python with the runner's modules loaded; %d forks, median of %d)"
          % (n, reps))
    if sandbox_cpu_ms() is None:
        print("   no cpuacct cgroup for the sandbox: skipped")
        return
    base = None
    for name, live, work, batch in FORK_PATTERNS:
        per = []
        for _ in range(reps):
            args = [str(live), str(work), str(batch)]
            per.append((cpu_of([str(n)] + args) - cpu_of(["0"] + args)) / n)
        ms = statistics.median(per)
        base = base or ms
        print("   %-62s %6.1f ms sandbox CPU per fork  (%.2fx)" % (name, ms, ms / base))


which = os.environ.get("LANGS", "python,javascript,fork").split(",")
if "python" in which:
    with open(PY_RUNNER) as f:
        bench("python", ["/usr/bin/python3", "-I", "-c", f.read()] + py_args, PY_CODE,
              ["/usr/bin/python3", "-c", PY_COLD])
if "javascript" in which:
    with open(JS_RUNNER) as f:
        bench("javascript", [os.environ["NODE"], "-e", f.read(), "--"] + js_args, JS_CODE,
              [os.environ["NODE"], "-e", JS_COLD])

if "fork" in which:
    fork_cost()

# What is left in the sandbox after the runners are gone: only the init (and this probe) should remain.
probe = ("import os\nfor p in sorted(os.listdir('/proc')):\n    if p.isdigit() and int(p) != os.getpid():\n"
         "        s = open('/proc/%s/stat' % p).read()\n        print(p, s[s.rfind(')') + 2])\n")
out = subprocess.run(runsc + ["exec", cid, "/usr/bin/python3", "-c", probe], stdout=subprocess.PIPE).stdout.decode()
procs = [l.split() for l in out.splitlines() if l.strip()]
print("== sandbox after the runs: %d processes (%d zombies) besides the probe" %
      (len(procs), sum(1 for p in procs if p[1] == "Z")))
EOF

echo "gVisor runner benchmark: runsc $("$RUNSC_BIN" --version | head -1 | awk '{print $3}'), platform ${PLATFORM:-default}," \
  "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
CG=/sys/fs/cgroup/cpuacct/$ID RUNSC="${RUNSC[*]}" ID=$ID PY_RUNNER=$PY_RUNNER JS_RUNNER=$JS_RUNNER NODE=$NODE "$PY" "$DIR/driver.py"
