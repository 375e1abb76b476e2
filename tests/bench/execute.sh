#!/usr/bin/env bash
# Execute benchmark, through the real shim. For each runsc configuration: warm and back-to-back Execute latency
# (p50/p99) of a Python main(a, b) and a JS main next to `runsc exec` of the same snippet into the same sandbox
# (what `ctr task exec` does), in the same run; throughput at concurrency 1/4/8 with the sandbox's CPU time per
# execution; cold start (container running -> first answer, eager and lazy start); and, when SOAK > 0, the RSS and
# fd count of the shim and the pod's Execute server before and after many executions. Ends with one table.
# It measures and prints; it never asserts.
#
#   tests/bench/execute.sh
# Env: CONFIGS (default "new:default new:ptrace old:ptrace": runsc 0.0~20240729 with its default platform (systrap)
#      and with ptrace, and 0.0~20221219 with ptrace, which runs snippets only in weak isolation),
#      E2E_BIN_DIR (default build/shim/main), N (latency samples, default 200), BASELINE_N (default 20),
#      SOAK (executions for the RSS/fd check, default 0 = skipped), TP_SECONDS (per concurrency level, default 10),
#      GAP_MS (idle time before each warm-latency request, default 200), COLD_REPS (default 7)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN_DIR=${E2E_BIN_DIR:-$ROOT/build/shim/main}
CONFIGS=${CONFIGS:-"new:default new:ptrace old:ptrace"}
NS=bench
POD=bench-exec
OUT=$(mktemp -d /tmp/gvbench.XXXX)
DIR=

cleanup() {
  if [[ -n $DIR ]]; then bash "$ROOT/scripts/containerd-down.sh" "$DIR" >/dev/null 2>&1 || true; fi
  rm -rf "$OUT"
}
trap cleanup EXIT

run_config() {
  local runsc=$1 platform=$2 tag=$3
  DIR=$(mktemp -d /tmp/gvs.XXXX)
  GVSHIM_RUNSC=$runsc GVSHIM_RUNSC_PLATFORM=$([[ $platform == default ]] || echo "$platform") \
    bash "$ROOT/scripts/containerd-up.sh" "$DIR" --bin-dir "$BIN_DIR" >/dev/null 2>&1
  # shellcheck disable=SC1091
  source "$DIR/env"
  if "$GVS_RUNSC" --version | grep 20221219 >/dev/null; then  # no -q (SIGPIPE under pipefail)
    sed -i 's|^\[execute\]$|[execute]\nallow_weak_isolation = true|' "$GVS_SHIM_CONFIG"
  fi
  echo
  echo "=== $tag: $("$GVS_RUNSC" --version | head -n 1), platform $platform"
  local image
  image=$(bash "$ROOT/scripts/build-image.sh" --with-python-node -a "$GVS_SOCK" -n "$NS" 2>/dev/null | tail -n 1)
  ctr -a "$GVS_SOCK" -n "$NS" run -d --runtime io.containerd.gvisor.v1 --annotation dev.gvshim.execute=true \
    "$image" "$POD" sh -c 'while :; do sleep 3600 & wait; done' >/dev/null
  for _ in $(seq 100); do ls "$GVS_EXECUTE_DIR"/*.sock >/dev/null 2>&1 && break; sleep 0.1; done
  local sock shim_pid server_pid sandbox_pid
  sock=$(ls "$GVS_EXECUTE_DIR"/*.sock | head -n 1)
  shim_pid=$(cat "$GVS_STATE/io.containerd.runtime.v2.task/$NS/$POD/shim.pid")
  server_pid=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["server_pid"])' "${sock%.sock}.json")
  sandbox_pid=$(ctr -a "$GVS_SOCK" -n "$NS" task ls | awk -v pod="$POD" '$1 == pod {print $2}')
  /usr/bin/python3 "$ROOT/tests/bench/execute_bench.py" --socket "$sock" --shim-pid "$shim_pid" \
    --server-pid "$server_pid" --sandbox-pid "${sandbox_pid:-0}" --ctr "ctr -a $GVS_SOCK -n $NS" --pod "$POD" \
    --n "${N:-200}" --baseline-n "${BASELINE_N:-20}" --soak "${SOAK:-0}" --tp-seconds "${TP_SECONDS:-10}" \
    --gap-ms "${GAP_MS:-200}" --summary "$OUT/$tag.run.json"
  ctr -a "$GVS_SOCK" -n "$NS" task kill -s SIGKILL "$POD" >/dev/null 2>&1 || true
  /usr/bin/python3 "$ROOT/tests/bench/execute_cold.py" --ctr "ctr -a $GVS_SOCK -n $NS" --image "$image" \
    --execute-dir "$GVS_EXECUTE_DIR" --config "$GVS_SHIM_CONFIG" --reps "${COLD_REPS:-7}" --summary "$OUT/$tag.cold.json"
  bash "$ROOT/scripts/containerd-down.sh" "$DIR" >/dev/null 2>&1 || true
  DIR=
}

for c in $CONFIGS; do
  run_config "${c%%:*}" "${c#*:}" "${c/:/-}"
done

echo
echo "Summary (medians in ms; speed-up = runsc exec p50 / Execute p50; this machine: $(nproc) cores," \
  "load $(cut -d' ' -f1-3 /proc/loadavg))"
# shellcheck disable=SC2086 # CONFIGS is a list of words
/usr/bin/python3 - "$OUT" $CONFIGS <<'PY'
import json, os, sys
out = sys.argv[1]
def f(v, fmt="%.1f"):
    return "n/a" if v is None else fmt % v
print("| runsc, platform | Python warm p50 (×) | Python back-to-back p50 (×) | JS warm p50 (×) | JS back-to-back p50 (×) "
      "| runs/s at 1 / 4 / 8 | sandbox CPU per run at 8 | cold start eager / lazy, Python | cold start eager / lazy, JS "
      "| `ctr run -d` eager / lazy | `runsc exec` Python / JS |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for c in sys.argv[2:]:
    tag = c.replace(":", "-")
    try:
        r = json.load(open(os.path.join(out, tag + ".run.json")))
        k = json.load(open(os.path.join(out, tag + ".cold.json")))
    except (OSError, ValueError):
        print("| %s | (no result) |" % c)
        continue
    py, js = r["python"], r["javascript"]
    row = ["%s" % c,
           "%s (%.1f×)" % (f(py["warm_p50"]), py["runsc_exec_p50"] / py["warm_p50"]),
           "%s (%.1f×)" % (f(py["b2b_p50"]), py["runsc_exec_p50"] / py["b2b_p50"]),
           "%s (%.1f×)" % (f(js["warm_p50"]), js["runsc_exec_p50"] / js["warm_p50"]),
           "%s (%.1f×)" % (f(js["b2b_p50"]), js["runsc_exec_p50"] / js["b2b_p50"]),
           "%s / %s / %s" % (f(r["tput_1"]), f(r["tput_4"]), f(r["tput_8"])),
           f(r.get("cpu_8")),
           "%s / %s" % (f(k.get("eager_python"), "%.0f"), f(k.get("lazy_python"), "%.0f")),
           "%s / %s" % (f(k.get("eager_javascript"), "%.0f"), f(k.get("lazy_javascript"), "%.0f")),
           "%s / %s" % (f(k.get("start_eager_python"), "%.0f"), f(k.get("start_lazy_python"), "%.0f")),
           "%s / %s" % (f(py["runsc_exec_p50"]), f(js["runsc_exec_p50"]))]
    print("| " + " | ".join(row) + " |")
PY
