#!/usr/bin/env bash
# Configures and builds gvshim with CMake + Ninja.
#   scripts/build.sh            Release-with-debug-info build into build/ (shim, gvshim CLI, unit tests, benches)
#   scripts/build.sh --asan     ASan+UBSan build of the unit tests into build-asan/
#   scripts/build.sh --fuzz     clang build into build-fuzz/: the whole shim with -Wthread-safety -Werror
#                               (checked locking) and the libFuzzer targets (*_fuzz)
#   scripts/build.sh --all      all three
# Env: BUILD_TYPE (default RelWithDebInfo), JOBS (default nproc), BUILD_DIR (overrides build/ for the main build).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo}
JOBS=${JOBS:-$(nproc)}

do_main=0 do_asan=0 do_fuzz=0
if [[ $# -eq 0 ]]; then do_main=1; fi
for arg in "$@"; do
  case $arg in
    --main) do_main=1 ;;
    --asan) do_asan=1 ;;
    --fuzz) do_fuzz=1 ;;
    --all) do_main=1 do_asan=1 do_fuzz=1 ;;
    -h | --help) sed -n '2,9p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "build.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

# configure DIR ARGS...: (re)configure only when the cache is missing, so repeated builds stay fast.
configure() {
  local dir=$1; shift
  if [[ ! -f $dir/build.ninja ]]; then
    cmake -S "$ROOT" -B "$dir" -G Ninja "$@"
  fi
}

if [[ $do_main -eq 1 ]]; then
  dir=${BUILD_DIR:-$ROOT/build}
  echo "== build: main ($BUILD_TYPE) -> $dir"
  configure "$dir" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DGVSHIM_STATIC=ON
  ninja -C "$dir" -j "$JOBS"
fi

if [[ $do_asan -eq 1 ]]; then
  dir=$ROOT/build-asan
  echo "== build: ASan+UBSan unit tests -> $dir"
  configure "$dir" -DCMAKE_BUILD_TYPE=Debug -DGVSHIM_SANITIZE=ON -DGVSHIM_BENCH=OFF
  ninja -C "$dir" -j "$JOBS"
fi

if [[ $do_fuzz -eq 1 ]]; then
  dir=$ROOT/build-fuzz
  echo "== build: clang: every shim library and binary (-Wthread-safety -Werror) and the libFuzzer targets -> $dir"
  CC=clang CXX=clang++ configure "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGVSHIM_FUZZ=ON -DGVSHIM_BENCH=OFF
  # The shim's own code (every gvshim_* library, both binaries): clang checks the locking annotations here.
  # The fuzz executables. The unit tests are left to the other two builds.
  mapfile -t targets < <(ninja -C "$dir" -t targets all |
    sed -n 's/^\(gvshim_[A-Za-z0-9_]*\|containerd-shim-gvisor-v1\|gvshim\|[A-Za-z0-9_]*_fuzz\): phony$/\1/p' |
    grep -v -e '^cmake_' -e '^gvshim_test_reaper_main$' | sort -u)
  if ! printf '%s\n' "${targets[@]}" | grep '_fuzz$' >/dev/null; then
    echo "build.sh: no *_fuzz targets found in $dir" >&2
    exit 1
  fi
  ninja -C "$dir" -j "$JOBS" "${targets[@]}"
fi
