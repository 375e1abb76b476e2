#!/usr/bin/env bash
# The gvshim binary's command line (CLI11): commands, --help, --version, usage errors (exit 2, naming the bad
# flag or word), and that a word naming another command is an argument, not a second command. Only paths that
# stop before any side effect are run (parse errors, version, runsc-id, a discovery directory that does not
# exist).
# Usage: gvshim_cli_test.sh PATH/TO/gvshim
set -uo pipefail
GVSHIM=$1
passed=0 failed=0
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# expect RC PATTERN ARGS...: gvshim ARGS exits RC, and stdout+stderr match the extended regex PATTERN.
expect() {
  local want=$1 pattern=$2 out rc
  shift 2
  out=$("$GVSHIM" "$@" 2>&1)
  rc=$?
  if [[ $rc -eq $want ]] && grep -Eq -- "$pattern" <<<"$out"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    printf 'FAIL: gvshim %s\n  want exit %s matching /%s/, got exit %s:\n%s\n' "$*" "$want" "$pattern" "$rc" "$out"
  fi
}

# Commands and help.
expect 2 'a command is required' 
expect 0 '^gvshim 0\.1\.0$' version
expect 0 '^gvshim 0\.1\.0$' --version
expect 0 '^gvshim 0\.1\.0$' -v
expect 0 'runsc-id' --help
expect 0 'gateway' -h
expect 2 'not expected: frobnicate' frobnicate
expect 2 'gvshim version: .*not expected: extra' version extra
expect 2 'gvshim profile: a command \(check\) is required' profile
expect 2 'gvshim profile: .*not expected: chek' profile chek
expect 2 'gvshim profile check: FILE is required' profile check
expect 0 'gvshim exec' exec --help
expect 0 'gvshim node canary' node canary --help
expect 2 'gvshim node: a command \(install, uninstall, status, run, retire, canary\) is required' node
expect 2 'gvshim execute-server: .*not expected: .*--port' execute-server --port 1

# runsc-id: the same ids as before (runsc::ContainerId), whatever the id is called.
id_web=$("$GVSHIM" runsc-id --root /run/r web)
expect 0 "^$id_web\$" runsc-id --root=/run/r web
expect 0 '^gv[0-9a-f]{32}$' runsc-id --root /run/r node
expect 0 '^gv[0-9a-f]{32}$' runsc-id --root /run/r version
lines=$("$GVSHIM" runsc-id --root /run/r exec gateway node | grep -Ec '^gv[0-9a-f]{32}$')
if [[ $lines -eq 3 ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: runsc-id of 3 ids printed $lines"; fi
expect 2 'gvshim runsc-id: ID is required' runsc-id --root /run/r
expect 2 '--root or --namespace is required' runsc-id web
expect 2 'excludes' runsc-id --root /run/r --namespace k8s.io web
expect 2 'not expected: --bogus' runsc-id --root /run/r --bogus web
expect 2 'gvshim runsc-id: --root' runsc-id web --root
printf '[runsc]\nroot = "/run/custom"\n' >"$WORK/gvshim.toml"
id_ns=$("$GVSHIM" runsc-id --root /run/custom/k8s.io web)
expect 0 "^$id_ns\$" runsc-id -n k8s.io --config "$WORK/gvshim.toml" web
GVSHIM_CONFIG=$WORK/gvshim.toml expect 0 "^$id_ns\$" runsc-id --namespace k8s.io web

# exec: usage errors are 2 and name the flag; a parsed command line reaches the lookup (125: no service).
expect 2 'gvshim exec: .*--bogus' exec --id x -c 1 --bogus
expect 2 'gvshim exec: .*--timeout' exec --id x -c 1 --timeout
expect 2 'gvshim exec: .*--env' exec --id x -c 1 --env NOEQUALS
expect 2 '--pod NAMESPACE/NAME or --id ID is required' exec -c 1
expect 125 "no Execute service found: cannot read $WORK/none" exec --dir "$WORK/none" --id x -c 'print(1)' --env A=1 --env B=2
expect 125 "cannot read $WORK/none" exec --id x --runtimes --dir="$WORK/none"
GVSHIM_EXECUTE_DIR=$WORK/env-dir expect 125 "cannot read $WORK/env-dir" exec --id x -c 1
expect 2 'unknown language cobol' exec --id x --lang cobol -c 1
expect 125 'no Execute service for id node' exec --dir "$WORK" --id node -c 1

# node and gateway: usage errors name the flag; a value the command refuses is still exit 1.
expect 2 'gvshim node install: .*--bogus' node install --no-kube --bogus=1
expect 2 'gvshim node canary: .*CMD is required' node canary --image=busybox
expect 1 '--install-dir must be an absolute host path' node status --no-kube --install-dir=relative
expect 2 'gvshim gateway: .*--pod-concurrency' gateway --pod-concurrency=0
expect 2 'gvshim gateway: .*--frobnicate' gateway --frobnicate
expect 1 '--listen wants HOST:PORT, got nowhere' gateway --listen=nowhere --dir "$WORK"
# The chart's form (--flag=value) gets past the command line to the settings (here: the token file is missing).
expect 1 "token file $WORK/no-token" gateway --listen=127.0.0.1:0 --dir="$WORK" --token-file="$WORK/no-token" \
  --select-pod=default/gvshim-pool- --timeout-ms=90000 --pod-concurrency=4 --run-rate-limit=3/minute
expect 2 'gvshim node retire: .*--timeout' node retire --daemonset=d --timeout=soon
expect 1 '--canary-timeout must be a number of seconds' node install --no-kube --canary-timeout=2m

echo "gvshim_cli_test: $passed passed, $failed failed"
[[ $failed -eq 0 && $passed -gt 0 ]]
