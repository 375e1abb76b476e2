#!/usr/bin/env bash
# The comparison point used by the benchmarks: containerd's runc shim driving runsc through the runsc-runc wrapper
# (scripts/containerd-up.sh). Independent of gvshim; if this fails, the machine (runsc, containerd) is the problem.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CASES=(baseline_run_rm baseline_detached_exec)
e2e_require_root_runsc "${CASES[@]}"
e2e_setup
BASE=(--runtime io.containerd.runc.v2 --runc-binary "$GVS_RUNC_WRAPPER" --runc-root "$GVS_RUNC_ROOT")

baseline_run_rm() {
  local out rc
  run_rc out rc c run --rm "${BASE[@]}" "$E2E_IMAGE" b1 sh -c 'echo hi; uname -r; exit 3'
  assert_eq 3 "$rc" "exit code"
  assert_contains "$out" "hi"
  assert_contains "$out" "4.4.0" "runs under gVisor (its fixed kernel version)"
}

baseline_detached_exec() {
  defer cleanup_container b2
  c run -d "${BASE[@]}" "$E2E_IMAGE" b2 sleep 100000 >/dev/null
  wait_for 30 status_is b2 RUNNING
  assert_eq in-sandbox "$(c task exec --exec-id e b2 echo in-sandbox)"
}

e2e_run_cases "${CASES[@]}"
