#!/usr/bin/env bash
# Installs a built gvshim onto this machine (run scripts/build.sh --main first):
#   /usr/local/bin/containerd-shim-gvisor-v1, /usr/local/bin/gvshim
#   /usr/local/lib/gvshim/{gvshim-launch,_gvshim_isolate.abi3.so}  (mounted into execute containers; the shim finds
#                                                                   them at <its bin dir>/../lib/gvshim)
#   /usr/local/lib/gvshim/gvshim-wrap  (mounted into every container: terminals, seccomp on execs; same lookup)
#   /usr/share/gvshim/seccomp-profiles/*.json
#   /etc/containerd/gvshim.toml (only if absent)
# It does not edit containerd's config or restart containerd: merge runtimeclass/containerd-gvisor.toml yourself.
#
#   scripts/install.sh [--prefix /usr/local] [--dry-run]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=/usr/local
DRY=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --prefix) PREFIX=$2; shift ;;
    --dry-run) DRY=1 ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

BIN=$ROOT/build/shim/main
for f in containerd-shim-gvisor-v1 gvshim gvshim-helpers/gvshim-launch gvshim-helpers/_gvshim_isolate.abi3.so \
  gvshim-helpers/gvshim-wrap; do
  [[ -e $BIN/$f ]] || { echo "install.sh: $BIN/$f not built; run scripts/build.sh --main" >&2; exit 1; }
done

run() { if [[ $DRY == 1 ]]; then echo "+ $*"; else "$@"; fi; }

run install -D -m 0755 "$BIN/containerd-shim-gvisor-v1" "$PREFIX/bin/containerd-shim-gvisor-v1"
run install -D -m 0755 "$BIN/gvshim" "$PREFIX/bin/gvshim"
run install -D -m 0755 "$BIN/gvshim-helpers/gvshim-launch" "$PREFIX/lib/gvshim/gvshim-launch"
run install -D -m 0644 "$BIN/gvshim-helpers/_gvshim_isolate.abi3.so" "$PREFIX/lib/gvshim/_gvshim_isolate.abi3.so"
run install -D -m 0755 "$BIN/gvshim-helpers/gvshim-wrap" "$PREFIX/lib/gvshim/gvshim-wrap"
run install -d -m 0755 /usr/share/gvshim/seccomp-profiles
for p in "$ROOT"/seccomp-profiles/*.json; do
  run install -m 0644 "$p" /usr/share/gvshim/seccomp-profiles/
done
if [[ ! -e /etc/containerd/gvshim.toml ]]; then
  run install -D -m 0644 "$ROOT/runtimeclass/gvshim.toml" /etc/containerd/gvshim.toml
else
  echo "install.sh: keeping the existing /etc/containerd/gvshim.toml"
fi
echo "installed. Next: merge runtimeclass/containerd-gvisor.toml into /etc/containerd/config.toml and restart containerd."
