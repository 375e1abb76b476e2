#!/usr/bin/env bash
# Builds the gvshim test image as an OCI image layout by hand (no registry, no docker) and optionally imports it
# into a containerd.
#
#   scripts/build-image.sh [--with-python-node | --interpreters-only] [--out DIR] [--name REF]
#                          [--address SOCK --namespace NS]
#
# Variants:
#   (default)             /bin/busybox (busybox-static) with a symlink per applet and a minimal /etc
#   --with-python-node    the same plus the host's python3 (+ stdlib) and node, with the shared libraries ldd
#                         finds for them: a BusyBox-based interpreter image (no util-linux, no setpriv)
#   --interpreters-only   python3 (+ stdlib) and node with their libraries and a minimal /etc, and nothing
#                         else: no shell, no coreutils (an image whose only programs are the interpreters)
# Output (cached; rebuilt only when the inputs change): DIR/<variant>/image.tar (an OCI layout archive).
# Prints the image reference on the last line of stdout.
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/oci-layout.sh
source "$ROOT/scripts/lib/oci-layout.sh"
OUT=$ROOT/build/image
WITH_PY_NODE=0
WITH_BUSYBOX=1
NAME=
ADDRESS=
NAMESPACE=default

while [[ $# -gt 0 ]]; do
  case $1 in
    --with-python-node) WITH_PY_NODE=1 ;;
    --interpreters-only) WITH_PY_NODE=1 WITH_BUSYBOX=0 ;;
    --out) OUT=$2; shift ;;
    --name) NAME=$2; shift ;;
    --address | -a) ADDRESS=$2; shift ;;
    --namespace | -n) NAMESPACE=$2; shift ;;
    -h | --help) sed -n '2,11p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "build-image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if [[ $WITH_BUSYBOX -eq 0 ]]; then
  variant=interpreters
elif [[ $WITH_PY_NODE -eq 1 ]]; then
  variant=python-node
else
  variant=busybox
fi
NAME=${NAME:-localhost/gvshim-test:$variant}
BUSYBOX=$(command -v busybox.static 2>/dev/null || true)
[[ -n $BUSYBOX ]] || BUSYBOX=/bin/busybox
if ! "$BUSYBOX" --list >/dev/null 2>&1 || ldd "$BUSYBOX" >/dev/null 2>&1; then
  echo "build-image.sh: need a static busybox (apt-get install busybox-static)" >&2
  exit 1
fi

log() { echo "build-image: $*" >&2; }

# Host paths whose content goes into the image; the cache key hashes them with this script.
py_bin='' node_bin='' py_stdlib=''
if [[ $WITH_PY_NODE -eq 1 ]]; then
  py_bin=$(readlink -f /usr/bin/python3)
  node_bin=$(readlink -f "$(command -v node || command -v nodejs)")
  py_ver=$(/usr/bin/python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  py_stdlib=/usr/lib/python$py_ver
fi

dir=$OUT/$variant
mkdir -p "$dir"
key=$( {
  sha256sum "${BASH_SOURCE[0]}" "$ROOT/scripts/lib/oci-layout.sh" "$BUSYBOX" | cut -d' ' -f1
  echo "$NAME"
  if [[ $WITH_PY_NODE -eq 1 ]]; then
    sha256sum "$py_bin" "$node_bin" | cut -d' ' -f1
    dpkg-query -W -f='${Package} ${Version}\n' "libpython$py_ver-stdlib" 2>/dev/null || true
  fi
} | sha256sum | cut -d' ' -f1)

if [[ -f $dir/image.tar && -f $dir/key && $(cat "$dir/key") == "$key" ]]; then
  log "cached $dir/image.tar"
else
  log "building $variant image in $dir"
  work=$(mktemp -d "$dir/work.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  rootfs=$work/rootfs
  mkdir -p "$rootfs"/{bin,sbin,etc,dev,proc,sys,tmp,root,home,run,var/tmp,usr/bin,usr/sbin,usr/lib,usr/lib64,work}
  chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
  # Merged-/usr layout like Debian 12, so ldd's /lib/... paths land in usr/lib.
  ln -s usr/lib "$rootfs/lib"
  ln -s usr/lib64 "$rootfs/lib64"

  if [[ $WITH_BUSYBOX -eq 1 ]]; then
    install -m 0755 "$BUSYBOX" "$rootfs/bin/busybox"
    while read -r applet; do
      [[ -n $applet && $applet != busybox ]] || continue
      [[ -e $rootfs/bin/$applet ]] || ln -s busybox "$rootfs/bin/$applet"
    done < <("$BUSYBOX" --list | sort)
  fi

  cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
  cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
  echo gvshim-test >"$rootfs/etc/hostname"
  printf '127.0.0.1 localhost\n::1 localhost\n' >"$rootfs/etc/hosts"
  : >"$rootfs/etc/resolv.conf"

  if [[ $WITH_PY_NODE -eq 1 ]]; then
    # copy_host PATH: copies a host file (following symlinks) to the same path in the rootfs.
    copy_host() {
      local src=$1 dst=$rootfs$1
      mkdir -p "$(dirname "$dst")"
      cp -L --preserve=mode "$src" "$dst"
    }
    install -m 0755 "$py_bin" "$rootfs/usr/bin/$(basename "$py_bin")"
    ln -sf "$(basename "$py_bin")" "$rootfs/usr/bin/python3"
    install -m 0755 "$node_bin" "$rootfs/usr/bin/node"
    ln -sf node "$rootfs/usr/bin/nodejs"
    # The stdlib without its test suites and GUI modules.
    tar -C / --exclude="${py_stdlib#/}/test" --exclude="${py_stdlib#/}/idlelib" \
      --exclude="${py_stdlib#/}/tkinter" --exclude="${py_stdlib#/}/turtledemo" \
      --exclude="${py_stdlib#/}/ensurepip" -cf - "${py_stdlib#/}" | tar -C "$rootfs" -xf -
    # Shared libraries of the interpreters and of every extension module.
    # The BusyBox variant gets the libraries of every stdlib extension module too; the interpreters-only one just
    # what the two interpreter binaries need (so e.g. ctypes, which needs libffi, is not importable there).
    if [[ $WITH_BUSYBOX -eq 1 ]]; then
      mapfile -t objs < <(echo "$py_bin"; echo "$node_bin"; find "$py_stdlib" -name '*.so' -type f)
    else
      objs=("$py_bin" "$node_bin")
    fi
    mapfile -t libs < <(for o in "${objs[@]}"; do ldd "$o" 2>/dev/null || true; done |
      awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
    for l in "${libs[@]}"; do copy_host "$l"; done
    # Node's runtime may dlopen ICU data or look up CA certificates; neither is needed for snippets.
  fi

  if [[ $WITH_BUSYBOX -eq 1 ]]; then cmd='["sh"]'; else cmd='["/usr/bin/python3"]'; fi
  config=$(jq -cn --argjson cmd "$cmd" \
    '{Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: $cmd, WorkingDir: "/"}')
  oci_layout_tar "$rootfs" "$work" "$NAME" "$config" "gvshim scripts/build-image.sh" "$dir/image.tar"
  echo "$key" >"$dir/key"
  rm -rf "$work"
  trap - EXIT
  log "built $dir/image.tar ($(du -h "$dir/image.tar" | cut -f1))"
fi

if [[ -n $ADDRESS ]]; then
  log "importing $NAME into $ADDRESS (namespace $NAMESPACE)"
  oci_import "$ADDRESS" "$NAMESPACE" "$dir/image.tar" "$NAME" build-image.sh
fi
echo "$NAME"
