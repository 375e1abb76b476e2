#!/usr/bin/env bash
# Longer fuzzing than CI's smoke run: every libFuzzer target (or the ones named) for SECONDS each, then
#  - new inputs that add coverage are merged into the repo's seeds, tests/fuzz/corpus/<target>/ (commit them);
#  - a coverage build (build-fuzz-cov/, clang source-based coverage) replays the seeds and reports line,
#    function and region coverage of the code each target exercises.
#
#   scripts/fuzz.sh [--seconds N] [TARGET...]     N defaults to 600 (10 minutes per target)
#
# Prints, per target: runs, edges covered (libFuzzer's cov:) before and after, seeds added, and the coverage
# table; the last line is "fuzz: T targets, C crashes". Crash inputs are kept under build-fuzz/artifacts/
# and the script exits non-zero if any target crashed. Needs clang and llvm-profdata/llvm-cov (install-deps).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SECONDS_PER_TARGET=600
targets=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) SECONDS_PER_TARGET=$2; shift ;;
    -h | --help) sed -n '2,13p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
JOBS=${JOBS:-$(nproc)}
export JOBS

# The code each target is meant to exercise (the coverage report is restricted to it).
declare -A SOURCES=(
  [ttrpc_frame_fuzz]="shim/ttrpc/frame.cc shim/ttrpc/server.cc shim/ttrpc/status.cc"
  [seccomp_profile_fuzz]="shim/seccomp/profile.cc"
  [oci_spec_fuzz]="shim/oci/hardening.cc shim/oci/annotations.cc shim/oci/spec_file.cc"
  [config_toml_fuzz]="shim/config/config.cc shim/oci/policy_toml.cc shim/execute/common/config.cc"
  [gateway_run_fuzz]="shim/gateway/run_request.cc shim/gateway/strict_base64.cc"
  [execute_frames_fuzz]="shim/execute/server/runner_frames.cc"
)

# Only the fuzz targets are built (the whole clang build is scripts/build.sh --fuzz, run by test.sh).
if [[ ! -f build-fuzz/build.ninja ]]; then
  CC=clang CXX=clang++ cmake -S "$ROOT" -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGVSHIM_FUZZ=ON \
    -DGVSHIM_BENCH=OFF >/dev/null
fi
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(ninja -C build-fuzz -t targets all | sed -n 's/^\([A-Za-z0-9_]*_fuzz\): phony$/\1/p' |
    grep -v '^cmake_' | sort -u)
fi
[[ ${#targets[@]} -gt 0 ]] || { echo "fuzz.sh: no fuzz targets" >&2; exit 1; }
ninja -C build-fuzz -j "$JOBS" "${targets[@]}" >/dev/null

# The coverage build: the same targets with clang source-based coverage.
COV=$ROOT/build-fuzz-cov
if [[ ! -f $COV/build.ninja ]]; then
  CC=clang CXX=clang++ cmake -S "$ROOT" -B "$COV" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGVSHIM_FUZZ=ON \
    -DGVSHIM_BENCH=OFF -DGVSHIM_COVERAGE=ON >/dev/null
fi
ninja -C "$COV" -j "$JOBS" "${targets[@]}" >/dev/null

ARTIFACTS=$ROOT/build-fuzz/artifacts
mkdir -p "$ARTIFACTS"
WORK=$(mktemp -d /tmp/gvshim-fuzz.XXXX)
trap 'rm -rf "$WORK"' EXIT
crashes=0
declare -a REPORT=()

# cov_of LOG WHEN: libFuzzer's "cov: N" on its INITED (seeds only) or DONE line.
# (libFuzzer pads "DONE" with spaces.)
cov_of() { sed -nE "s/.*$2 +cov: ([0-9]+) ft: ([0-9]+).*/\\1 edges, \\2 features/p" "$1" | tail -n 1; }

for t in "${targets[@]}"; do
  bin=build-fuzz/tests/fuzz/$t
  seeds=tests/fuzz/corpus/$t
  mkdir -p "$seeds" "$WORK/$t"
  cp -r "$seeds/." "$WORK/$t/"
  before=$(find "$seeds" -type f | wc -l)
  echo "== $t: ${SECONDS_PER_TARGET}s from $before seeds"
  rc=0
  "$bin" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$ARTIFACTS/$t-" "$WORK/$t" >"$WORK/$t.log" 2>&1 || rc=$?
  if [[ $rc -ne 0 ]]; then
    crashes=$((crashes + 1))
    echo "$t CRASHED (exit $rc); artifacts in $ARTIFACTS; log tail:"
    tail -n 40 "$WORK/$t.log"
  fi
  runs=$(sed -nE 's/^stat::number_of_executed_units: ([0-9]+)/\1/p' "$WORK/$t.log" | tail -n 1)
  # Only inputs that add coverage (new edges; -use_counters=0: hit counts do not count) join the repo's seeds.
  "$bin" -merge=1 -use_counters=0 "$seeds" "$WORK/$t" >"$WORK/$t.merge.log" 2>&1 || {
    echo "$t: merge failed:"
    tail -n 20 "$WORK/$t.merge.log"
  }
  after=$(find "$seeds" -type f | wc -l)
  # Replay the seeds in the coverage build.
  rm -f "$WORK/$t".*.profraw
  LLVM_PROFILE_FILE="$WORK/$t.%p.profraw" "$COV/tests/fuzz/$t" -runs=0 "$seeds" >"$WORK/$t.cov.log" 2>&1 || true
  llvm-profdata merge -sparse "$WORK/$t".*.profraw -o "$WORK/$t.profdata"
  read -r -a srcs <<<"${SOURCES[$t]:-}"
  table=$(llvm-cov report "$COV/tests/fuzz/$t" -instr-profile="$WORK/$t.profdata" "${srcs[@]}" 2>&1 |
    grep -E '^(Filename|TOTAL|-)|\.(cc|h) ' || true)
  echo "$table"
  total=$(awk '$1 == "TOTAL" { print "regions " $4 ", functions " $7 ", lines " $10 }' <<<"$table")
  REPORT+=("$(printf '%-22s %8s runs  cov %s -> %s  seeds %d -> %d  %s' "$t" "${runs:-?}" \
    "$(cov_of "$WORK/$t.log" INITED)" "$(cov_of "$WORK/$t.log" DONE)" "$before" "$after" "$total")")
done

echo
printf '%s\n' "${REPORT[@]}"
echo "fuzz: ${#targets[@]} targets, $crashes crashes"
[[ $crashes -eq 0 ]]
