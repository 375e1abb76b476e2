#!/usr/bin/env bash
# Nothing is left behind: the shim exits after its last container, runsc state and mounts are gone, and a shim
# killed with SIGKILL is cleaned up by containerd (through `shim delete`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CASES=(shim_exits_after_last_delete shim_sigkill_then_delete no_leftovers)
e2e_require_root_runsc "${CASES[@]}"
e2e_setup

shim_exits_after_last_delete() {
  start_sleeper cl1
  local pid bundle
  pid=$(shim_pid cl1)
  [[ $pid =~ ^[0-9]+$ ]] || fail "no shim pid for cl1 (got [$pid])"
  kill -0 "$pid" || fail "shim $pid not running"
  grep -qxF -- "$pid" <<<"$(our_shim_pids)" || fail "the probe does not see shim $pid of cl1"
  bundle=$(bundle_dir cl1)
  runsc_lists cl1 || fail "the probe does not see running cl1 in runsc's list"
  [[ -n $(mounts_under "$bundle") ]] || fail "the probe sees no rootfs mount under $bundle while cl1 runs"
  c task kill -s SIGKILL cl1
  wait_for 30 status_is cl1 STOPPED
  c task delete cl1 >/dev/null 2>&1
  c container delete cl1
  wait_for 15 pid_gone "$pid"
  runsc_lacks cl1 || fail "runsc still lists cl1"
  assert_eq "" "$(mounts_under "$bundle")" "mounts left under the bundle"
  [[ ! -e $bundle ]] || fail "bundle $bundle still exists"
}

shim_sigkill_then_delete() {
  start_sleeper cl2
  local pid
  pid=$(shim_pid cl2)
  [[ $pid =~ ^[0-9]+$ ]] || fail "no shim pid for cl2 (got [$pid])"
  runsc_lists cl2 || fail "the probe does not see running cl2 in runsc's list"
  kill -KILL "$pid"
  wait_for 10 pid_gone "$pid"
  # containerd notices the lost shim and runs `shim delete`; a forced task delete must then succeed or find
  # the task already gone.
  local out rc
  run_rc out rc c task delete -f cl2
  if [[ $rc -ne 0 && $out != *"not found"* ]]; then fail "ctr task delete -f after shim SIGKILL: $out"; fi
  wait_for 30 no_task cl2
  wait_for 30 runsc_lacks cl2
  c container delete cl2
  no_mounts_under "$(bundle_dir cl2)" || fail "mounts left under the bundle: $(mounts_under "$(bundle_dir cl2)")"
}

no_leftovers() {
  # Runs last: every earlier case removed its containers.
  local ids
  e2e_prove_probes
  assert_eq "" "$(c task ls -q)" "tasks"
  ids=$(runsc_ids) || fail "runsc list under $(runsc_root) failed"
  assert_eq "" "$ids" "runsc containers in $(runsc_root)"
  no_mounts_under "$GVS_STATE" || fail "mounts under containerd's state dir: $(mounts_under "$GVS_STATE")"
  wait_for 15 no_shims
}

e2e_run_cases "${CASES[@]}"
