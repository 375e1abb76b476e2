#!/usr/bin/env bash
# From a fresh Debian 12 to a container running inside gVisor through gvshim, in one command:
# installs dependencies, builds, starts a private containerd (never the system one), imports the test image,
# runs a container with runtime io.containerd.gvisor.v1, shows what happened, and stops containerd on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
NS=quickstart
IMAGE=localhost/gvshim-test:busybox

step() { printf '\n==> %s\n' "$*"; }

step "installing dependencies (Debian packages)"
bash scripts/install-deps.sh

step "building gvshim"
bash scripts/build.sh --main
BIN_DIR=$ROOT/build/shim/main
if [[ ! -x $BIN_DIR/containerd-shim-gvisor-v1 ]]; then
  echo "quickstart: $BIN_DIR/containerd-shim-gvisor-v1 was not built" >&2
  exit 1
fi

DIR=$(mktemp -d /tmp/gvs.XXXX)
cleanup() {
  step "stopping the private containerd"
  bash "$ROOT/scripts/containerd-down.sh" "$DIR" || true
}
trap cleanup EXIT

step "starting a private containerd in $DIR"
bash scripts/containerd-up.sh "$DIR" --bin-dir "$BIN_DIR"
# shellcheck disable=SC1091
source "$DIR/env"

step "building and importing the test image"
bash scripts/build-image.sh -a "$GVS_SOCK" -n "$NS" >/dev/null

step "ctr run --runtime io.containerd.gvisor.v1 --rm $IMAGE hello sh -c 'echo hello from gVisor; uname -a'"
rc=0
ctr -a "$GVS_SOCK" -n "$NS" run --runtime io.containerd.gvisor.v1 --rm "$IMAGE" hello \
  sh -c 'echo hello from gVisor; uname -a' || rc=$?
echo
if [[ $rc -eq 0 ]]; then
  echo "The container ran inside gVisor: its kernel is gVisor's (see uname above), not the host's ($(uname -r))."
else
  echo "The container failed (exit $rc); containerd's log is $GVS_LOG (kept until exit):"
  tail -n 30 "$GVS_LOG"
fi

if [[ $rc -eq 0 ]]; then
  step "a pod-like container that opted into Execute (annotation dev.gvshim.execute=true), python3 + node inside"
  PY_IMAGE=$(bash scripts/build-image.sh --with-python-node -a "$GVS_SOCK" -n "$NS" | tail -n 1)
  ctr -a "$GVS_SOCK" -n "$NS" run -d --runtime io.containerd.gvisor.v1 --annotation dev.gvshim.execute=true \
    "$PY_IMAGE" agent sh -c 'while :; do sleep 3600 & wait; done' >/dev/null
  for _ in $(seq 100); do ls "$GVS_EXECUTE_DIR"/*.sock >/dev/null 2>&1 && break; sleep 0.1; done
  GVSHIM="$BIN_DIR/gvshim exec --dir $GVS_EXECUTE_DIR --namespace $NS --id agent"

  step "gvshim exec --id agent -c 'def main(a, b): ...' --arg a=2 --arg b=40   (Python, inside the sandbox)"
  $GVSHIM -c 'import platform
def main(a, b):
    return {"sum": a + b, "kernel": platform.release()}' --arg a=2 --arg b=40 || rc=$?

  step "gvshim exec --lang javascript ...   (Node, inside the same sandbox)"
  # shellcheck disable=SC2016 # JavaScript source: the template literal is for node, not the shell
  $GVSHIM --lang javascript -c 'function main(args) { return {greeting: `hello ${args.name}`}; }' \
    --arg name=gvisor || rc=$?

  step "what a snippet sees: only itself (pid 1 of its own pid namespace), fresh /tmp, an unprivileged uid"
  $GVSHIM -c 'import os
print("processes:", [p for p in os.listdir("/proc") if p.isdigit()], "uid:", os.getuid(),
      "tmp:", os.listdir("/tmp"), "cwd:", os.getcwd())' || rc=$?
  $GVSHIM --runtimes | grep -E '"(language|isolation_mode)"' || rc=$?

  step "a snippet that never ends is stopped by its limit (exit 124 = timeout)"
  erc=0
  $GVSHIM --timeout 1000 -c 'while True: pass' || erc=$?
  echo "gvshim exec exited with $erc"
  [[ $erc -eq 124 ]] || rc=1

  step "removing the container (its shim, execute container and Execute server go with it)"
  ctr -a "$GVS_SOCK" -n "$NS" task delete -f agent >/dev/null || rc=1
  ctr -a "$GVS_SOCK" -n "$NS" container delete agent >/dev/null || rc=1
fi

exit "$rc"
