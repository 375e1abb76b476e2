#!/usr/bin/env bash
# Shim footprint: starts one long-running container under gvshim (io.containerd.gvisor.v1) and one under the
# baseline (containerd's runc shim driving runsc), then reads each shim's VmRSS and thread count from /proc.
# Prints both and the ratio; it measures, never asserts.
#
#   tests/bench/shim_rss.sh
# Env: E2E_BIN_DIR (default build/shim/main)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
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

# shim_pid ID: the bundle's shim.pid, else the process whose argv carries "-id ID" and our socket.
shim_pid() {
  local f=$GVS_STATE/io.containerd.runtime.v2.task/$NS/$1/shim.pid d args
  if [[ -s $f ]]; then cat "$f"; return; fi
  for d in /proc/[0-9]*; do
    args=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline") || continue
    if [[ $args == *"-address $GVS_SOCK"* && $args == *"-id $1 "* && $args != *" start"* ]]; then
      echo "${d#/proc/}"
      return
    fi
  done
}

# measure NAME ID RUNTIME_ARGS...: starts ID detached and prints "rss_kib threads" of its shim (or "- -").
measure() {
  local id=$1; shift
  if ! ctr_ run -d "$@" "$IMAGE" "$id" sleep 100000 >/dev/null 2>&1; then
    echo "- -"
    return
  fi
  local pid
  pid=$(shim_pid "$id")
  if [[ -z $pid || ! -r /proc/$pid/status ]]; then
    echo "- -"
    return
  fi
  awk '/^VmRSS:/ { r = $2 } /^Threads:/ { t = $2 } END { print r, t }' "/proc/$pid/status"
}

read -r g_rss g_thr < <(measure rss-g --runtime io.containerd.gvisor.v1)
read -r b_rss b_thr < <(measure rss-b --runtime io.containerd.runc.v2 --runc-binary "$GVS_RUNC_WRAPPER" \
  --runc-root "$GVS_RUNC_ROOT")

echo "shim footprint with one running container"
printf '%-34s VmRSS %8s KiB   threads %s\n' "gvshim (containerd-shim-gvisor-v1)" "$g_rss" "$g_thr"
printf '%-34s VmRSS %8s KiB   threads %s\n' "baseline (containerd-shim-runc-v2)" "$b_rss" "$b_thr"
if [[ $g_rss != - && $b_rss != - ]]; then
  awk -v g="$g_rss" -v b="$b_rss" 'BEGIN { printf "ratio gvshim/baseline (VmRSS): %.2f\n", g / b }'
else
  echo "ratio: n/a"
fi
