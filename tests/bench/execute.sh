#!/usr/bin/env bash
# Execute benchmark, through the real shim: warm Execute latency (p50/p99) of a Python main(a, b) and a JS main,
# next to `runsc exec` of the same snippet into the same sandbox (what `ctr task exec` does) in the same run;
# throughput at concurrency 1/4/8; the RSS and fd count of the shim and of the pod's Execute server before and after
# many executions.
# It measures and prints; it never asserts.
#
#   tests/bench/execute.sh
# Env: E2E_BIN_DIR (default build/shim/main), N (latency samples, default 200), BASELINE_N (default 20),
#      SOAK (executions for the RSS/fd check, default 10000), TP_SECONDS (per concurrency level, default 10),
#      GAP_MS (idle time before each warm-latency request, default 200)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN_DIR=${E2E_BIN_DIR:-$ROOT/build/shim/main}
NS=bench
POD=bench-exec

DIR=$(mktemp -d /tmp/gvs.XXXX)
trap 'bash "$ROOT/scripts/containerd-down.sh" "$DIR" >/dev/null 2>&1 || true' EXIT
bash "$ROOT/scripts/containerd-up.sh" "$DIR" --bin-dir "$BIN_DIR" >/dev/null 2>&1
# shellcheck disable=SC1091
source "$DIR/env"
IMAGE=$(bash "$ROOT/scripts/build-image.sh" --with-python-node -a "$GVS_SOCK" -n "$NS" 2>/dev/null | tail -n 1)

ctr -a "$GVS_SOCK" -n "$NS" run -d --runtime io.containerd.gvisor.v1 --annotation dev.gvshim.execute=true \
  "$IMAGE" "$POD" sh -c 'while :; do sleep 3600 & wait; done' >/dev/null
for _ in $(seq 100); do ls "$GVS_EXECUTE_DIR"/*.sock >/dev/null 2>&1 && break; sleep 0.1; done
SOCK=$(ls "$GVS_EXECUTE_DIR"/*.sock | head -n 1)
SHIM_PID=$(cat "$GVS_STATE/io.containerd.runtime.v2.task/$NS/$POD/shim.pid")
# The pod's Execute server process (it serves the socket and runs the runners).
SERVER_PID=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["server_pid"])' "${SOCK%.sock}.json")

# The sandbox process (runsc's, in the cgroup whose CPU time the bench reads).
SANDBOX_PID=$(ctr -a "$GVS_SOCK" -n "$NS" task ls | awk -v pod="$POD" '$1 == pod {print $2}')

/usr/bin/python3 "$ROOT/tests/bench/execute_bench.py" --socket "$SOCK" --shim-pid "$SHIM_PID" --server-pid "$SERVER_PID" \
  --sandbox-pid "${SANDBOX_PID:-0}" \
  --ctr "ctr -a $GVS_SOCK -n $NS" --pod "$POD" --n "${N:-200}" --baseline-n "${BASELINE_N:-20}" \
  --soak "${SOAK:-10000}" --tp-seconds "${TP_SECONDS:-10}" --gap-ms "${GAP_MS:-200}"
