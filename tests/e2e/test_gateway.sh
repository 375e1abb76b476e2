#!/usr/bin/env bash
# `gvshim gateway`: RAGFlow's executor-manager API (docs/gateway.md) in front of real pool pods whose snippets run in
# their own gVisor sandboxes. The pool pods are CRI pods (made through containerd's CRI as a kubelet makes them,
# tools/cri_pool.py): pool-a and pool-b in namespace "ragflow", annotated dev.gvshim.execute=true, non-root with a
# read-only root, as the chart's pool; a third opted-in pod, other/stray, is not part of the pool (--select-pod).
# RAGFlow-shaped requests go over HTTP on 127.0.0.1, to a port the gateway picked.
# URL_<name> variables are set by start_gateway (printf -v), which shellcheck cannot follow.
# shellcheck disable=SC2154
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CASES=(python_main_args nodejs_main_args stdout_and_stderr artifacts wall_timeout memory_bomb syntax_error
  network_refused bad_base64_is_422 missing_code_b64_is_422 auth_token auth_not_configured rate_limit
  preauth_rate_limit healthz metrics_count_what_ran selects_only_pool_pods no_available_container
  annotation_selector concurrent_clients pod_removed_mid_request)
e2e_require_root_runsc "${CASES[@]}"
[[ $E2E_RUNTIME == gvisor ]] || { for n in "${CASES[@]}"; do echo "e2e-case: SKIP $E2E_FILE/$n (gvisor only)"; done; exit 0; }
e2e_setup

GVSHIM=$E2E_BIN_DIR/gvshim
CLIENT=$E2E_DIR/tools/ragflow_client.py
CRI_POOL=$E2E_DIR/tools/cri_pool.py
TOKEN=e2e-shared-secret-$RANDOM$RANDOM
SELECT=(--select-pod ragflow/pool-)

# ensure_pool: the pool pods, shared by the cases (containerd-down removes them at the end).
ensure_pool() {
  [[ -f $E2E_WORK/pool-ready ]] && return 0
  command -v node >/dev/null || skip_case "needs the host's node for the python-node image"
  local image p
  image=$("$PY" "$CRI_POOL" images "$GVS_SOCK" "$REPO_ROOT/build/image" | tail -n 1) || fail "image import failed"
  for p in ragflow/pool-a ragflow/pool-b other/stray; do
    "$PY" "$CRI_POOL" run "$GVS_SOCK" "${p%/*}" "${p#*/}" "$image" >"$E2E_WORK/pod-${p#*/}" ||
      fail "CRI pod $p did not start"
  done
  wait_for 60 records_are 3
  touch "$E2E_WORK/pool-ready"
}
records_are() { [[ $(find "$GVS_EXECUTE_DIR" -name '*.json' 2>/dev/null | wc -l) -eq $1 ]]; }

# start_gateway NAME [ENV=VALUE...] -- [gateway flags...]: starts a gateway on 127.0.0.1 (port chosen by the
# kernel); sets URL_<NAME>; stops it (by pid) when the case ends. Its log is $E2E_WORK/gateway-NAME.log.
start_gateway() {
  local name=$1; shift
  local envs=()
  while [[ $# -gt 0 && $1 != -- ]]; do envs+=("$1"); shift; done
  [[ ${1:-} == -- ]] && shift
  local port_file=$E2E_WORK/gateway-$name.port
  rm -f "$port_file"
  env -u SANDBOX_EXECUTOR_MANAGER_API_TOKEN -u SANDBOX_EXECUTOR_MANAGER_ALLOW_UNAUTHENTICATED \
    -u SANDBOX_RUN_RATE_LIMIT -u SANDBOX_RUN_PREAUTH_RATE_LIMIT -u SANDBOX_TIMEOUT "${envs[@]}" \
    "$GVSHIM" gateway --listen 127.0.0.1:0 --port-file "$port_file" --dir "$GVS_EXECUTE_DIR" \
    --health-interval-ms 200 "$@" 2>"$E2E_WORK/gateway-$name.log" &
  local pid=$!
  defer kill "$pid"
  echo "$pid" >"$E2E_WORK/gateway-$name.pid"
  wait_for 20 test -s "$port_file"
  printf -v "URL_$name" 'http://127.0.0.1:%s' "$(cat "$port_file")"
}

# A gateway with the token and no rate limits, for the functional cases; waits until both pods are ready.
main_gateway() {
  ensure_pool
  start_gateway main -- "${SELECT[@]}" --token-file "$E2E_WORK/token" --run-rate-limit none \
    --preauth-rate-limit none --timeout-ms 30000
  wait_for 30 ready_pods "$URL_main" 2
}
ready_pods() {
  local m
  m=$("$PY" "$CLIENT" get "$1" /metrics | jq -r .body)
  grep -qx "gvshim_gateway_pods{state=\"ready\"} $2" <<<"$m"
}
echo "$TOKEN" >"$E2E_WORK/token"

# run URL [client flags...]: one POST /run with the token; prints the client's JSON line.
run() { local url=$1; shift; "$PY" "$CLIENT" run "$url" --token "$TOKEN" "$@"; }
field() { jq -c "$2" <<<"$1"; }
field_raw() { jq -r "$2" <<<"$1"; }

python_main_args() {
  main_gateway
  local r
  r=$(run "$URL_main" --code $'def main(a, b):\n    return {"sum": a + b, "kind": type(a).__name__}' --args '{"a": 2, "b": 40}')
  assert_eq 200 "$(field "$r" .http)"
  assert_eq success "$(field_raw "$r" .body.status)"
  assert_eq 0 "$(field "$r" .body.exit_code)"
  assert_eq '{"present":true,"value":{"sum":42,"kind":"int"},"type":"json"}' "$(field "$r" .body.result)"
  assert_eq number "$(field_raw "$r" '.body.time_used_ms | type')"
  assert_eq '["status","stdout","stderr","exit_code","detail","time_used_ms","memory_used_kb","resource_limit_type","unauthorized_access_type","runtime_error_type","artifacts","result"]' \
    "$(jq -c '.body | keys_unsorted' <<<"$r")" "every CodeExecutionResult field, in RAGFlow's order"
  [[ $(field_raw "$r" .pod) == ragflow/pool-[ab] ]] || fail "no X-Gvshim-Pod naming a pool pod: $r"
  # language defaults to python; unknown keys are ignored
  r=$("$PY" "$CLIENT" run "$URL_main" --token "$TOKEN" --no-lang --body \
    "{\"code_b64\": \"$(printf 'print(6 * 7)' | base64 -w0)\", \"unknown\": 1}")
  assert_eq success "$(field_raw "$r" .body.status)"
  assert_eq 42 "$(field_raw "$r" .body.stdout | tr -d '\n')"
}

nodejs_main_args() {
  main_gateway
  local r
  r=$(run "$URL_main" --lang nodejs --code 'function main(args) { return {x: args.a * 2, s: args.s.toUpperCase()}; }' \
    --args '{"a": 21, "s": "hi"}')
  assert_eq success "$(field_raw "$r" .body.status)" "$r"
  assert_eq '{"x":42,"s":"HI"}' "$(field "$r" .body.result.value)"
  r=$(run "$URL_main" --lang nodejs --code 'async function main(args) { await new Promise(r => setTimeout(r, 10)); return [args.n]; }' \
    --args '{"n": 7}')
  assert_eq '[7]' "$(field "$r" .body.result.value)" "async main"
}

stdout_and_stderr() {
  main_gateway
  local r
  r=$(run "$URL_main" --code $'import sys\nprint("to stdout")\nprint("to stderr", file=sys.stderr)')
  assert_eq success "$(field_raw "$r" .body.status)"
  assert_eq "to stdout" "$(field_raw "$r" .body.stdout | tr -d '\n')"
  assert_eq "to stderr" "$(field_raw "$r" .body.stderr | tr -d '\n')"
  assert_eq null "$(field "$r" .body.result)" "a script without main has no result"
  r=$(run "$URL_main" --lang nodejs --code 'console.log("js out"); console.error("js err")')
  assert_eq "js out" "$(field_raw "$r" .body.stdout | tr -d '\n')"
  assert_eq "js err" "$(field_raw "$r" .body.stderr | tr -d '\n')"
}

artifacts() {
  main_gateway
  local r
  r=$(run "$URL_main" --code $'import os\nos.makedirs("artifacts", exist_ok=True)\nopen("artifacts/table.csv", "w").write("a,b\\n1,2\\n")\nopen("artifacts/notes.txt", "w").write("not returned")\nprint("ok")')
  assert_eq success "$(field_raw "$r" .body.status)" "$r"
  assert_eq 1 "$(field "$r" '.body.artifacts | length')" "only allowed types are returned: $r"
  assert_eq '"table.csv" "text/csv" 8' "$(jq -r '.body.artifacts[0] | "\"\(.name)\" \"\(.mime_type)\" \(.size)"' <<<"$r")"
  assert_eq $'a,b\n1,2' "$(field_raw "$r" .body.artifacts[0].content_b64 | base64 -d)"
}

limits_gateway() {
  ensure_pool
  # SANDBOX_TIMEOUT is RAGFlow's setting for the wall-clock limit.
  start_gateway limits SANDBOX_TIMEOUT=2s -- "${SELECT[@]}" --token-file "$E2E_WORK/token" --run-rate-limit none \
    --preauth-rate-limit none --memory-bytes 134217728
  wait_for 30 ready_pods "$URL_limits" 2
}

wall_timeout() {
  limits_gateway
  local r
  r=$(run "$URL_limits" --code $'print("started", flush=True)\nwhile True:\n    pass')
  assert_eq 200 "$(field "$r" .http)"
  assert_eq resource_limit_exceeded "$(field_raw "$r" .body.status)" "$r"
  assert_eq time "$(field_raw "$r" .body.resource_limit_type)"
  assert_eq -124 "$(field "$r" .body.exit_code)"
  assert_eq "Execution timeout" "$(field_raw "$r" .body.stderr)"
  assert_contains "$(field_raw "$r" .body.stdout)" "started" "the output before the timeout is kept"
  r=$(run "$URL_limits" --lang nodejs --code 'while (true) {}')
  assert_eq -124 "$(field "$r" .body.exit_code)" "js loop: $r"
}

memory_bomb() {
  limits_gateway
  local r
  r=$(run "$URL_limits" --code $'x = bytearray(1 << 30)\nprint(len(x))')
  assert_eq resource_limit_exceeded "$(field_raw "$r" .body.status)" "$r"
  assert_eq memory "$(field_raw "$r" .body.resource_limit_type)"
  r=$(run "$URL_limits" --lang nodejs --code 'let a = []; while (true) a.push(new Array(1e6).fill(1.5));')
  assert_eq resource_limit_exceeded "$(field_raw "$r" .body.status)" "js: $r"
  assert_eq memory "$(field_raw "$r" .body.resource_limit_type)"
  # The pods survived it.
  assert_eq success "$(field_raw "$(run "$URL_limits" --code 'print(1)')" .body.status)"
}

syntax_error() {
  main_gateway
  local r
  r=$(run "$URL_main" --code 'def main(:')
  assert_eq 200 "$(field "$r" .http)"
  assert_eq program_error "$(field_raw "$r" .body.status)" "$r"
  assert_eq nonzero_exit "$(field_raw "$r" .body.runtime_error_type)"
  assert_contains "$(field_raw "$r" .body.stderr)" "SyntaxError"
  [[ $(field "$r" .body.exit_code) != 0 ]] || fail "exit code 0 for a syntax error"
  r=$(run "$URL_main" --lang nodejs --code 'function main( {')
  assert_eq program_error "$(field_raw "$r" .body.status)" "js: $r"
}

network_refused() {
  main_gateway
  local r
  # 192.0.2.1 is TEST-NET-1 (never routed); the snippet's sandbox has no network at all.
  r=$(run "$URL_main" --code $'import socket\nsocket.create_connection(("192.0.2.1", 80), timeout=5)')
  assert_eq unauthorized_access "$(field_raw "$r" .body.status)" "$r"
  assert_eq network_access "$(field_raw "$r" .body.unauthorized_access_type)"
}

bad_base64_is_422() {
  main_gateway
  local r
  r=$(run "$URL_main" --code-b64 'cHJpbnQoMSk')  # "print(1)" without its padding
  assert_eq 422 "$(field "$r" .http)"
  assert_eq '["body","code_b64"]' "$(field "$r" '.body.detail[0].loc')"
  assert_eq value_error "$(field_raw "$r" '.body.detail[0].type')"
  assert_eq "Value error, Invalid base64 encoding: Incorrect padding" "$(field_raw "$r" '.body.detail[0].msg')"
  r=$(run "$URL_main" --code-b64 'cHJp bnQoMSk=')
  assert_eq 422 "$(field "$r" .http)"
  r=$(run "$URL_main" --code 'print(1)' --lang ruby)
  assert_eq 422 "$(field "$r" .http)"
  assert_eq enum "$(field_raw "$r" '.body.detail[0].type')"
}

missing_code_b64_is_422() {
  main_gateway
  local r
  r=$(run "$URL_main" --args '{}')
  assert_eq 422 "$(field "$r" .http)"
  assert_eq '{"type":"missing","loc":["body","code_b64"],"msg":"Field required"}' \
    "$(jq -c '.body.detail[0] | {type, loc, msg}' <<<"$r")"
  r=$(run "$URL_main" --body '{"code_b64": ')
  assert_eq 422 "$(field "$r" .http)"
  assert_eq json_invalid "$(field_raw "$r" '.body.detail[0].type')"
}

auth_token() {
  ensure_pool
  # The token from RAGFlow's environment variable.
  start_gateway tok "SANDBOX_EXECUTOR_MANAGER_API_TOKEN=$TOKEN" -- "${SELECT[@]}" --run-rate-limit none --preauth-rate-limit none
  wait_for 30 ready_pods "$URL_tok" 2
  local code
  code=$(printf 'def main():\n    return 42\n')
  assert_eq 401 "$("$PY" "$CLIENT" run "$URL_tok" --code "$code" | jq .http)" "no token"
  assert_eq '{"detail":"Missing or invalid sandbox executor API token"}' \
    "$("$PY" "$CLIENT" run "$URL_tok" --code "$code" | jq -c .body)"
  assert_eq 401 "$("$PY" "$CLIENT" run "$URL_tok" --token not-the-token --code "$code" | jq .http)" "wrong Bearer"
  assert_eq 401 "$("$PY" "$CLIENT" run "$URL_tok" --x-token also-wrong --code "$code" | jq .http)" "wrong X-Sandbox-Token"
  local r
  r=$("$PY" "$CLIENT" run "$URL_tok" --token "$TOKEN" --code "$code")
  assert_eq 200 "$(field "$r" .http)" "Bearer"
  assert_eq 42 "$(field "$r" .body.result.value)"
  assert_eq 200 "$("$PY" "$CLIENT" run "$URL_tok" --x-token "$TOKEN" --code "$code" | jq .http)" "X-Sandbox-Token"
  assert_eq 200 "$("$PY" "$CLIENT" get "$URL_tok" /healthz | jq .http)" "/healthz needs no token"
  assert_eq 200 "$("$PY" "$CLIENT" get "$URL_tok" / | jq .http)" "/ needs no token"
  assert_eq 200 "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "{\"code_b64\":\"$(printf 'print(1)' | base64 -w0)\"}" "$URL_tok/run")" "curl, as in the README"
  grep -q '"code":401' "$E2E_WORK/gateway-tok.log" || fail "no access-log line for the 401s"
}

auth_not_configured() {
  ensure_pool
  start_gateway closed -- "${SELECT[@]}" --run-rate-limit none --preauth-rate-limit none
  local r
  r=$("$PY" "$CLIENT" run "$URL_closed" --code 'print(1)')
  assert_eq 503 "$(field "$r" .http)" "no token configured: fail closed"
  assert_contains "$(field_raw "$r" .body.detail)" SANDBOX_EXECUTOR_MANAGER_API_TOKEN
  start_gateway open SANDBOX_EXECUTOR_MANAGER_ALLOW_UNAUTHENTICATED=true -- "${SELECT[@]}" --run-rate-limit none --preauth-rate-limit none
  wait_for 30 ready_pods "$URL_open" 2
  r=$("$PY" "$CLIENT" run "$URL_open" --code 'print(1)')
  assert_eq 200 "$(field "$r" .http)" "explicitly opened"
  assert_eq success "$(field_raw "$r" .body.status)"
  grep -q "SECURITY WARNING" "$E2E_WORK/gateway-open.log" || fail "no warning for the open gateway"
}

rate_limit() {
  ensure_pool
  start_gateway rl "SANDBOX_RUN_RATE_LIMIT=3/minute" -- "${SELECT[@]}" --token-file "$E2E_WORK/token" --preauth-rate-limit none
  wait_for 30 ready_pods "$URL_rl" 2
  local i r
  # Unauthenticated and invalid requests do not use up the quota...
  for i in 1 2 3 4 5; do assert_eq 401 "$("$PY" "$CLIENT" run "$URL_rl" --code 'print(1)' | jq .http)"; done
  assert_eq 422 "$(run "$URL_rl" --code-b64 '!!' | jq .http)"
  # ...three executions do, the fourth is refused.
  for i in 1 2 3; do assert_eq 200 "$(run "$URL_rl" --code 'print(1)' | jq .http)" "request $i"; done
  r=$(run "$URL_rl" --code 'print(1)')
  assert_eq 429 "$(field "$r" .http)"
  assert_eq -429 "$(field "$r" .body.exit_code)"
  assert_eq program_runner_error "$(field_raw "$r" .body.status)"
  assert_eq "Too many requests, please try again later" "$(field_raw "$r" .body.detail)"
}

preauth_rate_limit() {
  ensure_pool
  start_gateway pre "SANDBOX_RUN_PREAUTH_RATE_LIMIT=3/minute" -- "${SELECT[@]}" --token-file "$E2E_WORK/token" --run-rate-limit none
  local i r
  for i in 1 2 3; do assert_eq 401 "$("$PY" "$CLIENT" run "$URL_pre" --x-token wrong --code 'print(1)' | jq .http)"; done
  r=$("$PY" "$CLIENT" run "$URL_pre" --x-token wrong --code 'print(1)')
  assert_eq 429 "$(field "$r" .http)" "a flood of bad tokens is throttled before authentication"
  assert_eq -429 "$(field "$r" .body.exit_code)"
  assert_eq 200 "$("$PY" "$CLIENT" get "$URL_pre" /healthz | jq .http)"
}

healthz() {
  ensure_pool
  start_gateway hz -- "${SELECT[@]}" --token-file "$E2E_WORK/token"
  local r
  r=$("$PY" "$CLIENT" get "$URL_hz" /healthz)
  assert_eq '{"http":200,"body":{"status":"ok"}}' "$(jq -c . <<<"$r")"
  assert_eq '{"http":200,"body":{"status":"ok"}}' "$("$PY" "$CLIENT" get "$URL_hz" / | jq -c .)"
  assert_eq 404 "$("$PY" "$CLIENT" get "$URL_hz" /nope | jq .http)"
  assert_eq 405 "$("$PY" "$CLIENT" get "$URL_hz" /run | jq .http)"
  wait_for 30 ready_pods "$URL_hz" 2
  assert_eq 200 "$("$PY" "$CLIENT" get "$URL_hz" /readyz | jq .http)"
}

metrics_count_what_ran() {
  ensure_pool
  start_gateway met -- "${SELECT[@]}" --token-file "$E2E_WORK/token" --run-rate-limit none --preauth-rate-limit none
  wait_for 30 ready_pods "$URL_met" 2
  local i m
  for i in 1 2 3; do run "$URL_met" --code 'print(1)' >/dev/null; done
  run "$URL_met" --lang nodejs --code 'console.log(1)' >/dev/null
  run "$URL_met" --code 'def main(:' >/dev/null
  "$PY" "$CLIENT" run "$URL_met" --code 'print(1)' >/dev/null  # 401
  m=$("$PY" "$CLIENT" get "$URL_met" /metrics | jq -r .body)
  assert_contains "$m" 'gvshim_gateway_executions_total{language="python",status="success"} 3'
  assert_contains "$m" 'gvshim_gateway_executions_total{language="nodejs",status="success"} 1'
  assert_contains "$m" 'gvshim_gateway_executions_total{language="python",status="program_error"} 1'
  assert_contains "$m" 'gvshim_gateway_execution_seconds_count{language="python"} 4'
  assert_contains "$m" 'gvshim_gateway_rejections_total{reason="auth"} 1'
  assert_contains "$m" 'gvshim_gateway_requests_total{route="/run",code="200"} 5'
  assert_contains "$m" 'gvshim_gateway_queue_depth 0'
  assert_contains "$m" 'gvshim_gateway_pods{state="ready"} 2'
}

selects_only_pool_pods() {
  main_gateway
  records_are 3 || fail "expected the records of 3 opted-in pods"
  local m i r
  m=$("$PY" "$CLIENT" get "$URL_main" /metrics | jq -r .body)
  assert_contains "$m" 'gvshim_gateway_pods{state="known"} 2' "other/stray is not a pool pod"
  for i in 1 2 3 4 5 6; do
    r=$(run "$URL_main" --code 'print(1)')
    [[ $(field_raw "$r" .pod) != other/stray ]] || fail "a request went to a pod outside the pool"
  done
  grep -q 'not using other/stray' "$E2E_WORK/gateway-main.log" || fail "no log line naming the pod left out"
}

no_available_container() {
  ensure_pool
  start_gateway none -- --token-file "$E2E_WORK/token" --select-pod ragflow/no-such-pod- --queue-timeout-ms 300
  local r
  r=$(run "$URL_none" --code 'print(1)')
  assert_eq 200 "$(field "$r" .http)"
  assert_eq '{"status":"program_runner_error","stderr":"Container pool is busy","exit_code":-10,"detail":"no_available_container"}' \
    "$(jq -c '.body | {status, stderr, exit_code, detail}' <<<"$r")"
  assert_eq 503 "$("$PY" "$CLIENT" get "$URL_none" /readyz | jq .http)"
}

annotation_selector() {
  ensure_pool
  # Each pool pod carries dev.gvshim.pool=<its name> (tools/cri_pool.py), which its discovery record repeats.
  start_gateway ann -- --token-file "$E2E_WORK/token" --select-annotation dev.gvshim.pool=pool-b --queue-timeout-ms 3000
  local r i
  for i in 1 2 3 4; do
    r=$(run "$URL_ann" --code 'print(1)')
    assert_eq success "$(field_raw "$r" .body.status)" "request $i: $r"
    assert_eq ragflow/pool-b "$(field_raw "$r" .pod)" "request $i went to a pod the selector does not name"
  done
  # A value no pod carries selects nothing: RAGFlow's "no available container", never another pod.
  start_gateway none -- --token-file "$E2E_WORK/token" --select-annotation dev.gvshim.pool=nobody --queue-timeout-ms 300
  r=$(run "$URL_none" --code 'print(1)')
  assert_eq -10 "$(field "$r" .body.exit_code)" "$r"
}

concurrent_clients() {
  main_gateway
  local r
  r=$("$PY" "$CLIENT" load "$URL_main" --token "$TOKEN" --clients 8 --seconds 10)
  e2e_log "load: $(jq -c '{requests, by_language, pods, failures: (.failures | length)}' <<<"$r")"
  assert_eq 0 "$(field "$r" '.failures | length')" "failed requests: $(field "$r" .failures)"
  [[ $(field "$r" .requests) -ge 16 ]] || fail "too few requests completed: $r"
  assert_eq 2 "$(field "$r" '.pods | length')" "the load is spread over both pods: $r"
}

pod_removed_mid_request() {
  main_gateway
  local out=$E2E_WORK/long.json
  # A snippet that runs until its pod goes away.
  run "$URL_main" --code $'import time\nprint("started", flush=True)\ntime.sleep(25)' >"$out" &
  local cpid=$!
  defer kill "$cpid"
  wait_for 20 busy_pod
  local victim
  victim=$(busy_pod)
  e2e_log "removing $victim while it runs a snippet"
  # What deleting the pod does: StopPodSandbox (its containers killed) then RemovePodSandbox.
  "$PY" "$CRI_POOL" remove "$GVS_SOCK" "$(cat "$E2E_WORK/pod-${victim#*/}")" || fail "removing $victim failed"
  wait "$cpid" || fail "the client of the interrupted request failed"
  local r
  r=$(cat "$out")
  assert_eq 200 "$(field "$r" .http)" "$r"
  assert_eq program_runner_error "$(field_raw "$r" .body.status)" "$r"
  assert_eq -3 "$(field "$r" .body.exit_code)"
  # The next requests go to the other pod and succeed.
  local i
  for i in 1 2 3 4; do
    r=$(run "$URL_main" --code 'print("after")')
    assert_eq success "$(field_raw "$r" .body.status)" "request $i after the removal: $r"
    [[ $(field_raw "$r" .pod) != "$victim" ]] || fail "request $i went to the removed pod"
  done
  wait_for 20 ready_pods "$URL_main" 1
  rm -f "$E2E_WORK/pool-ready"
}
# busy_pod: prints the pod that has a snippet in flight (from /metrics); fails when there is none.
busy_pod() {
  "$PY" "$CLIENT" get "$URL_main" /metrics | jq -r .body |
    sed -n 's/^gvshim_gateway_pod_inflight{pod="\(.*\)"} 1$/\1/p' | grep .
}

e2e_run_cases "${CASES[@]}"
# The pool pods go the way Kubernetes removes them; whatever they leave is then a leak reported by the teardown.
for f in "$E2E_WORK"/pod-*; do
  [[ -f $f ]] || continue
  "$PY" "$CRI_POOL" remove "$GVS_SOCK" "$(cat "$f")" >/dev/null 2>&1 || true
done
for _ in $(seq 300); do [[ -z $(our_shim_pids) ]] && break; sleep 0.1; done
