#!/usr/bin/env bash
# What an idle pod costs on the host beyond its own processes: the number behind the chart's RuntimeClass
# overhead.podFixed. Starts N idle one-container sandboxes (`sleep`) under gvshim (io.containerd.gvisor.v1) and,
# in the same run, N under containerd's runc shim with runc (no gVisor), all kept running together; for each it
# sums over the shim and every process below it (for gvshim: the runsc sandbox and gofer) the proportional set
# size (Pss, /proc/PID/smaps_rollup) and the CPU time (utime+stime) used during an idle window. Prints medians,
# the difference (what gVisor adds) and the ratio; it measures, never asserts.
#
#   tests/bench/pod_overhead.sh [N] [IDLE_SECONDS]
# Env: E2E_BIN_DIR (default build/shim/main)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN_DIR=${E2E_BIN_DIR:-$ROOT/build/shim/main}
N=${1:-5}
IDLE=${2:-20}
NS=bench
IMAGE=localhost/gvshim-test:busybox
TICK=$(getconf CLK_TCK)

DIR=$(mktemp -d /tmp/gvs.XXXX)
# The baseline's runc keeps its state in DIR; its containers are killed and deleted before containerd goes.
RUNC_ROOT=$DIR/runc-real
cleanup() {
  local id
  for id in $(runc --root "$RUNC_ROOT/$NS" list -q 2>/dev/null); do  # the runc shim appends the namespace
    runc --root "$RUNC_ROOT/$NS" delete --force "$id" >/dev/null 2>&1 || true
  done
  bash "$ROOT/scripts/containerd-down.sh" "$DIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT
bash "$ROOT/scripts/containerd-up.sh" "$DIR" --bin-dir "$BIN_DIR" 2>/dev/null
# shellcheck disable=SC1091
source "$DIR/env"
bash "$ROOT/scripts/build-image.sh" -a "$GVS_SOCK" -n "$NS" >/dev/null 2>&1
ctr_() { timeout 120 ctr -a "$GVS_SOCK" -n "$NS" "$@"; }

# shim_of ID: the pid of the shim serving container ID (argv has our socket and "-id ID", not "start").
shim_of() {
  local d args
  for d in /proc/[0-9]*; do
    args=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline") || continue
    if [[ $args == *"-address $GVS_SOCK"* && $args == *"-id $1 "* && $args != *" start"* ]]; then
      echo "${d#/proc/}"
      return
    fi
  done
}
# tree PID: PID and all its descendants.
tree() {
  local all=("$1") i=0 p c
  while [[ $i -lt ${#all[@]} ]]; do
    p=${all[i]}
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do all+=("$c"); done
    i=$((i + 1))
  done
  echo "${all[@]}"
}
pss_kib() { local s=0 p; for p in "$@"; do s=$((s + $(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0))); done; echo "$s"; }
cpu_ticks() { local s=0 p; for p in "$@"; do s=$((s + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$s"; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

declare -A SHIM
start_all() { # start_all PREFIX RUNTIME_ARGS...
  local prefix=$1 i; shift
  for ((i = 0; i < N; i++)); do
    ctr_ run -d "$@" "$IMAGE" "$prefix$i" sleep 1000000 >/dev/null
    SHIM[$prefix$i]=$(shim_of "$prefix$i")
  done
}
start_all g --runtime io.containerd.gvisor.v1
start_all r --runtime io.containerd.runc.v2 --runc-root "$RUNC_ROOT"

declare -A CPU0 PROCS PCPU0
for id in "${!SHIM[@]}"; do
  PROCS[$id]=$(tree "${SHIM[$id]}")
  # shellcheck disable=SC2086
  CPU0[$id]=$(cpu_ticks ${PROCS[$id]})
done
for p in ${PROCS[g0]}; do PCPU0[$p]=$(cpu_ticks "$p"); done
sleep "$IDLE" # the idle window being measured (not a synchronisation)
for prefix in g r; do
  : >"$DIR/$prefix.pss" >"$DIR/$prefix.cpu" >"$DIR/$prefix.procs"
  for ((i = 0; i < N; i++)); do
    id=$prefix$i
    # shellcheck disable=SC2086
    pss_kib ${PROCS[$id]} >>"$DIR/$prefix.pss"
    # shellcheck disable=SC2086
    echo $(( ($(cpu_ticks ${PROCS[$id]}) - CPU0[$id]) * 1000000 / TICK / IDLE )) >>"$DIR/$prefix.cpu"  # micro-cores
    wc -w <<<"${PROCS[$id]}" >>"$DIR/$prefix.procs"
  done
done
# Where it goes, for the first gvshim sandbox: per process (name from /proc/PID/comm).
echo "breakdown of g0 (Pss KiB, CPU millicores over the window):"
for p in ${PROCS[g0]}; do
  printf '  %-16s %-40.40s %8s KiB %8s mcores\n' "$(cat "/proc/$p/comm" 2>/dev/null || echo '?')" \
    "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | sed 's/--root [^ ]* //; s/--log [^ ]* //')" "$(pss_kib "$p")" \
    "$(awk -v a="${PCPU0[$p]}" -v b="$(cpu_ticks "$p")" -v t="$TICK" -v w="$IDLE" 'BEGIN { printf "%.2f", (b - a) * 1000 / t / w }')"
done
g_pss=$(median <"$DIR/g.pss") r_pss=$(median <"$DIR/r.pss")
g_cpu=$(median <"$DIR/g.cpu") r_cpu=$(median <"$DIR/r.cpu")
echo "idle one-container sandbox, $N of each running together, ${IDLE}s idle window (medians)"
printf '%-44s Pss %8s KiB  CPU %6s millicores  processes %s\n' "gvshim + runsc sandbox/gofer + sleep" "$g_pss" \
  "$(awk -v c="$g_cpu" 'BEGIN { printf "%.2f", c / 1000 }')" "$(median <"$DIR/g.procs")"
printf '%-44s Pss %8s KiB  CPU %6s millicores  processes %s\n' "baseline: containerd-shim-runc-v2 + sleep" "$r_pss" \
  "$(awk -v c="$r_cpu" 'BEGIN { printf "%.2f", c / 1000 }')" "$(median <"$DIR/r.procs")"
awk -v g="$g_pss" -v r="$r_pss" 'BEGIN { printf "gVisor adds %.1f MiB per idle pod (ratio %.1fx)\n", (g - r) / 1024, g / r }'
