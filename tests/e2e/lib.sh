#!/usr/bin/env bash
# Helpers for gvshim's end-to-end tests (sourced by tests/e2e/test_*.sh).
#
# Every test file gets its own private containerd (scripts/containerd-up.sh) in a short temp dir, the busybox test
# image imported into namespace $E2E_NS, and cleanup on exit. Each check is a named case:
#   e2e_case NAME FUNCTION   runs FUNCTION in a subshell with errexit; prints "e2e-case: PASS|FAIL|SKIP FILE/NAME"
# tests/e2e/run.sh counts those lines.
#
# Environment knobs:
#   E2E_RUNTIME=gvisor (default) | baseline   baseline = containerd's runc shim driving runsc (checks the harness)
#   E2E_BIN_DIR        where containerd-shim-gvisor-v1 lives (default build/shim/main)
#   E2E_KEEP=1         keep the containerd temp dir on exit (for debugging; containerd is still stopped)
#   E2E_CMD_TIMEOUT    seconds for each ctr command (default 60)
#   E2E_CASES="a b"    run only these cases
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$E2E_DIR/../.." && pwd)
E2E_NS=${E2E_NS:-e2e}
E2E_IMAGE=${E2E_IMAGE:-localhost/gvshim-test:busybox}
E2E_RUNTIME=${E2E_RUNTIME:-gvisor}
E2E_BIN_DIR=${E2E_BIN_DIR:-$REPO_ROOT/build/shim/main}
E2E_CMD_TIMEOUT=${E2E_CMD_TIMEOUT:-60}
E2E_FILE=$(basename "${0%.sh}")
PY=/usr/bin/python3 # Debian's python3 (has grpcio); another python3 may shadow it on PATH
GVISOR_RUNTIME=io.containerd.gvisor.v1
E2E_SKIP_RC=200 # a case that exits with this code is reported as skipped

e2e_log() { echo "[$E2E_FILE] $*" >&2; }

# Prints SKIP lines for the named cases and exits 0 unless we are root and runsc + containerd exist.
# Usage: e2e_require_root_runsc CASE...
e2e_require_root_runsc() {
  local why=
  if [[ $(id -u) -ne 0 ]]; then
    why="needs root"
  elif ! command -v runsc >/dev/null; then
    why="needs runsc"
  elif ! command -v containerd >/dev/null || ! command -v ctr >/dev/null; then
    why="needs containerd and ctr"
  fi
  if [[ -n $why ]]; then
    local n
    for n in "$@"; do echo "e2e-case: SKIP $E2E_FILE/$n ($why)"; done
    exit 0
  fi
}

# Starts the private containerd and imports the test image. Sets GVS_* (see scripts/containerd-up.sh).
e2e_setup() {
  E2E_TMP=$(mktemp -d /tmp/gvs.XXXX)
  trap e2e_teardown EXIT
  if ! containerd_start; then
    echo "e2e-case: FAIL $E2E_FILE/setup (containerd did not start)"
    exit 1
  fi
  # shellcheck disable=SC1091
  source "$E2E_TMP/env"
  mkdir -p "$E2E_TMP/work"
  E2E_WORK=$E2E_TMP/work
  if ! bash "$REPO_ROOT/scripts/build-image.sh" --out "$REPO_ROOT/build/image" -a "$GVS_SOCK" -n "$E2E_NS" \
    >/dev/null; then
    echo "e2e-case: FAIL $E2E_FILE/setup (image import failed)"
    exit 1
  fi
  case $E2E_RUNTIME in
    gvisor) RUNTIME_ARGS=(--runtime "$GVISOR_RUNTIME") ;;
    baseline)
      RUNTIME_ARGS=(--runtime io.containerd.runc.v2 --runc-binary "$GVS_RUNC_WRAPPER" --runc-root "$GVS_RUNC_ROOT")
      ;;
    *) echo "unknown E2E_RUNTIME=$E2E_RUNTIME" >&2; exit 2 ;;
  esac
  if [[ $E2E_RUNTIME == gvisor && ! -x $E2E_BIN_DIR/containerd-shim-gvisor-v1 ]]; then
    e2e_log "WARNING: $E2E_BIN_DIR/containerd-shim-gvisor-v1 does not exist; gvisor cases will fail"
  fi
}

# Stops the private containerd and removes what is left. Whatever the file's cases left behind (a runsc
# container, a shim, a runsc process, a mount: containerd-down.sh --report-leftovers) is a leak of this file:
# it is reported as the failed case FILE/teardown and the file exits non-zero.
# containerd_start: starts (or starts again, on the same dir, config and state, as after a restart of a node's
# containerd) the file's private containerd. E2E_STATE_TMPFS=SIZE puts its state dir (the bundles) on a tmpfs.
containerd_start() {
  local extra=()
  if [[ -n ${E2E_STATE_TMPFS:-} ]]; then extra=(--state-tmpfs "$E2E_STATE_TMPFS"); fi
  bash "$REPO_ROOT/scripts/containerd-up.sh" "$E2E_TMP" --bin-dir "$E2E_BIN_DIR" --log-level debug "${extra[@]}"
}
# containerd_stop: stops the private containerd (SIGTERM by pid) and waits until it is gone; shims keep running.
containerd_stop() {
  local pid
  pid=$(cat "$GVS_PID")
  kill -TERM "$pid"
  wait_for 30 pid_gone "$pid"
}

e2e_teardown() {
  local rc=$?
  if [[ -n ${E2E_EVENTS_PID:-} ]]; then kill "$E2E_EVENTS_PID" 2>/dev/null || true; fi
  if [[ -n ${E2E_TMP:-} && -d $E2E_TMP ]]; then
    if [[ $rc -ne 0 || ${E2E_SHOW_LOG:-0} == 1 ]]; then
      e2e_log "containerd log tail ($GVS_LOG):"
      tail -n 40 "$E2E_TMP/containerd.log" >&2 || true
    fi
    local keep=() down_rc=0 report
    if [[ ${E2E_KEEP:-0} == 1 ]]; then keep=(--keep-dir); fi
    report=$(bash "$REPO_ROOT/scripts/containerd-down.sh" "$E2E_TMP" --report-leftovers "${keep[@]}" 2>&1) ||
      down_rc=$?
    echo "$report" >&2
    if [[ $down_rc -eq 3 ]]; then
      echo "e2e-case: FAIL $E2E_FILE/teardown (left behind: $(sed -n 's/^containerd-down: leftover: //p' \
        <<<"$report" | paste -sd';' -))"
      [[ $rc -ne 0 ]] || rc=1
    elif [[ $down_rc -ne 0 ]]; then
      echo "e2e-case: FAIL $E2E_FILE/teardown (containerd-down.sh exited $down_rc)"
      [[ $rc -ne 0 ]] || rc=1
    fi
    if [[ ${E2E_KEEP:-0} == 1 ]]; then e2e_log "kept $E2E_TMP"; fi
  fi
  return "$rc"
}

# ctr against our containerd and namespace, bounded in time.
c() { timeout --kill-after=5 "$E2E_CMD_TIMEOUT" ctr -a "$GVS_SOCK" -n "$E2E_NS" "$@"; }

# ctr run under the runtime being tested: crun [ctr run flags...] IMAGE ID CMD...
crun() { c run "${RUNTIME_ARGS[@]}" "$@"; }

# Runs CMD with a pseudo-terminal as stdin/stdout (ctr -t wants one); output has \r removed.
with_tty() {
  local cmd
  printf -v cmd '%q ' "$@"
  timeout --kill-after=5 "$E2E_CMD_TIMEOUT" script -qefc "$cmd" /dev/null </dev/null | tr -d '\r'
  return "${PIPESTATUS[0]}"
}

# e2e_run_cases CASE...: runs each case (a function of the same name); E2E_CASES="a b" limits the run to those.
e2e_run_cases() {
  local n
  for n in "$@"; do
    if [[ -n ${E2E_CASES:-} && " $E2E_CASES " != *" $n "* ]]; then continue; fi
    e2e_case "$n" "$n"
  done
}

# ---- cases ----------------------------------------------------------------------------------------------------

E2E_DEFERRED=()
# defer CMD...: runs CMD (ignoring failure) when the current case ends, last registered first.
defer() {
  local q
  printf -v q '%q ' "$@"
  E2E_DEFERRED+=("$q")
}
_run_deferred() {
  local i
  for ((i = ${#E2E_DEFERRED[@]} - 1; i >= 0; i--)); do eval "${E2E_DEFERRED[i]}" >/dev/null 2>&1 || true; done
}

skip_case() {
  echo "skip: $*" >&2
  exit "$E2E_SKIP_RC"
}

# e2e_case NAME FUNCTION [ARGS...]
e2e_case() {
  local name=$1; shift
  local rc=0 start=$SECONDS
  e2e_log "--- $name"
  set +e
  (
    set -euo pipefail
    E2E_DEFERRED=()
    trap _run_deferred EXIT
    "$@"
  )
  rc=$?
  set -e
  local took=$((SECONDS - start))
  if [[ $rc -eq 0 ]]; then
    echo "e2e-case: PASS $E2E_FILE/$name (${took}s)"
  elif [[ $rc -eq $E2E_SKIP_RC ]]; then
    echo "e2e-case: SKIP $E2E_FILE/$name"
  else
    echo "e2e-case: FAIL $E2E_FILE/$name (rc $rc, ${took}s)"
  fi
}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

assert_eq() {
  local want=$1 got=$2 msg=${3:-}
  [[ $want == "$got" ]] || fail "${msg:+$msg: }expected [$want], got [$got]"
}

assert_contains() {
  local hay=$1 needle=$2 msg=${3:-}
  [[ $hay == *"$needle"* ]] || fail "${msg:+$msg: }expected output to contain [$needle]; output was:
$hay"
}

assert_not_contains() {
  local hay=$1 needle=$2 msg=${3:-}
  [[ $hay != *"$needle"* ]] || fail "${msg:+$msg: }expected output NOT to contain [$needle]; output was:
$hay"
}

# run_rc VAR_OUT VAR_RC CMD...: runs CMD capturing stdout+stderr and exit code without tripping errexit.
run_rc() {
  local __out=$1 __rc=$2; shift 2
  local o r=0
  o=$("$@" 2>&1) || r=$?
  printf -v "$__out" '%s' "$o"
  printf -v "$__rc" '%s' "$r"
}

# wait_for SECONDS CMD...: polls CMD (every 0.1 s) until it succeeds; fails the case at the deadline.
wait_for() {
  local limit=$1; shift
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [[ $SECONDS -lt $deadline ]] || fail "timed out after ${limit}s waiting for: $*"
    sleep 0.1
  done
}

# task_status ID: the STATUS column of `ctr task ls` for ID (empty if no task).
task_status() { c task ls 2>/dev/null | awk -v id="$1" '$1 == id { print $3 }'; }
status_is() { [[ $(task_status "$1") == "$2" ]]; }
no_task() { [[ -z $(task_status "$1") ]]; }

# Removes task and container ID whatever state they are in.
cleanup_container() {
  c task kill -s SIGKILL "$1" >/dev/null 2>&1 || true
  c task delete -f "$1" >/dev/null 2>&1 || true
  c container delete "$1" >/dev/null 2>&1 || true
}

# Starts a detached long-running container ID (extra ctr run flags may precede IMAGE via RUN_FLAGS array).
start_sleeper() {
  local id=$1
  defer cleanup_container "$id"
  crun -d "${@:2}" "$E2E_IMAGE" "$id" sleep 100000 >/dev/null
  wait_for 30 status_is "$id" RUNNING
}

# start_events FILE: runs `ctr events` into FILE in the background and returns once it is subscribed
# (a marker container's /containers/create event has arrived).
start_events() {
  local file=$1 marker
  marker=marker-$RANDOM$RANDOM
  : >"$file"
  ctr -a "$GVS_SOCK" events >>"$file" 2>&1 &
  E2E_EVENTS_PID=$!
  defer kill "$E2E_EVENTS_PID"
  local deadline=$((SECONDS + 30))
  while ! grep -q "$marker" "$file"; do
    c container delete "$marker" >/dev/null 2>&1 || true
    c container create "$E2E_IMAGE" "$marker" true >/dev/null
    [[ $SECONDS -lt $deadline ]] || fail "ctr events never showed the marker event"
    sleep 0.2
  done
  c container delete "$marker" >/dev/null
}

# wait_event FILE ID EVENT: waits until FILE holds EVENT (topic or topic:process-id) for container ID.
wait_event() { wait_for 30 "$PY" "$E2E_DIR/tools/event_order.py" "$1" "$2" "$3"; }

# bundle_dir ID: containerd's bundle (state) directory for task ID.
bundle_dir() { echo "$GVS_STATE/io.containerd.runtime.v2.task/$E2E_NS/$1"; }

# shim_address ID: the ttrpc address the shim of ID serves (from the bundle's address file).
shim_address() { cat "$(bundle_dir "$1")/address"; }

# shim_pid ID: pid of the shim serving ID (bundle's shim.pid, else asked over ttrpc Connect).
shim_pid() {
  local f
  f=$(bundle_dir "$1")/shim.pid
  if [[ -s $f ]]; then
    cat "$f"
  else
    "$PY" "$E2E_DIR/tools/ttrpc_probe.py" --address "$(shim_address "$1")" --namespace "$E2E_NS" --id "$1" \
      connect | sed -n 's/^shim_pid=//p'
  fi
}

# runsc_root: the runsc --root used for $E2E_NS by the runtime under test.
runsc_root() {
  if [[ $E2E_RUNTIME == gvisor ]]; then echo "$GVS_RUNSC_ROOT/$E2E_NS"; else echo "$GVS_RUNC_ROOT/$E2E_NS"; fi
}
# runsc_ids: every id runsc lists under runsc_root (runsc's own ids). Fails, naming the root, when the root does
# not exist or runsc cannot list it: a probe that cannot look must not report "nothing there". Callers check
# its status (ids=$(runsc_ids) || fail ...).
runsc_ids() {
  local r
  r=$(runsc_root)
  if [[ ! -d $r ]]; then
    echo "runsc_ids: runsc root $r does not exist" >&2
    return 1
  fi
  "${GVS_RUNSC:-runsc}" --root "$r" list -quiet
}
# runsc_id NAME: the id runsc knows container NAME by. gvshim maps ids (runsc::ContainerId, `gvshim runsc-id`);
# the baseline runc shim passes them through.
runsc_id() {
  if [[ $E2E_RUNTIME == gvisor ]]; then
    "$E2E_BIN_DIR/gvshim" runsc-id --root "$(runsc_root)" "$1"
  else
    echo "$1"
  fi
}
# runsc_lists NAME: runsc still has state for container NAME.
runsc_lists() {
  local rid ids
  rid=$(runsc_id "$1")
  ids=$(runsc_ids) || fail "runsc list under $(runsc_root) failed"
  grep -qxF -- "$rid" <<<"$ids"
}
# The probes of absence below first prove (e2e_prove_probes) that they see a live container's traces.
runsc_lacks() {
  e2e_prove_probes
  ! runsc_lists "$1"
}

# our_shim_pids: shims started by our containerd (their argv has "-address" followed by our socket).
our_shim_pids() {
  local d
  for d in /proc/[0-9]*; do
    if tr '\0' '\n' 2>/dev/null <"$d/cmdline" | grep -A1 -x -- '-\{1,2\}address' | grep -qxF -- "$GVS_SOCK"; then
      echo "${d#/proc/}"
    fi
  done
}
no_shims() {
  e2e_prove_probes
  [[ -z $(our_shim_pids) ]]
}
pid_alive() { kill -0 "$1" 2>/dev/null; }
# kill_if PID TEXT...: SIGKILL for PID only while its command line still contains every TEXT (a deferred
# cleanup must not hit a process that took over the pid of one that already ended).
kill_if() {
  local pid=$1 cmd t; shift
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 0
  for t in "$@"; do [[ $cmd == *"$t"* ]] || return 0; done
  kill -KILL "$pid" 2>/dev/null || true
}
pid_gone() { ! kill -0 "$1" 2>/dev/null; }

# mounts_under DIR: mount points below DIR.
mounts_under() { awk -v d="$1/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo; }
# no_mounts_under DIR: nothing is mounted below DIR (after e2e_prove_probes).
no_mounts_under() {
  e2e_prove_probes
  [[ -z $(mounts_under "$1") ]]
}

# e2e_prove_probes: once per test file, shows that the probes of absence (runsc's list, mounts under a bundle,
# our shims) see a live container's traces in this containerd, and stop seeing them once it is gone. Every
# "nothing left" check calls it first, so none can pass by looking in the wrong place (a wrong root, a shim
# argv that no longer matches, ...).
e2e_prove_probes() {
  [[ ! -f $E2E_WORK/.probes-proven ]] || return 0
  local id=probe-self-test bundle pid=
  crun -d "$E2E_IMAGE" "$id" sleep 100000 >/dev/null || fail "probe self-test: container $id did not start"
  wait_for 30 status_is "$id" RUNNING
  bundle=$(bundle_dir "$id")
  runsc_lists "$id" || fail "probe self-test: runsc's list under $(runsc_root) does not show running $id"
  [[ -n $(mounts_under "$bundle") ]] || fail "probe self-test: no mount seen under $bundle while $id runs"
  pid=$(shim_pid "$id")
  [[ $pid =~ ^[0-9]+$ ]] || fail "probe self-test: no shim pid for $id (got [$pid])"
  grep -qxF -- "$pid" <<<"$(our_shim_pids)" || fail "probe self-test: our_shim_pids does not list shim $pid"
  cleanup_container "$id"
  wait_for 30 no_task "$id"
  wait_for 30 pid_gone "$pid"
  ! runsc_lists "$id" || fail "probe self-test: runsc still lists $id after its delete"
  [[ -z $(mounts_under "$bundle") ]] || fail "probe self-test: mounts left under $bundle"
  ! grep -qxF -- "$pid" <<<"$(our_shim_pids)" || fail "probe self-test: our_shim_pids still lists $pid"
  touch "$E2E_WORK/.probes-proven"
}

# Python stubs for containerd's GRPC API (tasks, containers, snapshots), compiled once per test file.
e2e_python_protos() {
  local out=$E2E_WORK/pyproto src=/usr/share/gocode/src api=github.com/containerd/containerd/api
  if [[ ! -f $out/.done ]]; then
    mkdir -p "$out"
    (cd "$src" && protoc -I"$src" -I"$src/github.com/gogo/protobuf" -I/usr/include --python_out="$out" \
      $api/services/tasks/v1/tasks.proto $api/services/snapshots/v1/snapshots.proto \
      $api/services/containers/v1/containers.proto $api/types/mount.proto $api/types/metrics.proto \
      $api/types/descriptor.proto $api/types/task/task.proto 2>/dev/null)
    (cd "$src/github.com/gogo/protobuf" && protoc -I. -I/usr/include --python_out="$out" gogoproto/gogo.proto \
      2>/dev/null)
    touch "$out/.done"
  fi
  echo "$out"
}
