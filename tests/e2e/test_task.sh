#!/usr/bin/env bash
# Task operations on a detached container: exec (plain and tty), ps, pause/resume, metrics, kill, delete.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CASES=(exec_exit_code exec_tty exec_stdin task_ps pause_resume task_metrics kill_sigkill_137 kill_sigterm_143
  kill_created_task task_delete)
e2e_require_root_runsc "${CASES[@]}"
e2e_setup

exec_exit_code() {
  start_sleeper x1
  local out rc
  run_rc out rc c task exec --exec-id e1 x1 sh -c 'echo x; exit 5'
  assert_eq "x" "$out" "exec stdout"
  assert_eq 5 "$rc" "exec exit code"
  # the exec is gone from the task's process list once it exited and ctr deleted it
  run_rc out rc c task exec --exec-id e1 x1 true
  assert_eq 0 "$rc" "an exec id can be reused after its process was deleted"
  assert_eq RUNNING "$(task_status x1)" "init still running"
}

exec_tty() {
  start_sleeper x2
  local out rc
  run_rc out rc with_tty ctr -a "$GVS_SOCK" -n "$E2E_NS" task exec -t --exec-id et x2 \
    sh -c '[ -t 0 ] && [ -t 1 ] && echo exec-is-a-tty; echo y; exit 6'
  assert_contains "$out" "exec-is-a-tty"
  assert_contains "$out" "y"
  assert_eq 6 "$rc" "tty exec exit code"
}

exec_stdin() {
  start_sleeper x3
  local out
  out=$(printf 'one\ntwo\nthree\n' | c task exec --exec-id ei x3 sh -c 'wc -l')
  assert_eq 3 "$(echo "$out" | tr -d ' ')" "lines the exec read from stdin"
}

task_ps() {
  start_sleeper x4
  local out
  out=$(c task ps x4)
  assert_contains "$out" "PID" "ps header"
  # header + at least the init process
  [[ $(echo "$out" | wc -l) -ge 2 ]] || fail "ctr task ps listed no process: $out"
}

pause_resume() {
  start_sleeper x5
  c task pause x5
  assert_eq PAUSED "$(task_status x5)" "after pause"
  c task resume x5
  assert_eq RUNNING "$(task_status x5)" "after resume"
  local out
  out=$(c task exec --exec-id after-resume x5 echo alive)
  assert_eq alive "$out" "exec after resume"
}

task_metrics() {
  start_sleeper x6
  local out
  out=$(c task metrics x6)
  assert_contains "$out" "METRIC" "metrics table header"
  assert_contains "$out" "memory" "memory row"
  assert_contains "$out" "cpu" "cpu row"
}

kill_sigkill_137() {
  start_sleeper x7
  c task kill -s SIGKILL x7
  wait_for 30 status_is x7 STOPPED
  local out rc
  run_rc out rc c task delete x7
  assert_eq 0 "$rc" "task delete"
  assert_contains "$out" "exit code 137" "exit status reported by delete"
}

kill_sigterm_143() {
  # The init is pid 1 inside its pid namespace: SIGTERM reaches it only through a handler, which exits 143.
  defer cleanup_container x8
  crun -d "$E2E_IMAGE" x8 sh -c 'trap "exit 143" TERM; sleep 100000 & wait' >/dev/null
  wait_for 30 status_is x8 RUNNING
  c task kill x8 # default SIGTERM
  wait_for 30 status_is x8 STOPPED
  local out rc
  run_rc out rc c task delete x8
  assert_eq 0 "$rc" "task delete"
  assert_contains "$out" "exit code 143" "exit status reported by delete"
}

kill_created_task() {
  # ctr cannot create a task without starting it: drive containerd's Tasks API directly.
  defer cleanup_container x9
  local protos out rc extra=()
  if [[ $E2E_RUNTIME == gvisor ]]; then
    c container create "${RUNTIME_ARGS[@]}" "$E2E_IMAGE" x9 sleep 100000 >/dev/null
  else
    # `ctr container create` has no --runc-binary: the baseline's runc options ride on the task instead.
    c container create --runtime io.containerd.runc.v2 "$E2E_IMAGE" x9 sleep 100000 >/dev/null
    extra=(--runc-binary "$GVS_RUNC_WRAPPER" --runc-root "$GVS_RUNC_ROOT")
  fi
  protos=$(e2e_python_protos)
  run_rc out rc "$PY" "$E2E_DIR/tools/containerd_api.py" --protos "$protos" --socket "$GVS_SOCK" \
    --namespace "$E2E_NS" kill-created --id x9 --signal 9 "${extra[@]}"
  echo "$out" >&2
  assert_eq 0 "$rc" "containerd_api.py kill-created"
  assert_contains "$out" "status_after_create=CREATED"
  assert_contains "$out" "kill=ok"
  assert_contains "$out" "wait_exit_status=137"
  assert_contains "$out" "status_after_wait=STOPPED"
  assert_contains "$out" "delete_exit_status=137"
  runsc_lacks x9 || fail "runsc still lists x9"
}

task_delete() {
  defer cleanup_container x10
  crun -d "$E2E_IMAGE" x10 sh -c 'exit 7' >/dev/null
  wait_for 30 status_is x10 STOPPED
  runsc_lists x10 || fail "the probe does not see stopped x10 in runsc's list before the delete"
  local out rc
  run_rc out rc c task delete x10
  assert_eq 0 "$rc" "task delete"
  assert_contains "$out" "exit code 7"
  assert_eq "" "$(task_status x10)" "task gone from ctr task ls"
  c container delete x10
  runsc_lacks x10 || fail "runsc still lists x10"
}

e2e_run_cases "${CASES[@]}"
