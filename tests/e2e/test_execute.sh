#!/usr/bin/env bash
# The Execute service through the real shim: snippets run inside a container's gVisor sandbox via `gvshim exec`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CASES=(python_main_args js_main_args script_stdout statuses_and_survival nothing_survives_a_snippet
  snippets_do_not_share_files no_host_network bad_requests_keep_serving not_opted_in_gets_no_service
  server_is_a_child_of_the_shim dead_server_is_restarted server_ends_with_the_pod server_ends_with_a_killed_shim)
e2e_require_root_runsc "${CASES[@]}"
[[ $E2E_RUNTIME == gvisor ]] || { for n in "${CASES[@]}"; do echo "e2e-case: SKIP $E2E_FILE/$n (gvisor only)"; done; exit 0; }
e2e_setup

PY_NODE_IMAGE=localhost/gvshim-test:python-node
GVSHIM=$E2E_BIN_DIR/gvshim
POD=exe1

# ensure_pod: one long-running container of the python-node image that opted into Execute, shared by the cases
# (containerd-down removes it at the end). Its init reaps orphans (a shell looping on wait).
ensure_pod() {
  [[ -f $E2E_WORK/pod-ready ]] && return 0
  command -v node >/dev/null || skip_case "needs the host's node for the python-node image"
  bash "$REPO_ROOT/scripts/build-image.sh" --with-python-node --out "$REPO_ROOT/build/image" -a "$GVS_SOCK" \
    -n "$E2E_NS" >/dev/null || fail "python-node image build/import failed"
  crun -d --annotation dev.gvshim.execute=true "$PY_NODE_IMAGE" "$POD" \
    sh -c 'while :; do sleep 3600 & wait; done' >/dev/null
  wait_for 30 status_is "$POD" RUNNING
  wait_for 30 ls "$GVS_EXECUTE_DIR"/*.json
  touch "$E2E_WORK/pod-ready"
}

gx() { timeout --kill-after=5 120 "$GVSHIM" exec --dir "$GVS_EXECUTE_DIR" --namespace "$E2E_NS" --id "$POD" "$@"; }

# json_field JSON KEY: prints one top-level field of gvshim exec --json output.
json_field() { "$PY" -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print(json.dumps(v) if isinstance(v,(dict,list,bool)) or v is None else v)' "$1" "$2"; }

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
  # The pod and the service survived all of that.
  assert_eq RUNNING "$(task_status "$POD")"
  assert_eq "still here" "$(gx -c 'print("still here")')" "the next snippet runs"
  assert_eq "js still here" "$(gx --lang javascript -c 'console.log("js still here")')"
}

nothing_survives_a_snippet() {
  ensure_pod
  local marker=m$RANDOM$RANDOM
  gx -c "import subprocess; subprocess.Popen(['sleep', '1000', '$marker']); print('started')" >/dev/null
  gx --lang javascript -c "require('child_process').spawn('sleep', ['1001', '$marker'], {detached: true}).unref(); console.log('ok')" >/dev/null
  # ps in the container's own pid namespace (a ctr exec) sees every process of the sandbox.
  local ps
  ps=$(c task exec --exec-id ps$RANDOM "$POD" ps -ef)
  assert_not_contains "$ps" "$marker" "a background child outlived its snippet"
}

snippets_do_not_share_files() {
  ensure_pod
  local path out
  path=$(gx -c 'import os; open("secret.txt", "w").write("s3cret"); print(os.path.abspath("secret.txt"))')
  [[ $path == /* ]] || fail "no path printed: $path"
  out=$(gx -c "
try:
    print(open('$path').read())
except OSError as e:
    print('denied', type(e).__name__)")
  assert_contains "$out" "denied" "a second snippet read the first one's file"
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
  out=$("$PY" "$E2E_DIR/tools/execute_probe.py" "$(ls "$GVS_EXECUTE_DIR"/*.sock | head -n 1)") ||
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
  crun -d "$PY_NODE_IMAGE" plain1 sleep 100000 >/dev/null
  wait_for 30 status_is plain1 RUNNING
  after=$(ls "$GVS_EXECUTE_DIR" | wc -l)
  assert_eq "$before" "$after" "a container without dev.gvshim.execute=true got an Execute socket"
  local rc=0
  timeout 30 "$GVSHIM" exec --dir "$GVS_EXECUTE_DIR" --id plain1 -c 'print(1)' 2>/dev/null || rc=$?
  assert_eq 125 "$rc" "gvshim exec against a pod without the service"
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
  crun -d "$PY_NODE_IMAGE" plain2 sleep 100000 >/dev/null
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

# start_opted_in ID: a second pod (container) that opted into Execute, with its server serving.
start_opted_in() {
  defer cleanup_container "$1"
  crun -d --annotation dev.gvshim.execute=true "$PY_NODE_IMAGE" "$1" sleep 100000 >/dev/null
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

e2e_run_cases "${CASES[@]}"
