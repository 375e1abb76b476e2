#!/usr/bin/env bash
# Container start benchmark: N runs (default 10) of `ctr run --rm IMAGE id true` under gvshim
# (io.containerd.gvisor.v1) and under the baseline (containerd's runc shim driving runsc), interleaved, against a
# private containerd. Prints each runtime's median and p90 wall time and the ratio. It measures; it never asserts.
#
#   tests/bench/start.sh [N]
# Env: E2E_BIN_DIR (default build/shim/main)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
N=${1:-10}
BIN_DIR=${E2E_BIN_DIR:-$ROOT/build/shim/main}
NS=bench
IMAGE=localhost/gvshim-test:busybox

DIR=$(mktemp -d /tmp/gvs.XXXX)
trap 'bash "$ROOT/scripts/containerd-down.sh" "$DIR" >/dev/null 2>&1 || true' EXIT
bash "$ROOT/scripts/containerd-up.sh" "$DIR" --bin-dir "$BIN_DIR" 2>/dev/null
# shellcheck disable=SC1091
source "$DIR/env"
bash "$ROOT/scripts/build-image.sh" -a "$GVS_SOCK" -n "$NS" >/dev/null 2>&1

ctr_() { timeout 120 ctr -a "$GVS_SOCK" -n "$NS" "$@"; }
GVISOR=(--runtime io.containerd.gvisor.v1)
BASELINE=(--runtime io.containerd.runc.v2 --runc-binary "$GVS_RUNC_WRAPPER" --runc-root "$GVS_RUNC_ROOT")

# one_run NAME ARGS...: prints the wall time in ms of one `ctr run --rm`, or "fail".
one_run() {
  local id=$1; shift
  local t0 t1
  t0=$(date +%s%N)
  if ctr_ run --rm "$@" "$IMAGE" "$id" true >/dev/null 2>&1; then
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000000))
  else
    ctr_ task delete -f "$id" >/dev/null 2>&1 || true
    ctr_ container delete "$id" >/dev/null 2>&1 || true
    echo fail
  fi
}

# stats: reads ms values on stdin; prints "median p90 n".
stats() { sort -n | awk '{ v[NR] = $1 } END {
  if (NR == 0) { print "- - 0"; exit }
  m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
  p = v[int(0.9 * NR + 0.999)]; if (p == "") p = v[NR]
  print m, p, NR }'; }

# Warm-up (first run pays for page cache and snapshot unpacking), not counted.
one_run warm-g "${GVISOR[@]}" >/dev/null
one_run warm-b "${BASELINE[@]}" >/dev/null

g_times=() b_times=() g_fail=0 b_fail=0
for ((i = 1; i <= N; i++)); do
  # Alternate which runtime goes first so drift on the machine hits both alike.
  if ((i % 2)); then order=(g b); else order=(b g); fi
  for r in "${order[@]}"; do
    if [[ $r == g ]]; then
      t=$(one_run "sg-$i" "${GVISOR[@]}")
      if [[ $t == fail ]]; then g_fail=$((g_fail + 1)); else g_times+=("$t"); fi
    else
      t=$(one_run "sb-$i" "${BASELINE[@]}")
      if [[ $t == fail ]]; then b_fail=$((b_fail + 1)); else b_times+=("$t"); fi
    fi
  done
done

read -r gm gp gn < <(printf '%s\n' "${g_times[@]}" | grep . | stats)
read -r bm bp bn < <(printf '%s\n' "${b_times[@]}" | grep . | stats)
echo "container start: ctr run --rm $IMAGE true, $N runs each, interleaved"
printf '%-34s median %7s ms   p90 %7s ms   ok %s/%s\n' "gvshim (io.containerd.gvisor.v1)" "$gm" "$gp" "$gn" "$N"
printf '%-34s median %7s ms   p90 %7s ms   ok %s/%s\n' "baseline (runc shim + runsc)" "$bm" "$bp" "$bn" "$N"
if [[ $gn -gt 0 && $bn -gt 0 ]]; then
  awk -v g="$gm" -v b="$bm" 'BEGIN { printf "ratio gvshim/baseline (median): %.2f\n", g / b }'
else
  echo "ratio: n/a (failures: gvshim $g_fail, baseline $b_fail)"
fi
