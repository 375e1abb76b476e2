#!/usr/bin/env bash
# Foreground `ctr run` through the runtime under test: stdio, exit codes, tty, stdin, log-uri, runtime options.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CASES=(run_rm_echo_exit_code run_stdin_forwarded run_tty run_log_uri_file run_runtime_config_path run_sequential)
e2e_require_root_runsc "${CASES[@]}"
e2e_setup

run_rm_echo_exit_code() {
  local out rc
  run_rc out rc crun --rm "$E2E_IMAGE" r1 sh -c 'echo hi; exit 3'
  assert_eq "hi" "$out" "stdout"
  assert_eq 3 "$rc" "ctr run exit code"
  wait_for 10 no_task r1
}

run_stdin_forwarded() {
  local out
  out=$(printf 'line1\nline2\n' | crun --rm "$E2E_IMAGE" r2 sh -c 'wc -l')
  assert_eq 2 "$(echo "$out" | tr -d ' ')" "lines seen by the container"
}

run_tty() {
  local out rc
  run_rc out rc with_tty ctr -a "$GVS_SOCK" -n "$E2E_NS" run "${RUNTIME_ARGS[@]}" -t --rm "$E2E_IMAGE" r3 \
    sh -c '[ -t 0 ] && [ -t 1 ] && echo stdio-is-a-tty; echo tty-ok; exit 4'
  # (gVisor backs the console with a host pty, so `tty` cannot name it; isatty is what programs check.)
  assert_contains "$out" "stdio-is-a-tty" "tty inside the container"
  assert_contains "$out" "tty-ok"
  assert_eq 4 "$rc" "exit code through the tty"
}

run_log_uri_file() {
  local log=$E2E_WORK/r4.log out
  out=$(crun --rm --log-uri "file://$log" "$E2E_IMAGE" r4 sh -c 'echo to-log; echo err-to-log >&2')
  assert_eq "" "$out" "ctr prints nothing when stdio goes to a log"
  [[ -f $log ]] || fail "log file $log was not created"
  assert_contains "$(cat "$log")" "to-log"
  assert_contains "$(cat "$log")" "err-to-log"
}

run_runtime_config_path() {
  # ctr sends runtimeoptions.v1.Options{ConfigPath} for a non-runc runtime: the path the CRI plugin also sends.
  [[ $E2E_RUNTIME == gvisor ]] || skip_case "gvisor only"
  local out
  out=$(crun --rm --runtime-config-path "$GVS_SHIM_CONFIG" "$E2E_IMAGE" r5 sh -c 'echo with-config')
  assert_eq "with-config" "$out"
}

run_sequential() {
  # Several short containers in a row: every one gets the right output and leaves no task behind.
  local i out
  for i in 1 2 3; do
    out=$(crun --rm "$E2E_IMAGE" "r6-$i" sh -c "echo run-$i")
    assert_eq "run-$i" "$out"
  done
  assert_eq "" "$(c task ls -q)" "tasks left"
}

e2e_run_cases "${CASES[@]}"
