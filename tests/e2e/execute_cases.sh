# shellcheck shell=bash
# The Execute e2e cases, shared by test_execute.sh (a BusyBox image with python3 and node) and
# test_execute_minimal.sh (an image of the two interpreters and their libraries only: no shell, no util-linux,
# no libffi). Sourced after lib.sh with EXEC_VARIANT set; defines EXEC_CASES and the case functions.
#
# Probes: what a snippet sees is asked from snippets; what the pod sees, from a `ctr task exec` of python3 in
# the pod's container; what is left in the execute container, from `runsc exec` of python3 in it (its root pid
# namespace sees every snippet's). Each "nothing left" probe is first shown to see the live thing.

# shellcheck disable=SC2034 # used by the sourcing file
EXEC_CASES=(python_main_args js_main_args script_stdout statuses_and_survival artifacts_returned
  runtimes_report_isolation snippet_sees_only_itself pod_secrets_are_invisible files_do_not_survive
  concurrent_snippets_are_invisible pod_sees_no_snippet_files nothing_survives_a_snippet no_host_network
  bad_requests_keep_serving not_opted_in_gets_no_service incomplete_isolation_is_refused eager_pod_starts_warm
  execute_container_goes_with_the_pod server_is_a_child_of_the_shim dead_server_is_restarted
  server_killed_during_a_snippet
  server_ends_with_the_pod server_ends_with_a_killed_shim)

case $EXEC_VARIANT in
  python-node) IMAGE_FLAG=--with-python-node POD_INIT=(sh -c 'while :; do sleep 3600 & wait; done') ;;
  interpreters) IMAGE_FLAG=--interpreters-only POD_INIT=(/usr/bin/python3 -c 'import signal; signal.pause()') ;;
  *) echo "execute_cases.sh: unknown EXEC_VARIANT $EXEC_VARIANT" >&2; exit 2 ;;
esac
EXEC_IMAGE=localhost/gvshim-test:$EXEC_VARIANT
GVSHIM=$E2E_BIN_DIR/gvshim
POD=exe1
POD_SECRET=pod-secret-$RANDOM$RANDOM
WEAK=0

# set_execute_key KEY VALUE: adds a key to the [execute] table of the private containerd's gvshim.toml.
set_execute_key() { sed -i "s|^\[execute\]\$|[execute]\n$1 = $2|" "$GVS_SHIM_CONFIG"; }

# After e2e_setup. runsc 0.0~20221219 cannot keep a mount private to a namespace: snippets then run only with
# allow_weak_isolation (set here for the whole suite), and the cases that check private mounts do not apply.
exec_setup() {
  if "$GVS_RUNSC" --version 2>/dev/null | grep 20221219 >/dev/null; then WEAK=1; fi  # no -q: an early exit would SIGPIPE runsc under pipefail
  if [[ $WEAK -eq 1 ]]; then set_execute_key allow_weak_isolation true; fi
}

# ensure_pod: one long-running container of the image that opted into Execute, shared by the cases
# (containerd-down removes it at the end). It carries a secret in its environment and its command line.
ensure_pod() {
  [[ -f $E2E_WORK/pod-ready ]] && return 0
  command -v node >/dev/null || skip_case "needs the host's node for the $EXEC_VARIANT image"
  bash "$REPO_ROOT/scripts/build-image.sh" "$IMAGE_FLAG" --out "$REPO_ROOT/build/image" -a "$GVS_SOCK" \
    -n "$E2E_NS" >/dev/null || fail "$EXEC_VARIANT image build/import failed"
  # A pod left by a case whose set-up failed is removed first: every case then tries afresh (and fails on its own
  # reason) instead of failing on "already exists".
  if c container info "$POD" >/dev/null 2>&1; then cleanup_container "$POD"; fi
  crun -d --annotation dev.gvshim.execute=true --env "GVX_POD_SECRET=$POD_SECRET" "$EXEC_IMAGE" "$POD" \
    "${POD_INIT[@]}" "$POD_SECRET" >/dev/null
  wait_for 60 status_is "$POD" RUNNING
  # Bounds, not timings: on a loaded machine the old runsc (ptrace) takes long to start the Execute server.
  wait_for 120 ls "$GVS_EXECUTE_DIR"/*.json
  touch "$E2E_WORK/pod-ready"
}
# exec_teardown: after the cases, the shared pod goes the way a user removes it; whatever it leaves (its shim,
# its execute container, a mount) is then reported by the file's teardown as a leak.
exec_teardown() {
  [[ -f $E2E_WORK/pod-ready ]] || return 0
  local spid
  spid=$(shim_pid "$POD" 2>/dev/null || true)
  cleanup_container "$POD"
  local _
  for _ in $(seq 300); do [[ -z $spid ]] || pid_gone "$spid" && break; sleep 0.1; done
}
need_isolation() { [[ $WEAK -eq 0 ]] || skip_case "runsc 0.0~20221219 gives weak isolation only"; }

gx() { timeout --kill-after=5 120 "$GVSHIM" exec --dir "$GVS_EXECUTE_DIR" --namespace "$E2E_NS" --id "$POD" "$@"; }

# json_field JSON KEY: prints one top-level field of gvshim exec --json output.
json_field() { "$PY" -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print(json.dumps(v) if isinstance(v,(dict,list,bool)) or v is None else v)' "$1" "$2"; }

# Python that prints the pids of processes whose command line or environment contains argv[1] (0 if none),
# and whether /tmp has a file named argv[2].
FIND_PY='import os, sys
found = []
for p in os.listdir("/proc"):
    if not p.isdigit() or int(p) == os.getpid():
        continue
    for f in ("cmdline", "environ"):
        try:
            if sys.argv[1].encode() in open("/proc/%s/%s" % (p, f), "rb").read():
                found.append(p)
                break
        except OSError:
            pass
print(" ".join(found) or "0", *([os.path.exists("/tmp/" + sys.argv[2])] if len(sys.argv) > 2 else []))'

# in_pod MARKER [FILE]: FIND_PY run in the pod's own container.
in_pod() { c task exec --exec-id "probe$RANDOM" "$POD" /usr/bin/python3 -c "$FIND_PY" "$@"; }
# in_exec_container MARKER: FIND_PY run in the pod's execute container (its root pid namespace).
in_exec_container() {
  local rid
  rid=$("$GVSHIM" runsc-id --root "$(runsc_root)" "$POD/execute") || fail "runsc-id"
  timeout 60 "$GVS_RUNSC" --root "$(runsc_root)" exec "$rid" /usr/bin/python3 -c "$FIND_PY" "$@"
}
exec_sees() { [[ $(in_exec_container "$1" | cut -d' ' -f1) != 0 ]]; }
exec_lacks() { [[ $(in_exec_container "$1" | cut -d' ' -f1) == 0 ]]; }

python_main_args() {
  ensure_pod
  local out
  out=$(gx -c 'def main(a, b): return {"sum": a + b, "kind": type(a).__name__}' --arg a=2 --arg b=40)
  assert_eq '{"sum": 42, "kind": "int"}' "$out" "python main(a, b) result"
  out=$(gx -c 'def main(args): return sorted(args)' --args-json '["b","a"]')
  assert_eq '["a", "b"]' "$out" "python main(args) with a list"
}

js_main_args() {
  ensure_pod
  local out
  out=$(gx --lang javascript -c 'function main(args) { return {x: args.a * 2, s: args.s.toUpperCase()}; }' \
    --arg a=21 --arg s=hi)
  assert_eq '{"x":42,"s":"HI"}' "$(tr -d ' ' <<<"$out")" "js main(args) result"
  out=$(gx --lang javascript -c 'async function main(args) { await new Promise(r => setTimeout(r, 10)); return [args.n]; }' --arg n=7)
  assert_eq '[7]' "$(tr -d ' ' <<<"$out")" "async js main"
}

script_stdout() {
  ensure_pod
  local out
  out=$(gx -c 'print("hello from python"); import sys; print("err", file=sys.stderr)' 2>/dev/null)
  assert_eq "hello from python" "$out"
  out=$(gx --lang javascript -c 'console.log("hello from node")')
  assert_eq "hello from node" "$out"
}

statuses_and_survival() {
  ensure_pod
  local j rc
  run_rc j rc gx --json -c 'def main(:'
  assert_eq program_error "$(json_field "$j" status)" "syntax error"
  run_rc j rc gx --json -c 'raise ValueError("boom")'
  assert_eq program_error "$(json_field "$j" status)" "exception"
  assert_contains "$(json_field "$j" stderr)" "ValueError: boom"
  run_rc j rc gx --json -c 'import sys; sys.exit(3)'
  assert_eq 3 "$rc" "gvshim exec exits with the snippet's code"
  assert_eq 3 "$(json_field "$j" exit_code)"
  run_rc j rc gx --json --timeout 1500 -c 'while True: pass'
  assert_eq timeout "$(json_field "$j" status)" "infinite loop"
  assert_eq 124 "$rc"
  run_rc j rc gx --json --memory 134217728 -c 'x = bytearray(1 << 30); print(len(x))'
  assert_eq memory_limit "$(json_field "$j" status)" "memory bomb"
  run_rc j rc gx --json --output-bytes 65536 -c 'import sys
while True: sys.stdout.write("x" * 4096)'
  assert_eq output_limit "$(json_field "$j" status)" "output flood"
  assert_eq true "$(json_field "$j" stdout_truncated)"
  run_rc j rc gx --json --timeout 5000 -c 'import os
while True:
    try:
        os.fork()
    except OSError:
        pass'
  case $(json_field "$j" status) in
    program_error|timeout|memory_limit) ;;
    *) fail "fork bomb: unexpected status $(json_field "$j" status)" ;;
  esac
  run_rc j rc gx --json --lang javascript --memory 134217728 --timeout 20000 \
    -c 'let a = []; while (true) a.push(new Array(1e6).fill(1.5));'
  assert_eq memory_limit "$(json_field "$j" status)" "js memory bomb"
  run_rc j rc gx --json --lang javascript --timeout 1500 -c 'for (;;) {}'
  assert_eq timeout "$(json_field "$j" status)" "js infinite loop"
  # The pod and the service survived all of that.
  assert_eq RUNNING "$(task_status "$POD")"
  assert_eq "still here" "$(gx -c 'print("still here")')" "the next snippet runs"
  assert_eq "js still here" "$(gx --lang javascript -c 'console.log("js still here")')"
}

artifacts_returned() {
  ensure_pod
  local j rc
  run_rc j rc gx --json -c 'open("artifacts/out.txt", "w").write("py-artifact")'
  assert_contains "$(json_field "$j" artifacts)" '"name": "out.txt"' "python artifact"
  run_rc j rc gx --json --lang javascript -c 'require("fs").writeFileSync("artifacts/o.txt", "js-artifact")'
  assert_contains "$(json_field "$j" artifacts)" '"name": "o.txt"' "js artifact"
}

runtimes_report_isolation() {
  ensure_pod
  local out
  out=$(timeout 120 "$GVSHIM" exec --dir "$GVS_EXECUTE_DIR" --namespace "$E2E_NS" --id "$POD" --runtimes) ||
    fail "gvshim exec --runtimes: $out"
  e2e_log "$out"
  assert_contains "$out" '"language": "python"'
  assert_contains "$out" '"language": "javascript"'
  if [[ $WEAK -eq 1 ]]; then
    assert_contains "$out" '"isolation_mode": "weak"'
    assert_contains "$out" '"mount_ns"' "the missing mount namespace is named"
  else
    assert_eq 2 "$(grep -c '"isolation_mode": "isolated"' <<<"$out")" "both runtimes fully isolated"
    assert_not_contains "$out" '"weak"'
  fi
}

snippet_sees_only_itself() {
  ensure_pod
  need_isolation
  local out
  out=$(gx -c 'import os
def main():
    pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    return {"pids": pids, "uid": os.getuid() >= 100000, "groups": os.getgroups(), "umask": oct(os.umask(0o77)),
            "tmp": {d: os.listdir(d) for d in ("/tmp", "/var/tmp", "/dev/shm")}, "cwd": os.getcwd(),
            "files": sorted(os.listdir("."))}')
  assert_eq '{"pids": [1], "uid": true, "groups": [], "umask": "0o77", "tmp": {"/tmp": [], "/var/tmp": [], "/dev/shm": []}, "cwd": "/workspace", "files": ["artifacts"]}' "$out" "what a python snippet sees"
  out=$(gx --lang javascript -c 'const fs = require("fs");
function main() {
  return { pids: fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p)), uid: process.getuid() >= 100000,
           umask: process.umask().toString(8), tmp: ["/tmp", "/var/tmp", "/dev/shm"].map((d) => fs.readdirSync(d).length),
           cwd: process.cwd() };
}')
  assert_eq '{"pids":["1"],"uid":true,"umask":"77","tmp":[0,0,0],"cwd":"/workspace"}' "$(tr -d ' ' <<<"$out")" \
    "what a js snippet sees"
}

pod_secrets_are_invisible() {
  ensure_pod
  need_isolation
  # The probe finds the secret in the pod's own process (it is in its environment and command line) ...
  [[ $(in_pod "$POD_SECRET" | cut -d' ' -f1) != 0 ]] || fail "the probe does not see the pod's own secret"
  # ... and a snippet finds it nowhere it can read.
  local out
  out=$(gx -c "import sys; sys.argv = ['', '$POD_SECRET']
$FIND_PY")
  assert_eq "0" "$out" "a python snippet found the pod's secret"
  out=$(gx --lang javascript -c "const fs = require('fs'); let found = [];
for (const p of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
  for (const f of ['cmdline', 'environ']) { try { if (fs.readFileSync('/proc/' + p + '/' + f).includes('$POD_SECRET')) found.push(p); } catch (e) {} }
}
console.log(found.length)")
  assert_eq 0 "$out" "a js snippet found the pod's secret"
}

files_do_not_survive() {
  ensure_pod
  need_isolation
  gx -c 'import os
for d in ("/tmp", "/var/tmp", "/dev/shm", "."):
    open(os.path.join(d, "left-behind"), "w").write("x")
print(sorted(os.listdir("/tmp")))' >/dev/null
  gx --lang javascript -c 'const fs = require("fs");
for (const d of ["/tmp", "/var/tmp", "/dev/shm", "."]) fs.writeFileSync(d + "/left-behind-js", "x");' >/dev/null
  local i out
  for i in 1 2 3; do  # whichever worker takes the next job
    out=$(gx -c 'import os
print([d for d in ("/tmp", "/var/tmp", "/dev/shm", ".") for f in ("left-behind", "left-behind-js") if os.path.exists(os.path.join(d, f))])')
    assert_eq "[]" "$out" "python snippet $i found files of earlier snippets"
    out=$(gx --lang javascript -c 'const fs = require("fs");
console.log(JSON.stringify(["/tmp", "/var/tmp", "/dev/shm", "."].filter((d) => fs.existsSync(d + "/left-behind") || fs.existsSync(d + "/left-behind-js"))))')
    assert_eq "[]" "$out" "js snippet $i found files of earlier snippets"
  done
  # Nor does the pod's container see them.
  assert_eq "0 False" "$(in_pod nothing-to-find left-behind)" "the pod's /tmp has a snippet's file"
}

# start_holder MARKER LANG: a long snippet (background gvshim exec) that writes /tmp/held-secret, keeps a child
# whose command line carries MARKER, and has MARKER in its environment; returns once the execute container's
# probe sees it.
start_holder() {
  local marker=$1 lang=$2
  if [[ $lang == python ]]; then
    gx --timeout 60000 --env "GVX_HELD=$marker" -c "import subprocess, sys, time
open('/tmp/held-secret', 'w').write('$marker')
subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', '$marker'])
time.sleep(120)" >/dev/null 2>&1 &
  else
    gx --lang javascript --timeout 60000 --env "GVX_HELD=$marker" -c "const cp = require('child_process');
require('fs').writeFileSync('/tmp/held-secret', '$marker');
cp.spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', '$marker'], { stdio: 'ignore' });
setInterval(() => {}, 1000);" >/dev/null 2>&1 &
  fi
  HOLDER_PID=$!
  defer kill "$HOLDER_PID"
  wait_for 60 exec_sees "$marker"
}

concurrent_snippets_are_invisible() {
  ensure_pod
  need_isolation
  local lang marker out
  for lang in python javascript; do
    marker=held-$lang-$RANDOM$RANDOM
    start_holder "$marker" "$lang"
    out=$(gx -c "import sys; sys.argv = ['', '$marker', 'held-secret']
$FIND_PY")
    assert_eq "0 False" "$out" "a python snippet saw the concurrent $lang snippet's processes or /tmp"
    out=$(gx --lang javascript -c "const fs = require('fs');
const pids = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p));
console.log(pids.join(','), fs.existsSync('/tmp/held-secret'))")
    assert_eq "1 false" "$out" "a js snippet saw the concurrent $lang snippet's processes or /tmp"
    kill "$HOLDER_PID" 2>/dev/null || true
  done
}

# The pod's container cannot reach a snippet's files, not even through /proc/PID/root. (Its processes are
# visible to a container that is the sandbox's root container, as a `ctr run` container is: gVisor nests every
# other container's pid namespace under the root container's. In a Kubernetes pod the root container is the
# pause container, and the pod's containers see no snippet process: tests/cri checks that.)
pod_sees_no_snippet_files() {
  ensure_pod
  need_isolation
  local marker=held-pod-$RANDOM$RANDOM out
  start_holder "$marker" python
  out=$(c task exec --exec-id "probe$RANDOM" "$POD" /usr/bin/python3 -c 'import glob, os
paths = ["/tmp/held-secret"] + glob.glob("/proc/[0-9]*/root/tmp/held-secret")
print([p for p in paths if os.path.exists(p)])')
  assert_eq "[]" "$out" "the pod's container reached a snippet's file"
}

nothing_survives_a_snippet() {
  ensure_pod
  local lang marker j rc
  for lang in python javascript; do
    marker=daemon-$lang-$RANDOM$RANDOM
    # A snippet that leaves a daemon in a session of its own and then runs into its wall timeout; while it
    # runs, the probe sees the daemon.
    if [[ $lang == python ]]; then
      gx --timeout 8000 -c "import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(300)', '$marker'])
    os._exit(0)
while True:
    time.sleep(1)" >/dev/null 2>&1 &
    else
      gx --lang javascript --timeout 8000 -c "require('child_process').spawn(process.execPath,
  ['-e', 'setInterval(() => {}, 1000)', '$marker'], { detached: true, stdio: 'ignore' }).unref();
setInterval(() => {}, 1000);" >/dev/null 2>&1 &
    fi
    local bg=$!
    wait_for 30 exec_sees "$marker"
    wait "$bg" || true
    wait_for 15 exec_lacks "$marker"
    # A snippet that returns right after starting one.
    marker=quick-$lang-$RANDOM$RANDOM
    if [[ $lang == python ]]; then
      run_rc j rc gx --json -c "import subprocess, sys
subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', '$marker'], start_new_session=True)
print('started')"
    else
      run_rc j rc gx --json --lang javascript -c "require('child_process').spawn(process.execPath,
  ['-e', 'setInterval(() => {}, 1000)', '$marker'], { detached: true, stdio: 'ignore' }).unref(); console.log('started')"
    fi
    assert_eq success "$(json_field "$j" status)" "$lang snippet that starts a daemon"
    wait_for 15 exec_lacks "$marker"
  done
}

no_host_network() {
  ensure_pod
  # A listener on the host's loopback; a snippet must not reach it.
  local port_file=$E2E_WORK/port
  "$PY" -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
s.settimeout(20)
try: s.accept()
except OSError: pass' "$port_file" &
  local lpid=$!
  defer kill "$lpid"
  wait_for 10 test -s "$port_file"
  local out
  out=$(gx -c "
import socket
try:
    socket.create_connection(('127.0.0.1', $(cat "$port_file")), timeout=3); print('connected')
except OSError as e:
    print('refused', type(e).__name__)")
  assert_contains "$out" "refused" "a snippet reached the host's 127.0.0.1"
}

bad_requests_keep_serving() {
  ensure_pod
  local out
  # Raw gRPC requests the CLI would refuse to build.
  out=$("$PY" "$E2E_DIR/tools/execute_probe.py" "$(record_field "$POD" socket)") ||
    fail "execute_probe failed: $out"
  e2e_log "$out"
  assert_contains "$out" "unknown-language: INVALID_ARGUMENT"
  assert_contains "$out" "oversized-code: INVALID_ARGUMENT"
  assert_contains "$out" "bad-arguments: INVALID_ARGUMENT"
  assert_contains "$out" "good-after: OK"
}

not_opted_in_gets_no_service() {
  ensure_pod
  local before after
  before=$(ls "$GVS_EXECUTE_DIR" | wc -l)
  defer cleanup_container plain1
  crun -d "$EXEC_IMAGE" plain1 "${POD_INIT[@]}" >/dev/null
  wait_for 30 status_is plain1 RUNNING
  after=$(ls "$GVS_EXECUTE_DIR" | wc -l)
  assert_eq "$before" "$after" "a container without dev.gvshim.execute=true got an Execute socket"
  runsc_lacks plain1/execute || fail "a container that did not opt in got an execute container"
  local rc=0
  timeout 30 "$GVSHIM" exec --dir "$GVS_EXECUTE_DIR" --id plain1 -c 'print(1)' 2>/dev/null || rc=$?
  assert_eq 125 "$rc" "gvshim exec against a pod without the service"
}

# A pod whose node config does not allow weak isolation, on a sandbox that cannot isolate (runsc 20221219), is
# refused with FAILED_PRECONDITION naming what is missing; on runsc 0.0~20240729 the same config just works.
incomplete_isolation_is_refused() {
  ensure_pod
  local strict=$E2E_WORK/strict.toml out rc
  grep -v '^allow_weak_isolation' "$GVS_SHIM_CONFIG" >"$strict"
  defer cleanup_container strict1
  crun -d --runtime-config-path "$strict" --annotation dev.gvshim.execute=true "$EXEC_IMAGE" strict1 \
    "${POD_INIT[@]}" >/dev/null
  wait_for 30 status_is strict1 RUNNING
  wait_for 30 has_server strict1
  run_rc out rc timeout 120 "$GVSHIM" exec --dir "$GVS_EXECUTE_DIR" --namespace "$E2E_NS" --id strict1 \
    -c 'print("ran")'
  if [[ $WEAK -eq 1 ]]; then
    assert_eq 125 "$rc" "a snippet ran without its isolation"
    assert_contains "$out" "FAILED_PRECONDITION"
    assert_contains "$out" "missing:"
    assert_contains "$out" "allow_weak_isolation"
  else
    assert_eq 0 "$rc" "a fully isolated pod: $out"
    assert_eq "ran" "$out"
  fi
}

# start = "eager": the container is reported started (ctr run -d returns) once its runners are ready, so the
# first request finds them warm. Health reports a runner it has not started as "not started".
eager_pod_starts_warm() {
  ensure_pod
  local eager=$E2E_WORK/eager.toml health
  sed 's|^\[execute\]$|[execute]\nstart = "eager"|' "$GVS_SHIM_CONFIG" >"$eager"
  defer cleanup_container eager1
  crun -d --runtime-config-path "$eager" --annotation dev.gvshim.execute=true "$EXEC_IMAGE" eager1 \
    "${POD_INIT[@]}" >/dev/null
  health=$("$GVSHIM" exec --dir "$GVS_EXECUTE_DIR" --namespace "$E2E_NS" --id eager1 --health)
  e2e_log "$health"
  assert_contains "$health" "python@eager1: ready" "the Python runner was warm when the container started"
  assert_contains "$health" "javascript@eager1: ready" "the Node runner was warm when the container started"
  assert_eq 5 "$(timeout 60 "$GVSHIM" exec --dir "$GVS_EXECUTE_DIR" --namespace "$E2E_NS" --id eager1 \
    -c 'def main(a, b): return a + b' --arg a=2 --arg b=3)" "the first snippet of an eager pod"
}

execute_container_goes_with_the_pod() {
  ensure_pod
  runsc_lists "$POD/execute" || fail "runsc does not list the pod's execute container"
  start_opted_in exe4
  runsc_lists exe4/execute || fail "runsc does not list exe4's execute container"
  c task kill -s SIGKILL exe4 >/dev/null
  wait_for 30 status_is exe4 STOPPED
  c task delete exe4 >/dev/null
  runsc_lacks exe4/execute || fail "exe4's execute container outlived it"
  [[ ! -e $(bundle_dir exe4)/gvshim-execute ]] || fail "exe4's execute bundle left behind"
  # After a shim killed with -9, containerd's `shim delete` removes it too.
  start_opted_in exe5
  runsc_lists exe5/execute || fail "runsc does not list exe5's execute container"
  kill -9 "$(shim_pid exe5)"
  local out rc
  run_rc out rc c task delete -f exe5
  wait_for 30 no_task exe5
  wait_for 30 runsc_lacks exe5/execute
}

# record_field ID KEY: a field of the discovery record of sandbox ID ("" if there is none).
record_field() {
  "$PY" - "$GVS_EXECUTE_DIR" "$1" "$2" <<'PYEOF'
import glob, json, sys
for f in glob.glob(sys.argv[1] + "/*.json"):
    try:
        r = json.load(open(f))
    except (OSError, ValueError):
        continue
    if r.get("sandbox_id") == sys.argv[2]:
        print(r.get(sys.argv[3], ""))
PYEOF
}
# server_pids_of SHIM_PID: the shim's children that are Execute servers.
server_pids_of() {
  local d
  for d in /proc/[0-9]*; do
    [[ $(awk '/^PPid:/ { print $2 }' "$d/status" 2>/dev/null) == "$1" ]] || continue
    [[ $(tr '\0' ' ' <"$d/cmdline" 2>/dev/null) == *execute-server* ]] && echo "${d#/proc/}"
  done
  return 0
}
no_record() { [[ -z $(record_field "$1" socket) ]]; }
has_server() { [[ -n $(record_field "$1" server_pid) ]]; }

server_is_a_child_of_the_shim() {
  ensure_pod
  local spid server
  spid=$(shim_pid "$POD")
  server=$(record_field "$POD" server_pid)
  [[ $server =~ ^[0-9]+$ ]] || fail "no server_pid in the record of $POD: [$server]"
  assert_eq "$spid" "$(record_field "$POD" shim_pid)" "shim_pid in the record"
  assert_eq "$server" "$(server_pids_of "$spid")" "the shim's Execute server children"
  assert_contains "$(tr '\0' ' ' <"/proc/$server/cmdline")" "gvshim execute-server"
  # Pods that did not opt in: their shim has no server child.
  defer cleanup_container plain2
  crun -d "$EXEC_IMAGE" plain2 "${POD_INIT[@]}" >/dev/null
  wait_for 30 status_is plain2 RUNNING
  assert_eq "" "$(server_pids_of "$(shim_pid plain2)")" "Execute server of a pod that did not opt in"
}

dead_server_is_restarted() {
  ensure_pod
  local old new
  old=$(record_field "$POD" server_pid)
  [[ $old =~ ^[0-9]+$ ]] || fail "no server_pid for $POD"
  kill -9 "$old"
  wait_for 30 pid_gone "$old"
  new_server() { new=$(record_field "$POD" server_pid); [[ -n $new && $new != "$old" ]] && pid_alive "$new"; }
  wait_for 30 new_server
  new=$(record_field "$POD" server_pid)
  assert_eq "$new" "$(server_pids_of "$(shim_pid "$POD")")" "the restarted server is the shim's child"
  assert_eq "after restart" "$(gx -c 'print("after restart")')" "a snippet through the restarted server"
}

# The Execute server killed (SIGKILL) while a snippet runs: the request gets an error in bounded time, the
# snippet, its child and its runner are gone from the execute container, and a new server serves the next one.
server_killed_during_a_snippet() {
  ensure_pod
  local marker old new rc=0
  marker=killed-$RANDOM$RANDOM
  start_holder "$marker" python
  old=$(record_field "$POD" server_pid)
  [[ $old =~ ^[0-9]+$ ]] || fail "no server_pid for $POD"
  kill -9 "$old"
  wait_for 30 pid_gone "$HOLDER_PID"
  wait "$HOLDER_PID" || rc=$?
  [[ $rc -ne 0 ]] || fail "the request whose server was killed reported success"
  wait_for 30 exec_lacks "$marker"
  new_server() { new=$(record_field "$POD" server_pid); [[ -n $new && $new != "$old" ]] && pid_alive "$new"; }
  wait_for 30 new_server
  assert_eq "after the kill" "$(gx -c 'print("after the kill")')" "a snippet through the new server"
}

# start_opted_in ID: a second pod (container) that opted into Execute, with its server serving.
start_opted_in() {
  defer cleanup_container "$1"
  crun -d --annotation dev.gvshim.execute=true "$EXEC_IMAGE" "$1" "${POD_INIT[@]}" >/dev/null
  wait_for 30 status_is "$1" RUNNING
  wait_for 30 has_server "$1"
  [[ -S $(record_field "$1" socket) ]] || fail "no Execute socket for $1"
}

server_ends_with_the_pod() {
  ensure_pod
  local server sock
  start_opted_in exe2
  server=$(record_field exe2 server_pid)
  sock=$(record_field exe2 socket)
  c task kill -s SIGKILL exe2 >/dev/null
  wait_for 30 status_is exe2 STOPPED
  c task delete exe2 >/dev/null
  wait_for 15 pid_gone "$server"
  [[ ! -e $sock ]] || fail "socket $sock left after the pod was deleted"
  wait_for 5 no_record exe2
}

server_ends_with_a_killed_shim() {
  ensure_pod
  local server sock spid
  start_opted_in exe3
  server=$(record_field exe3 server_pid)
  sock=$(record_field exe3 socket)
  spid=$(shim_pid exe3)
  kill -9 "$spid"
  # End of input on its pipe: the server stops its runners and removes its socket and record.
  wait_for 15 pid_gone "$server"
  [[ ! -e $sock ]] || fail "socket $sock left after the shim was killed"
  wait_for 5 no_record exe3
}
