#!/usr/bin/env bash
# Gateway benchmark: HTTP POST /run through `gvshim gateway` against direct gRPC Execute on the same pod, in the same
# run: the latency the gateway adds (p50/p99 of each path, samples interleaved) and the throughput of each at
# concurrency 8 (ratio HTTP / direct). It measures and prints; it never asserts.
#
#   tests/bench/gateway.sh
# Env: E2E_BIN_DIR (default build/shim/main), N (latency samples per path, default 300), TP_SECONDS (default 10),
#      CONCURRENCY (default 8), GAP_MS (idle time before each latency sample, default 50)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN_DIR=${E2E_BIN_DIR:-$ROOT/build/shim/main}
NS=bench
POD=bench-gw

DIR=$(mktemp -d /tmp/gvs.XXXX)
GW_PID=
cleanup() {
  if [[ -n $GW_PID ]]; then kill "$GW_PID" 2>/dev/null || true; fi
  bash "$ROOT/scripts/containerd-down.sh" "$DIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT
bash "$ROOT/scripts/containerd-up.sh" "$DIR" --bin-dir "$BIN_DIR" >/dev/null 2>&1
# shellcheck disable=SC1091
source "$DIR/env"
IMAGE=$(bash "$ROOT/scripts/build-image.sh" --with-python-node -a "$GVS_SOCK" -n "$NS" 2>/dev/null | tail -n 1)

ctr -a "$GVS_SOCK" -n "$NS" run -d --runtime io.containerd.gvisor.v1 --annotation dev.gvshim.execute=true \
  "$IMAGE" "$POD" sh -c 'while :; do sleep 3600 & wait; done' >/dev/null
for _ in $(seq 100); do ls "$GVS_EXECUTE_DIR"/*.sock >/dev/null 2>&1 && break; sleep 0.1; done
SOCK=$(ls "$GVS_EXECUTE_DIR"/*.sock | head -n 1)

TOKEN=bench-$RANDOM$RANDOM
echo "$TOKEN" >"$DIR/token"
env -u SANDBOX_RUN_RATE_LIMIT -u SANDBOX_RUN_PREAUTH_RATE_LIMIT -u SANDBOX_TIMEOUT \
  "$BIN_DIR/gvshim" gateway --listen 127.0.0.1:0 --port-file "$DIR/gw.port" --dir "$GVS_EXECUTE_DIR" \
  --token-file "$DIR/token" --run-rate-limit none --preauth-rate-limit none 2>"$DIR/gateway.log" &
GW_PID=$!
for _ in $(seq 100); do [[ -s $DIR/gw.port ]] && break; sleep 0.1; done
URL=http://127.0.0.1:$(cat "$DIR/gw.port")

/usr/bin/python3 "$ROOT/tests/bench/gateway_bench.py" --socket "$SOCK" --url "$URL" --token "$TOKEN" \
  --gateway-pid "$GW_PID" --n "${N:-300}" --tp-seconds "${TP_SECONDS:-10}" --concurrency "${CONCURRENCY:-8}" \
  --gap-ms "${GAP_MS:-50}"
