#!/usr/bin/env bash
# Task events as containerd publishes them (captured with `ctr events`): topics and their order.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CASES=(events_lifecycle_order exec_exit_before_init_exit oom_before_exit)
e2e_require_root_runsc "${CASES[@]}"
e2e_setup

events_lifecycle_order() {
  local ev=$E2E_WORK/events1.log
  start_events "$ev"
  defer cleanup_container ev1
  crun -d "$E2E_IMAGE" ev1 sleep 100000 >/dev/null
  wait_for 30 status_is ev1 RUNNING
  local rc=0
  c task exec --exec-id e1 ev1 sh -c 'exit 5' || rc=$?
  assert_eq 5 "$rc" "exec exit code"
  c task pause ev1
  c task resume ev1
  c task kill -s SIGKILL ev1
  wait_for 30 status_is ev1 STOPPED
  c task delete ev1 >/dev/null 2>&1
  wait_event "$ev" ev1 /tasks/delete
  "$PY" "$E2E_DIR/tools/event_order.py" "$ev" ev1 /tasks/create /tasks/start /tasks/exec-added:e1 \
    /tasks/exec-started:e1 /tasks/exit:e1 /tasks/paused /tasks/resumed /tasks/exit:ev1 /tasks/delete >&2 ||
    fail "event order (see above)"
}

exec_exit_before_init_exit() {
  local ev=$E2E_WORK/events2.log
  start_events "$ev"
  defer cleanup_container ev2
  crun -d "$E2E_IMAGE" ev2 sleep 100000 >/dev/null
  wait_for 30 status_is ev2 RUNNING
  c task exec -d --exec-id long ev2 sleep 100000 >/dev/null
  wait_event "$ev" ev2 /tasks/exec-started:long
  # Killing the init takes the exec down with it: its exit must be published before the init's.
  c task kill -s SIGKILL ev2
  wait_for 30 status_is ev2 STOPPED
  wait_event "$ev" ev2 /tasks/exit:ev2
  "$PY" "$E2E_DIR/tools/event_order.py" "$ev" ev2 /tasks/exec-started:long /tasks/exit:long /tasks/exit:ev2 >&2 ||
    fail "exec exit must precede init exit (see above)"
}

oom_before_exit() {
  [[ $E2E_RUNTIME == gvisor ]] || skip_case "gvisor only"
  local ev=$E2E_WORK/events3.log rc=0
  start_events "$ev"
  defer cleanup_container ev3
  # 64 MiB memory limit; dd allocates a 300 MiB buffer: the kernel OOM-kills the sandbox in its memory cgroup.
  crun --rm --memory-limit 67108864 "$E2E_IMAGE" ev3 dd if=/dev/zero of=/dev/null bs=300M count=2 \
    >/dev/null 2>&1 || rc=$?
  assert_eq 137 "$rc" "exit code of the OOM-killed container"
  wait_event "$ev" ev3 /tasks/delete
  "$PY" "$E2E_DIR/tools/event_order.py" "$ev" ev3 /tasks/start /tasks/oom /tasks/exit:ev3 /tasks/delete >&2 ||
    fail "TaskOOM must come before the init's TaskExit (see above)"
}

e2e_run_cases "${CASES[@]}"
