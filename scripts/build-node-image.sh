#!/usr/bin/env bash
# Builds the node installer image (what the chart's DaemonSet runs) as an OCI image layout archive by hand
# (tar + sha256 + JSON; no registry, no docker), importable with `ctr images import`.
#
#   scripts/build-node-image.sh [--bin-dir DIR] [--runsc PATH] [--out DIR] [--name REF] [--address SOCK --namespace NS]
#
# Content (linux/amd64):
#   /usr/local/bin/gvshim                the installer (`gvshim node run|install|uninstall|status|retire|canary`)
#   /opt/gvshim-node/payload/            what the installer copies onto the node: containerd-shim-gvisor-v1, gvshim,
#                                        runsc (0.0~20240729 from Debian's bookworm-backports), seccomp-profiles/,
#                                        gvshim-helpers/ (Execute's in-sandbox helpers, found next to the shim)
#   /bin/busybox + applets               sh, nsenter (the installer's way into the host's mount namespace), test
#                                        (readiness probe), sleep, dmesg, grep (the chart's helm test pod)
# The default command idles (sleep), so the image also serves as a pod sandbox ("pause") image where no
# registry is reachable, as in tests; the DaemonSet always gives its own command.
# Output (cached; rebuilt only when an input changes): OUT/node/image.tar. Prints the image reference last.
# Push to a registry (not needed here; documented in README "Install on Kubernetes"), e.g.:
#   skopeo copy oci-archive:build/image/node/image.tar docker://REGISTRY/gvshim-node:0.1.0
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/oci-layout.sh
source "$ROOT/scripts/lib/oci-layout.sh"
BIN_DIR=$ROOT/build/shim/main
RUNSC=$(command -v runsc || echo /usr/bin/runsc)
OUT=$ROOT/build/image
NAME=localhost/gvshim-node:0.1.0
ADDRESS=
NAMESPACE=k8s.io
RUNSC_WANT=20240729

while [[ $# -gt 0 ]]; do
  case $1 in
    --bin-dir) BIN_DIR=$2; shift ;;
    --runsc) RUNSC=$2; shift ;;
    --out) OUT=$2; shift ;;
    --name) NAME=$2; shift ;;
    --address | -a) ADDRESS=$2; shift ;;
    --namespace | -n) NAMESPACE=$2; shift ;;
    -h | --help) sed -n '2,20p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "build-node-image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
log() { echo "build-node-image: $*" >&2; }

BUSYBOX=$(command -v busybox.static 2>/dev/null || echo /bin/busybox)
for f in "$BIN_DIR/containerd-shim-gvisor-v1" "$BIN_DIR/gvshim" "$RUNSC" "$BUSYBOX" \
  "$BIN_DIR/gvshim-helpers/gvshim-launch" "$BIN_DIR/gvshim-helpers/gvshim-wrap"; do
  [[ -x $f ]] || { echo "build-node-image.sh: $f is missing (scripts/build.sh --main; install-deps)" >&2; exit 1; }
  # Everything in the image must run without the host's libraries.
  if ldd "$f" >/dev/null 2>&1; then
    echo "build-node-image.sh: $f is dynamically linked; the node image needs static binaries" \
      "(scripts/build.sh --main builds them with GVSHIM_STATIC=ON)" >&2
    exit 1
  fi
done
runsc_version=$("$RUNSC" --version)  # (not piped into head: runsc would get SIGPIPE, and pipefail fails the script)
runsc_version=${runsc_version%%$'\n'*}
if [[ $runsc_version != *"$RUNSC_WANT"* ]]; then
  echo "build-node-image.sh: $RUNSC is \"$runsc_version\", the node image ships runsc $RUNSC_WANT" >&2
  exit 1
fi

dir=$OUT/node
mkdir -p "$dir"
key=$( {
  sha256sum "${BASH_SOURCE[0]}" "$ROOT/scripts/lib/oci-layout.sh" "$BIN_DIR/containerd-shim-gvisor-v1" \
    "$BIN_DIR/gvshim" "$RUNSC" "$BUSYBOX" \
    "$ROOT"/seccomp-profiles/*.json "$BIN_DIR"/gvshim-helpers/* | cut -d' ' -f1
  echo "$NAME"
} | sha256sum | cut -d' ' -f1)

if [[ -f $dir/image.tar && -f $dir/key && $(cat "$dir/key") == "$key" ]]; then
  log "cached $dir/image.tar"
else
  log "building $NAME in $dir"
  work=$(mktemp -d "$dir/work.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  rootfs=$work/rootfs
  payload=$rootfs/opt/gvshim-node/payload
  mkdir -p "$rootfs"/{bin,etc,dev,proc,sys,tmp,run,host,usr/local/bin} "$payload/seccomp-profiles" \
    "$payload/gvshim-helpers"
  chmod 1777 "$rootfs/tmp"
  install -m 0755 "$BUSYBOX" "$rootfs/bin/busybox"
  for applet in sh nsenter test sleep dmesg grep touch cat ls head echo; do ln -s busybox "$rootfs/bin/$applet"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
  install -m 0755 "$BIN_DIR/gvshim" "$rootfs/usr/local/bin/gvshim"
  install -m 0755 "$BIN_DIR/containerd-shim-gvisor-v1" "$payload/containerd-shim-gvisor-v1"
  install -m 0755 "$BIN_DIR/gvshim" "$payload/gvshim"
  install -m 0755 "$RUNSC" "$payload/runsc"
  install -m 0644 "$ROOT"/seccomp-profiles/*.json "$payload/seccomp-profiles/"
  install -m 0755 "$BIN_DIR/gvshim-helpers/gvshim-launch" "$BIN_DIR/gvshim-helpers/gvshim-wrap" "$payload/gvshim-helpers/"
  install -m 0644 "$BIN_DIR"/gvshim-helpers/*.so "$payload/gvshim-helpers/"
  (cd "$payload" && sha256sum containerd-shim-gvisor-v1 gvshim runsc seccomp-profiles/*.json gvshim-helpers/* \
    >SHA256SUMS)

  config=$(jq -cn --arg runsc "$runsc_version" '{
      Env: ["PATH=/usr/local/bin:/bin"], Cmd: ["/bin/sleep", "2147483647"], WorkingDir: "/",
      Labels: {"org.opencontainers.image.title": "gvshim node installer", "dev.gvshim.runsc-version": $runsc}}')
  oci_layout_tar "$rootfs" "$work" "$NAME" "$config" "gvshim scripts/build-node-image.sh" "$dir/image.tar"
  echo "$key" >"$dir/key"
  rm -rf "$work"
  trap - EXIT
  log "built $dir/image.tar ($(du -h "$dir/image.tar" | cut -f1))"
fi

if [[ -n $ADDRESS ]]; then
  log "importing $NAME into $ADDRESS (namespace $NAMESPACE)"
  oci_import "$ADDRESS" "$NAMESPACE" "$dir/image.tar" "$NAME" build-node-image.sh
fi
echo "$NAME"
