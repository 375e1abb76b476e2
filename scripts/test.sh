#!/usr/bin/env bash
# Everything CI runs, in order, each a counted stage: dependencies, build, unit tests (ctest), the Helm chart's
# tests (tests/helm), the ASan+UBSan unit build and its tests, the clang build (whole shim with
# -Wthread-safety -Werror, and the fuzz targets), clang-tidy, shellcheck, clang-format, a short smoke run of
# every libFuzzer target, the end-to-end suite against a private containerd (including the node installer's,
# tests/e2e/test_node_installer.sh, and the fault suite, test_faults.sh), a short e2e pass against runsc
# 0.0~20221219, and the CRI suite (tests/cri).
#
# The last line counts every stage:
#   test: P passed, F failed, S skipped (stages: N ok, X failed, K skipped)
# Tests skipped inside a stage (GTEST_SKIP, e2e/CRI SKIP) are S, never counted as passed. A stage that failed
# without a counted failure (a build, ctest finding no tests, an e2e file dying before its summary, a suite
# that printed no result line) adds one failure; a stage that could not run (its build failed) is a failed
# stage. Only the knobs below skip a stage, and it is reported as skipped. Exits non-zero if anything failed.
#
# Env: GVSHIM_SKIP_DEPS=1       skip scripts/install-deps.sh
#      GVSHIM_FUZZ_SECONDS=N    seconds per fuzz target (default 10; 0 skips the fuzz smoke run)
#      GVSHIM_SKIP_ASAN=1       skip the sanitizer build (local iteration only; CI runs it)
#      GVSHIM_SKIP_CLANG=1      skip the clang build and clang-tidy (local iteration only; CI runs them)
#      GVSHIM_SKIP_E2E=1        skip the e2e suite (local iteration only; CI runs it)
#      GVSHIM_RUNSC=old|PATH    run the e2e suite against runsc 0.0~20221219 (or a given runsc) instead of
#                               0.0~20240729; GVSHIM_RUNSC_PLATFORM=ptrace|systrap picks the platform
#      GVSHIM_SKIP_OLD_RUNSC=1  skip the short e2e pass against runsc 0.0~20221219 (task + Execute files)
#      GVSHIM_SKIP_CRI=1        skip the CRI suite (tests/cri; local iteration only; CI runs it)
#      JOBS                     parallel build jobs (default nproc)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
FUZZ_SECONDS=${GVSHIM_FUZZ_SECONDS:-10}
export JOBS=${JOBS:-$(nproc)}
LOGDIR=$(mktemp -d /tmp/gvshim-test.XXXX)
trap 'rm -rf "$LOGDIR"' EXIT

declare -a SUMMARY=()
total_passed=0 total_failed=0 total_skipped=0
stages_ok=0 stages_failed=0 stages_skipped=0

header() {
  echo
  echo "=================================================================================================="
  echo "== $*"
  echo "=================================================================================================="
}

# record NAME RC PASSED FAILED SKIPPED [DETAIL]: one stage's outcome. A stage with RC != 0 counts at least one
# failure, whatever its counts say.
record() {
  local name=$1 rc=$2 p=$3 f=$4 s=$5 detail=${6:-} status=ok
  if [[ $rc -ne 0 ]]; then
    status="FAILED (exit $rc)"
    [[ $f -gt 0 ]] || f=1
    stages_failed=$((stages_failed + 1))
  else
    stages_ok=$((stages_ok + 1))
  fi
  total_passed=$((total_passed + p)) total_failed=$((total_failed + f)) total_skipped=$((total_skipped + s))
  SUMMARY+=("$(printf '%-26s %-18s %4d passed %4d failed %4d skipped  %s' "$name" "$status" "$p" "$f" "$s" "$detail")")
}
# not_run NAME WHY: a stage that should have run and could not.
not_run() {
  echo "not run: $2"
  record "$1" 1 0 1 0 "not run: $2"
}
# skipped NAME WHY: a stage left out on purpose (a knob).
skipped() {
  echo "skipped: $2"
  stages_skipped=$((stages_skipped + 1))
  SUMMARY+=("$(printf '%-26s %-18s %s' "$1" "skipped" "$2")")
}
# step NAME CMD...: a stage that is one check (a build): 1 passed or 1 failed.
step() {
  local name=$1 rc=0; shift
  "$@" || rc=$?
  if [[ $rc -eq 0 ]]; then record "$name" 0 1 0 0; else record "$name" "$rc" 0 1 0; fi
  return "$rc"
}

# run_ctest NAME BUILD_DIR: ctest, counted from its summary. Skipped tests are not passes; no tests is a failure.
run_ctest() {
  local name=$1 dir=$2 rc=0 log=$LOGDIR/$1.log line total=0 failed=0 skip=0
  ctest --test-dir "$dir" --output-on-failure -j "$JOBS" --timeout 300 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
  line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)
  if [[ -n $line ]]; then
    failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    total=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$line")
  fi
  skip=$(grep -cE '^[[:space:]]*[0-9]+ - .* \((Skipped|Not Run|Disabled)\)$' "$log" || true)
  if [[ $total -eq 0 ]]; then
    echo "ctest in $dir ran no tests"
    rc=1
  fi
  record "$name" "$rc" $((total - failed - skip)) "$failed" "$skip" "$line"
}

# count_lint LOG PREFIX: "PREFIX: N checked, M failed" of scripts/lint.sh -> "N M" (or "0 0").
count_lint() {
  local line
  line=$(grep -E "^$2: [0-9]+ checked, [0-9]+ failed" "$1" | tail -n 1 || true)
  if [[ -z $line ]]; then echo "0 0"; return; fi
  sed -E "s/^$2: ([0-9]+) checked, ([0-9]+) failed.*/\1 \2/" <<<"$line"
}

# run_suite NAME PREFIX CMD...: a suite that prints "PREFIX: N passed, M failed" last (and "PREFIX: K skipped"
# when it skipped something). No result line is a failure of the stage.
run_suite() {
  local name=$1 prefix=$2 rc=0 log=$LOGDIR/$1.log line p=0 m=0 s
  shift 2
  "$@" 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
  line=$(grep -E "^$prefix: [0-9]+ passed, [0-9]+ failed" "$log" | tail -n 1 || true)
  if [[ -n $line ]]; then
    p=$(sed -E "s/^$prefix: ([0-9]+) passed, ([0-9]+) failed.*/\1/" <<<"$line")
    m=$(sed -E "s/^$prefix: ([0-9]+) passed, ([0-9]+) failed.*/\2/" <<<"$line")
  else
    echo "$name: ended without its result line"
    [[ $rc -ne 0 ]] || rc=1
    line="no result line"
  fi
  s=$(sed -nE "s/^$prefix: ([0-9]+) skipped\$/\1/p" "$log" | tail -n 1)
  record "$name" "$rc" "$p" "$m" "${s:-0}" "$line"
}

start=$SECONDS

header "dependencies"
if [[ ${GVSHIM_SKIP_DEPS:-0} == 1 ]]; then
  skipped deps "GVSHIM_SKIP_DEPS=1"
elif ! step deps bash scripts/install-deps.sh; then
  echo "dependencies failed; stopping"
  printf '%s\n' "${SUMMARY[@]}"
  echo "test: $total_passed passed, $total_failed failed, $total_skipped skipped (stages: $stages_ok ok, $stages_failed failed, $stages_skipped skipped)"
  exit 1
fi

header "build (build/)"
build_ok=1
step build bash scripts/build.sh --main || build_ok=0

header "unit tests (ctest, build/)"
if [[ $build_ok -eq 1 ]]; then run_ctest unit build; else not_run unit "build failed"; fi

header "Helm chart (tests/helm: helm lint --strict, helm template assertions, schema, parent chart)"
run_suite helm-chart helm bash tests/helm/test_chart.sh

header "ASan+UBSan unit tests (build-asan/)"
if [[ ${GVSHIM_SKIP_ASAN:-0} == 1 ]]; then
  skipped asan-build "GVSHIM_SKIP_ASAN=1"
  skipped asan-unit "GVSHIM_SKIP_ASAN=1"
elif step asan-build bash scripts/build.sh --asan; then
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  run_ctest asan-unit build-asan
else
  not_run asan-unit "ASan build failed"
fi

header "clang build (build-fuzz/: whole shim with -Wthread-safety -Werror, fuzz targets) and clang-tidy"
clang_ok=0
if [[ ${GVSHIM_SKIP_CLANG:-0} == 1 ]]; then
  skipped clang-build "GVSHIM_SKIP_CLANG=1"
  skipped clang-tidy "GVSHIM_SKIP_CLANG=1"
else
  if step clang-build bash scripts/build.sh --fuzz; then clang_ok=1; fi
  if [[ $clang_ok -eq 1 ]]; then
    rc=0
    bash scripts/lint.sh tidy 2>&1 | tee "$LOGDIR/tidy.log" || rc=${PIPESTATUS[0]}
    read -r n m < <(count_lint "$LOGDIR/tidy.log" lint-tidy)
    record clang-tidy "$rc" $((n - m)) "$m" 0 "$n files"
  else
    not_run clang-tidy "clang build failed (no compile_commands.json)"
  fi
fi

header "shellcheck (scripts/, tests/)"
rc=0
bash scripts/lint.sh shell 2>&1 | tee "$LOGDIR/shell.log" || rc=${PIPESTATUS[0]}
read -r n m < <(count_lint "$LOGDIR/shell.log" lint-shell)
record shellcheck "$rc" $((n - m)) "$m" 0 "$n files"

header "clang-format (every tracked *.cc and *.h)"
rc=0
bash scripts/lint.sh format 2>&1 | tee "$LOGDIR/format.log" || rc=${PIPESTATUS[0]}
read -r n m < <(count_lint "$LOGDIR/format.log" lint-format)
record clang-format "$rc" $((n - m)) "$m" 0 "$n files"

header "fuzz smoke (build-fuzz/, ${FUZZ_SECONDS}s per target)"
if [[ $FUZZ_SECONDS -le 0 ]]; then
  skipped fuzz "GVSHIM_FUZZ_SECONDS=0"
elif [[ ${GVSHIM_SKIP_CLANG:-0} == 1 && ! -d build-fuzz ]]; then
  skipped fuzz "GVSHIM_SKIP_CLANG=1 and no earlier build-fuzz/"
elif [[ ${GVSHIM_SKIP_CLANG:-0} != 1 && $clang_ok -ne 1 ]]; then
  not_run fuzz "clang build failed"
else
  mapfile -t fuzzers < <(find build-fuzz -type f -name '*_fuzz' -perm -u+x | sort)
  if [[ ${#fuzzers[@]} -eq 0 ]]; then
    not_run fuzz "no fuzz targets in build-fuzz/"
  fi
  for f in "${fuzzers[@]}"; do
    name=$(basename "$f")
    corpus=$LOGDIR/corpus-$name
    mkdir -p "$corpus"
    # The repo's seeds are copied so the run never writes into the source tree.
    if [[ -d tests/fuzz/corpus/$name ]]; then cp -r "tests/fuzz/corpus/$name/." "$corpus/"; fi
    echo "-- $name ($(find "$corpus" -type f | wc -l) seeds)"
    rc=0
    "$f" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$LOGDIR/" "$corpus" >"$LOGDIR/$name.log" 2>&1 || rc=$?
    tail -n 5 "$LOGDIR/$name.log"
    if [[ $rc -ne 0 ]]; then
      echo "$name FAILED; its log:"
      tail -n 60 "$LOGDIR/$name.log"
      record "fuzz $name" "$rc" 0 1 0
    else
      record "fuzz $name" 0 1 0 0
    fi
  done
fi

header "end-to-end (tests/e2e, private containerd + runsc)"
if [[ ${GVSHIM_SKIP_E2E:-0} == 1 ]]; then
  skipped e2e "GVSHIM_SKIP_E2E=1"
elif [[ $build_ok -ne 1 ]]; then
  not_run e2e "build failed"
else
  run_suite e2e e2e bash tests/e2e/run.sh
fi

# The shim keeps working with the old runsc, and Execute there only with allow_weak_isolation (docs/runsc.md).
header "end-to-end against runsc 0.0~20221219 (tests/e2e/test_task.sh, test_execute.sh)"
if [[ ${GVSHIM_SKIP_E2E:-0} == 1 || ${GVSHIM_SKIP_OLD_RUNSC:-0} == 1 || ${GVSHIM_RUNSC:-new} != new ]]; then
  skipped e2e-old-runsc "GVSHIM_SKIP_E2E, GVSHIM_SKIP_OLD_RUNSC, or the main e2e run already used GVSHIM_RUNSC=${GVSHIM_RUNSC:-new}"
elif [[ $build_ok -ne 1 ]]; then
  not_run e2e-old-runsc "build failed"
else
  GVSHIM_RUNSC=old run_suite e2e-old-runsc e2e bash tests/e2e/run.sh tests/e2e/test_task.sh tests/e2e/test_execute.sh
fi

header "CRI suite (tests/cri, containerd's CRI plugin driven as a kubelet drives it)"
if [[ ${GVSHIM_SKIP_CRI:-0} == 1 ]]; then
  skipped cri "GVSHIM_SKIP_CRI=1"
elif [[ $build_ok -ne 1 ]]; then
  not_run cri "build failed"
else
  run_suite cri cri /usr/bin/python3 tests/cri/run.py
fi

header "summary ($((SECONDS - start))s)"
printf '%s\n' "${SUMMARY[@]}"
echo "test: $total_passed passed, $total_failed failed, $total_skipped skipped (stages: $stages_ok ok, $stages_failed failed, $stages_skipped skipped)"
[[ $total_failed -eq 0 && $stages_failed -eq 0 ]]
