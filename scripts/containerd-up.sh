#!/usr/bin/env bash
# Starts a PRIVATE containerd (never the system one) whose every path lives in DIR.
#
#   scripts/containerd-up.sh DIR [--bin-dir DIR] [--log-level LEVEL] [--state-tmpfs SIZE]
#
# --state-tmpfs SIZE mounts a tmpfs of SIZE (e.g. 64m) as containerd's state dir, where the bundles live, so a
# test can fill the bundles' filesystem (containerd-down.sh unmounts it).
# DIR should be short (sockets must stay < 108 bytes), e.g. DIR=$(mktemp -d /tmp/gvs.XXXX).
# --bin-dir is put first on containerd's PATH so it finds containerd-shim-gvisor-v1 (default: build/shim/main).
# Writes DIR/env (source it) with:
#   GVS_DIR GVS_SOCK GVS_TTRPC GVS_ROOT GVS_STATE GVS_PID GVS_LOG GVS_CONFIG
#   GVS_SHIM_CONFIG  the private gvshim.toml (also given to shims through GVSHIM_CONFIG)
#   GVS_RUNSC_ROOT   runsc --root base used by gvshim (it appends /<namespace>)
#   GVS_RUNC_WRAPPER runc-compatible wrapper that runs runsc [--platform=P] --network=none (baseline)
#   GVS_RUNSC        the runsc binary both runtimes use
# Env: GVSHIM_RUNSC           runsc to use: unset/"new" = runsc on PATH (0.0~20240729), "old" = the bookworm
#                             0.0~20221219 that install-deps unpacks under /opt/gvshim/runsc-20221219, or a path
#      GVSHIM_RUNSC_PLATFORM  runsc --platform for both runtimes (default: runsc's own default)
#      GVSHIM_RUNSC_NETWORK   gvshim's [runsc] network (default "none")
#      GVS_SANDBOX_IMAGE      the CRI's pause image (default localhost/gvshim-test:pause, tests/cri builds it)
#      GVS_CNI_CONFLIST       CNI network config for CRI pods (default: tests/cri/cni/gvshim-loopback only)
#      GVS_HARDENING_EXTRA    TOML lines added to the [hardening] table of the private gvshim.toml
#      GVS_SHIM_EXTRA         TOML lines added to its [shim] table
#   GVS_RUNC_ROOT    --runc-root for the baseline
# Stop it with scripts/containerd-down.sh DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ $# -lt 1 ]]; then
  sed -n '2,19p' "${BASH_SOURCE[0]}" >&2
  exit 2
fi
DIR=$1; shift
BIN_DIR=$ROOT/build/shim/main
LOG_LEVEL=${GVS_CONTAINERD_LOG_LEVEL:-info}
STATE_TMPFS=
while [[ $# -gt 0 ]]; do
  case $1 in
    --bin-dir) BIN_DIR=$2; shift ;;
    --log-level) LOG_LEVEL=$2; shift ;;
    --state-tmpfs) STATE_TMPFS=$2; shift ;;
    *) echo "containerd-up.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
BIN_DIR=$(mkdir -p "$BIN_DIR" && cd "$BIN_DIR" && pwd)
SOCK=$DIR/c.sock
if [[ ${#SOCK} -gt 90 ]]; then
  echo "containerd-up.sh: $DIR is too long for unix socket paths; use e.g. mktemp -d /tmp/gvs.XXXX" >&2
  exit 2
fi
if [[ -f $DIR/containerd.pid ]] && kill -0 "$(cat "$DIR/containerd.pid")" 2>/dev/null; then
  echo "containerd-up.sh: a containerd already runs for $DIR (pid $(cat "$DIR/containerd.pid"))" >&2
  exit 1
fi

# Marker that lets containerd-down.sh remove DIR safely.
echo "gvshim private containerd" >"$DIR/.gvshim-containerd"
mkdir -p "$DIR"/{root,state,opt,runsc,runc-root,cni/bin,cni/conf,fifo}
if [[ -n $STATE_TMPFS ]] && ! mountpoint -q "$DIR/state"; then
  mount -t tmpfs -o "size=$STATE_TMPFS,mode=0711" gvshim-state "$DIR/state"
  echo "$STATE_TMPFS" >"$DIR/.state-tmpfs"
fi

case ${GVSHIM_RUNSC:-new} in
  new | "") RUNSC=$(command -v runsc || echo /usr/bin/runsc) ;;
  old) RUNSC=${GVSHIM_OLD_RUNSC_DIR:-/opt/gvshim/runsc-20221219}/runsc ;;
  *) RUNSC=$GVSHIM_RUNSC ;;
esac
if [[ ! -x $RUNSC ]]; then
  echo "containerd-up.sh: runsc $RUNSC not found (GVSHIM_RUNSC=${GVSHIM_RUNSC:-}; run scripts/install-deps.sh)" >&2
  exit 1
fi
PLATFORM=${GVSHIM_RUNSC_PLATFORM:-}
NETWORK=${GVSHIM_RUNSC_NETWORK:-none}
SANDBOX_IMAGE=${GVS_SANDBOX_IMAGE:-localhost/gvshim-test:pause}
PLATFORM_FLAG=
if [[ -n $PLATFORM ]]; then PLATFORM_FLAG="--platform=$PLATFORM "; fi
CONTAINERD=$(command -v containerd || echo /usr/bin/containerd)

# Baseline: containerd's runc shim driving runsc through this wrapper (runc-compatible CLI).
# runsc gives a pod's second and later containers (subcontainers) the stdio of the `runsc start` process, where
# runc's contract (and the runc shim) gives a container its stdio at `create`. The runc shim runs `start` with a
# pipe that captures its error output and waits for that pipe to close; the sandbox would hold it open for the
# container's life and the shim's Start would never return (every CRI pod with an app container hangs). So the
# wrapper runs `start` with its stdio on /dev/null: the baseline's subcontainers have no stdout/stderr (no CRI
# logs), which only makes the baseline cheaper. runsc's errors still reach the shim through --log.
cat >"$DIR/runsc-runc" <<WRAP
#!/bin/sh
for a in "\$@"; do
  if [ "\$a" = start ]; then
    exec "$RUNSC" ${PLATFORM_FLAG}--network=none "\$@" </dev/null >/dev/null 2>&1
  fi
done
exec "$RUNSC" ${PLATFORM_FLAG}--network=none "\$@"
WRAP
chmod 755 "$DIR/runsc-runc"

# gvshim's own config for this containerd.
cat >"$DIR/gvshim.toml" <<TOML
[runsc]
binary = "$RUNSC"
root = "$DIR/runsc"
platform = "$PLATFORM"
network = "$NETWORK"
debug = false

[shim]
log_level = "debug"
${GVS_SHIM_EXTRA:-}

# The Execute service, for pods (containers) annotated dev.gvshim.execute=true; sockets stay in this dir.
[execute]
enabled = true
socket_dir = "$DIR/execute"

# The shim's default profiles_dir (/usr/share/gvshim/seccomp-profiles) is not installed in tests: use the repo's.
[hardening]
profiles_dir = "$ROOT/seccomp-profiles"
${GVS_HARDENING_EXTRA:-}
TOML


# Keep the CNI bin dir private but usable: Debian's plugins (containernetworking-plugins) and ours.
# containerd 1.6's CRI refuses a result without an address on the pod's interface, so the default network is
# our gvshim-loopback: it brings `lo` up (via the loopback plugin) and reports 127.0.0.1 for the pod.
for p in loopback bridge host-local portmap; do
  if [[ -x /usr/lib/cni/$p ]]; then ln -sf "/usr/lib/cni/$p" "$DIR/cni/bin/$p"; fi
done
ln -sf "$ROOT/tests/cri/cni/gvshim-loopback" "$DIR/cni/bin/gvshim-loopback"
if [[ -n ${GVS_CNI_CONFLIST:-} ]]; then
  cp "$GVS_CNI_CONFLIST" "$DIR/cni/conf/10-gvshim.conflist"
else
  cat >"$DIR/cni/conf/10-gvshim.conflist" <<CNI
{"cniVersion": "1.0.0", "name": "gvshim-lo", "plugins": [{"type": "gvshim-loopback"}]}
CNI
fi

cat >"$DIR/config.toml" <<TOML
version = 2
root = "$DIR/root"
state = "$DIR/state"
oom_score = 0

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[debug]
  level = "$LOG_LEVEL"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$DIR/opt"

[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  netns_mounts_under_state_dir = true
  sandbox_image = "$SANDBOX_IMAGE"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "gvisor"
    # The gvisor handler exactly as README.md tells users to register it.
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.gvisor]
      runtime_type = "io.containerd.gvisor.v1"
      pod_annotations = ["dev.gvshim.*"]
      container_annotations = ["dev.gvshim.*"]
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.gvisor.options]
        ConfigPath = "$DIR/gvshim.toml"
    # Baselines: containerd's runc shim driving runsc, and plain runc.
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$DIR/runc-root-plain"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc-runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc-runc.options]
        BinaryName = "$DIR/runsc-runc"
        Root = "$DIR/runc-root"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$DIR/cni/bin"
    conf_dir = "$DIR/cni/conf"
TOML

cat >"$DIR/env" <<ENV
GVS_DIR=$DIR
GVS_SOCK=$SOCK
GVS_TTRPC=$SOCK.ttrpc
GVS_ROOT=$DIR/root
GVS_STATE=$DIR/state
GVS_PID=$DIR/containerd.pid
GVS_LOG=$DIR/containerd.log
GVS_CONFIG=$DIR/config.toml
GVS_SHIM_CONFIG=$DIR/gvshim.toml
GVS_RUNSC_ROOT=$DIR/runsc
GVS_EXECUTE_DIR=$DIR/execute
GVS_RUNC_WRAPPER=$DIR/runsc-runc
GVS_RUNSC=$RUNSC
GVS_RUNC_ROOT=$DIR/runc-root
GVS_SANDBOX_IMAGE=$SANDBOX_IMAGE
GVS_CNI_CONF_DIR=$DIR/cni/conf
GVS_BIN_DIR=$BIN_DIR
ENV

# setsid: containerd (and the shims it starts) must not get signals meant for the caller's terminal/job.
# Its stdio goes to the log file; stdin is /dev/null so nothing waits on the caller's tty.
PATH="$BIN_DIR:$PATH" GVSHIM_CONFIG="$DIR/gvshim.toml" \
  setsid "$CONTAINERD" --config "$DIR/config.toml" </dev/null >>"$DIR/containerd.log" 2>&1 &
pid=$!
echo "$pid" >"$DIR/containerd.pid"

# Wait (bounded) for the API to answer.
deadline=$((SECONDS + ${GVS_CONTAINERD_START_TIMEOUT:-30}))
until ctr -a "$SOCK" --timeout 2s version >/dev/null 2>&1; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "containerd-up.sh: containerd exited during startup; last log lines:" >&2
    tail -n 30 "$DIR/containerd.log" >&2
    exit 1
  fi
  if [[ $SECONDS -ge $deadline ]]; then
    echo "containerd-up.sh: containerd did not answer within the timeout; last log lines:" >&2
    tail -n 30 "$DIR/containerd.log" >&2
    exit 1
  fi
  sleep 0.1
done
echo "containerd-up: pid $pid, socket $SOCK, dir $DIR" >&2
