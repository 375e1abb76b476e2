#!/usr/bin/env bash
# Foreground `ctr run` through the runtime under test: stdio, exit codes, tty, stdin, log-uri, runtime options.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CASES=(run_rm_echo_exit_code run_stdin_forwarded run_tty run_log_uri_file run_runtime_config_path run_sequential
  config_from_start_stdin config_from_etc_fallback)
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

# shim_config FILE READONLY: the private gvshim.toml with [hardening] readonly_rootfs = READONLY and its own
# runsc root ($E2E_WORK/alt-runsc), so a container shows which config it was created with.
shim_config() {
  local file=$1 readonly=$2
  sed -e "s|^root = .*|root = \"$E2E_WORK/alt-runsc\"|" \
    -e "s|^\\[hardening\\]\$|[hardening]\nreadonly_rootfs = $readonly|" "$GVS_SHIM_CONFIG" >"$file"
  grep -qx "readonly_rootfs = $readonly" "$file" || fail "could not write $file"
}

# A command that tells whether the root filesystem it runs on is writable.
WRITABLE_PROBE='touch /probe 2>/dev/null && echo writable || echo read-only'

run_runtime_config_path() {
  # The runtime option ConfigPath (the CRI plugin sends it; so does ctr --runtime-config-path) names a config
  # other than the one containerd's environment gives (GVSHIM_CONFIG, read-only rootfs): the option wins.
  [[ $E2E_RUNTIME == gvisor ]] || skip_case "gvisor only"
  local cfg=$E2E_WORK/writable.toml out
  shim_config "$cfg" false
  out=$(crun --rm "$E2E_IMAGE" r5a sh -c "$WRITABLE_PROBE")
  assert_eq "read-only" "$out" "with containerd's default config (GVSHIM_CONFIG)"
  out=$(crun --rm --runtime-config-path "$cfg" "$E2E_IMAGE" r5b sh -c "$WRITABLE_PROBE")
  assert_eq "writable" "$out" "with --runtime-config-path $cfg"
}

# direct_shim NAME STDIN_CONFIG ETC_CONFIG: runs `containerd-shim-gvisor-v1 start` by hand for a bundle of our own,
# the way containerd does (cwd = bundle, TTRPC_ADDRESS, runtime options on stdin) but with GVSHIM_CONFIG unset
# and in a private mount namespace whose /etc/containerd holds only ETC_CONFIG (if not "") as gvshim.toml. Then
# creates the task over ttrpc WITHOUT runtime options, starts it, waits, deletes it and shuts the shim down.
# What the task wrote goes to $E2E_WORK/NAME.out, the shim's argv to $E2E_WORK/NAME.argv.
direct_shim() {
  local name=$1 stdin_cfg=$2 etc_cfg=$3 b=$E2E_WORK/$1 addr pid out
  mkdir -p "$b/rootfs/bin"
  cp /bin/busybox "$b/rootfs/bin/busybox"
  ln -s busybox "$b/rootfs/bin/sh"
  ln -s busybox "$b/rootfs/bin/touch"
  (cd "$b" && "$GVS_RUNSC" spec -- /bin/sh -c "$WRITABLE_PROBE")
  jq '.process.terminal = false | .root.readonly = false' "$b/config.json" >"$b/config.json.new"
  mv "$b/config.json.new" "$b/config.json"
  if [[ -n $stdin_cfg ]]; then
    # google.protobuf.Any{type_url: runtimeoptions.v1.Options, value: Options{config_path = 2}}
    "$PY" -c 'import sys
def f(n, b): return bytes([n << 3 | 2, len(b)]) + b
sys.stdout.buffer.write(f(1, b"runtimeoptions.v1.Options") + f(2, f(2, sys.argv[1].encode())))' "$stdin_cfg" \
      >"$b/options.bin"
  else
    : >"$b/options.bin"
  fi
  defer rm -rf "$b"
  # shellcheck disable=SC2016 # the inner shell expands its own environment
  addr=$(cd "$b" && env -u GVSHIM_CONFIG TTRPC_ADDRESS="$GVS_TTRPC" ETC_CONFIG="$etc_cfg" \
    SHIM="$E2E_BIN_DIR/containerd-shim-gvisor-v1" NS="$E2E_NS" SOCK="$GVS_SOCK" ID="$name" \
    unshare -m --propagation private sh -c '
      mount -t tmpfs -o size=1m gvshim-test-etc /etc/containerd || exit 1
      if [ -n "$ETC_CONFIG" ]; then cp "$ETC_CONFIG" /etc/containerd/gvshim.toml || exit 1; fi
      exec "$SHIM" -namespace "$NS" -address "$SOCK" -publish-binary /usr/bin/containerd -id "$ID" start' \
    <"$b/options.bin")
  [[ $addr == unix://* ]] || fail "start printed [$addr], not an address"
  pid=$(cat "$b/shim.pid")
  if [[ ! $pid =~ ^[0-9]+$ ]] || ! pid_alive "$pid"; then fail "no shim daemon (shim.pid [$pid])"; fi
  defer kill_if "$pid" "containerd-shim-gvisor-v1" "-id $name -address"
  tr '\0' ' ' <"/proc/$pid/cmdline" >"$E2E_WORK/$name.argv"
  probe_call() { "$PY" "$E2E_DIR/tools/ttrpc_probe.py" --address "$addr" --namespace "$E2E_NS" call "$@"; }
  probe_call Create id="$name" bundle="$b" stdout="file://$b/out" >&2 || fail "Create of $name failed"
  probe_call Start id="$name" >&2 || fail "Start of $name failed"
  out=$(probe_call Wait id="$name") || fail "Wait for $name failed: $out"
  # WaitResponse.exit_status is field 1 (absent when 0, as proto3 leaves zero fields out).
  local status
  status=$(sed -n 's/^f1=//p' <<<"$out")
  assert_eq 0 "${status:-0}" "exit status of $name"
  probe_call Delete id="$name" >&2 || fail "Delete of $name failed"
  probe_call Shutdown id="$name" >&2 || fail "Shutdown of $name failed"
  wait_for 15 pid_gone "$pid"
  local ids
  ids=$("$GVS_RUNSC" --root "$E2E_WORK/alt-runsc/$E2E_NS" list -quiet) || fail "runsc list under alt-runsc failed"
  assert_eq "" "$ids" "runsc containers left under $E2E_WORK/alt-runsc/$E2E_NS"
  cp "$b/out" "$E2E_WORK/$name.out"
}

config_from_start_stdin() {
  # `start` gets the runtime options on stdin; the daemon keeps the path (-gvshim-config) and uses it for a
  # Create that carries no options. A read-only config through the same door is the control.
  [[ $E2E_RUNTIME == gvisor ]] || skip_case "gvisor only"
  local rw=$E2E_WORK/stdin-rw.toml ro=$E2E_WORK/stdin-ro.toml out
  shim_config "$rw" false
  shim_config "$ro" true
  direct_shim sd1 "$rw" ""
  out=$(cat "$E2E_WORK/sd1.out")
  assert_eq "writable" "$out" "task created with the config given to start on stdin ($rw)"
  assert_contains "$(cat "$E2E_WORK/sd1.argv")" "-gvshim-config $rw"
  direct_shim sd2 "$ro" ""
  out=$(cat "$E2E_WORK/sd2.out")
  assert_eq "read-only" "$out" "task created with the read-only config given to start on stdin"
}

config_from_etc_fallback() {
  # No runtime option and no GVSHIM_CONFIG: the shim reads /etc/containerd/gvshim.toml (a private mount here).
  [[ $E2E_RUNTIME == gvisor ]] || skip_case "gvisor only"
  local rw=$E2E_WORK/etc-rw.toml ro=$E2E_WORK/etc-ro.toml out
  shim_config "$rw" false
  shim_config "$ro" true
  direct_shim ef1 "" "$rw"
  out=$(cat "$E2E_WORK/ef1.out")
  assert_eq "writable" "$out" "task created with /etc/containerd/gvshim.toml = $rw"
  assert_not_contains "$(cat "$E2E_WORK/ef1.argv")" "-gvshim-config"
  direct_shim ef2 "" "$ro"
  out=$(cat "$E2E_WORK/ef2.out")
  assert_eq "read-only" "$out" "task created with /etc/containerd/gvshim.toml = $ro"
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
