#!/usr/bin/env bash
# Stops the private containerd started by scripts/containerd-up.sh DIR and removes every trace of it:
# containerd (by pid: SIGTERM, then SIGKILL), runsc containers left in DIR's runsc roots (delete --force),
# shims whose -address is DIR's socket, stray runsc processes using DIR, mounts under DIR, and DIR itself.
#
#   scripts/containerd-down.sh DIR [--keep-dir] [--report-leftovers]
#
# Everything but containerd itself is a leftover: something the user of this containerd (an e2e test file)
# did not clean up. Each one is logged as "containerd-down: leftover: WHAT". With --report-leftovers the script
# still removes them all, then exits 3 if there were any, so the caller can fail for its leak.
set -euo pipefail

if [[ $# -lt 1 ]]; then
  sed -n '2,10p' "${BASH_SOURCE[0]}" >&2
  exit 2
fi
DIR=$1; shift
KEEP_DIR=0 REPORT=0
for arg in "$@"; do
  case $arg in
    --keep-dir) KEEP_DIR=1 ;;
    --report-leftovers) REPORT=1 ;;
    *) echo "containerd-down.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done
if [[ ! -d $DIR ]]; then exit 0; fi
DIR=$(cd "$DIR" && pwd)
if [[ ! -f $DIR/.gvshim-containerd ]]; then
  echo "containerd-down.sh: $DIR was not made by containerd-up.sh; refusing to touch it" >&2
  exit 1
fi
SOCK=$DIR/c.sock
RUNSC=$(sed -n 's/^GVS_RUNSC=//p' "$DIR/env" 2>/dev/null || true)
[[ -n $RUNSC ]] || RUNSC=$(command -v runsc || echo /usr/bin/runsc)
RUNSC_REAL=$(readlink -f "$RUNSC")
log() { echo "containerd-down: $*" >&2; }
LEFTOVERS=0
leftover() {
  LEFTOVERS=$((LEFTOVERS + 1))
  log "leftover: $*"
}

# wait_gone SECONDS PID...: true once none of the pids exists, false at the deadline.
wait_gone() {
  local deadline=$((SECONDS + $1)); shift
  while :; do
    local alive=0 p
    for p in "$@"; do if kill -0 "$p" 2>/dev/null; then alive=1; fi; done
    [[ $alive -eq 0 ]] && return 0
    [[ $SECONDS -ge $deadline ]] && return 1
    sleep 0.1
  done
}

# stop_pids PID...: SIGTERM, then SIGKILL after a bound.
stop_pids() {
  [[ $# -gt 0 ]] || return 0
  kill -TERM "$@" 2>/dev/null || true
  if ! wait_gone 5 "$@"; then
    kill -KILL "$@" 2>/dev/null || true
    wait_gone 5 "$@" || log "pids still alive after SIGKILL: $*"
  fi
}

# Shims started by our containerd: argv has "-address" followed by our socket.
shim_pids() {
  local d p
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [[ $p != "$$" ]] || continue
    if tr '\0' '\n' 2>/dev/null <"$d/cmdline" | grep -qxF -- "$SOCK" &&
      tr '\0' '\n' 2>/dev/null <"$d/cmdline" | grep -qx -- '-\{1,2\}address'; then
      echo "$p"
    fi
  done
}

# runsc processes (sandbox, gofer, CLI) whose arguments name a path inside DIR.
runsc_pids() {
  local d p
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [[ $(readlink "$d/exe" 2>/dev/null || true) == "$RUNSC_REAL" ]] || continue
    if tr '\0' '\n' 2>/dev/null <"$d/cmdline" | grep -qF -- "$DIR/"; then echo "$p"; fi
  done
}

# 1. containerd itself.
if [[ -f $DIR/containerd.pid ]]; then
  pid=$(cat "$DIR/containerd.pid")
  # Only signal it if it is still our containerd (the pid may have been reused).
  if kill -0 "$pid" 2>/dev/null && tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" | grep -qxF "$DIR/config.toml"; then
    log "stopping containerd pid $pid"
    stop_pids "$pid"
  fi
  rm -f "$DIR/containerd.pid"
fi

# 2. runsc containers left in our roots (gvshim: DIR/runsc/<ns>; baseline runc shim: DIR/runc-root/<ns>).
for base in "$DIR/runsc" "$DIR/runc-root"; do
  [[ -d $base ]] || continue
  for nsroot in "$base"/*/; do
    [[ -d $nsroot ]] || continue
    nsroot=${nsroot%/}
    mapfile -t ids < <(timeout 20 "$RUNSC" --root "$nsroot" list -quiet 2>/dev/null || true)
    for id in "${ids[@]}"; do
      [[ -n $id ]] || continue
      leftover "runsc container $id (root $nsroot)"
      log "runsc delete --force $id (root $nsroot)"
      timeout 20 "$RUNSC" --root "$nsroot" delete --force "$id" >/dev/null 2>&1 || log "runsc delete $id failed"
    done
  done
done

# 3. shims whose containerd was ours. A shim asked to shut down just before may still be exiting: give them a
# moment to go on their own before calling them leftovers.
mapfile -t shims < <(shim_pids)
if [[ ${#shims[@]} -gt 0 ]] && wait_gone 10 "${shims[@]}"; then shims=(); fi
mapfile -t shims < <(shim_pids)
if [[ ${#shims[@]} -gt 0 ]]; then
  for p in "${shims[@]}"; do leftover "shim pid $p ($(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-200))"; done
  log "stopping shims ${shims[*]}"
  stop_pids "${shims[@]}"
fi

# 4. stray runsc processes (sandbox/gofer of a container runsc could not delete).
mapfile -t strays < <(runsc_pids)
if [[ ${#strays[@]} -gt 0 ]]; then
  for p in "${strays[@]}"; do leftover "runsc process $p ($(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-200))"; done
  log "stopping stray runsc processes ${strays[*]}"
  stop_pids "${strays[@]}"
fi

# 5. mounts under DIR, deepest first.
unmount_all() {
  local mp
  awk -v d="$DIR/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r mp; do
    # mountinfo escapes spaces etc. as octal; decode them.
    mp=$(printf '%b' "$mp")
    umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "cannot unmount $mp"
  done
}
# A state dir that containerd-up.sh mounted as a tmpfs (--state-tmpfs) is its own, not a leftover.
own_mount() { [[ -f $DIR/.state-tmpfs && $1 == "$DIR/state" ]]; }
while read -r mp; do
  mp=$(printf '%b' "$mp")
  own_mount "$mp" || leftover "mount $mp"
done < <(awk -v d="$DIR/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo)
unmount_all
if awk -v d="$DIR/" 'index($5, d) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
  unmount_all # a second pass for mounts revealed by the first
fi

# 6. the directory.
if [[ $KEEP_DIR -eq 0 ]]; then
  rm -rf "$DIR" || log "could not remove $DIR completely"
fi
log "done ($DIR)"
if [[ $REPORT -eq 1 && $LEFTOVERS -gt 0 ]]; then
  log "$LEFTOVERS leftover(s) removed"
  exit 3
fi
