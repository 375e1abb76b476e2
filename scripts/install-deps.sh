#!/usr/bin/env bash
# Installs every Debian 12 package gvshim needs to build, test and run its e2e suite.
# Idempotent: packages already present are skipped, and `apt-get update` runs only when something is missing.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  # protobuf / grpc / libraries
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev libabsl-dev
  libseccomp-dev nlohmann-json3-dev libtomlplusplus-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  # containerd's protos (the build stages them from /usr/share/gocode)
  golang-github-containerd-containerd-dev golang-github-containerd-cgroups-dev golang-github-gogo-protobuf-dev
  # runtime pieces used by the e2e tests and the quickstart
  containerd runsc busybox-static containernetworking-plugins iproute2 jq
  python3 python3-grpcio python3-grpc-tools nodejs
  # `script` (bsdutils) gives ctr a tty; mount/umount/findmnt (util-linux, mount); ldd (libc-bin); procps for ps
  bsdutils util-linux mount libc-bin procps coreutils findutils tar ca-certificates
)

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: must run as root (apt-get)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
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
apt-get install -y --no-install-recommends "${missing[@]}"
echo "install-deps: done"
