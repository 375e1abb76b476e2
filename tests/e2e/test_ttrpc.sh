#!/usr/bin/env bash
# The shim's ttrpc server, spoken to directly: a well-formed Connect, an unknown method, and malformed frames
# that must not take the shim down.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CASES=(ttrpc_connect ttrpc_unknown_method ttrpc_malformed_frames)
e2e_require_root_runsc "${CASES[@]}"
e2e_setup

probe() {
  local id=$1; shift
  "$PY" "$E2E_DIR/tools/ttrpc_probe.py" --address "$(shim_address "$id")" --namespace "$E2E_NS" --id "$id" "$@"
}

ttrpc_connect() {
  start_sleeper tt1
  local out
  out=$(probe tt1 connect)
  assert_contains "$out" "code=0"
  [[ $out =~ shim_pid=[1-9][0-9]* ]] || fail "Connect returned no shim pid: $out"
  [[ $out =~ task_pid=[1-9][0-9]* ]] || fail "Connect returned no task pid: $out"
}

ttrpc_unknown_method() {
  start_sleeper tt2
  local out
  out=$(probe tt2 unknown-method)
  assert_contains "$out" "code=12" "UNIMPLEMENTED for an unknown method"
}

ttrpc_malformed_frames() {
  start_sleeper tt3
  local out rc
  run_rc out rc probe tt3 malformed
  echo "$out" >&2
  # One verdict per malformed frame, each checked against the answer the shim must give.
  assert_eq 8 "$(grep -c '; as expected; afterwards shim alive$' <<<"$out")" "malformed frames answered as expected"
  assert_not_contains "$out" "WRONG"
  assert_eq 0 "$rc" "ttrpc_probe.py malformed"
  out=$(c task ps tt3)
  assert_contains "$out" "PID" "ctr task ps after the malformed frames"
  assert_eq RUNNING "$(task_status tt3)"
  assert_eq still-serving "$(c task exec --exec-id after tt3 echo still-serving)"
}

e2e_run_cases "${CASES[@]}"
