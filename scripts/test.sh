#!/usr/bin/env bash
# Everything CI runs, in order: dependencies, build, unit tests (ctest), the ASan+UBSan unit build and its tests,
# a short smoke run of every libFuzzer target, the Helm chart's tests (tests/helm), and the end-to-end suite
# against a private containerd (including the node installer's, tests/e2e/test_node_installer.sh).
#
# Env: GVSHIM_SKIP_DEPS=1       skip scripts/install-deps.sh
#      GVSHIM_FUZZ_SECONDS=N    seconds per fuzz target (default 10; 0 skips fuzzing)
#      GVSHIM_SKIP_ASAN=1       skip the sanitizer build (local iteration only; CI runs it)
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
total_passed=0 total_failed=0 any_failed=0

header() {
  echo
  echo "=================================================================================================="
  echo "== $*"
  echo "=================================================================================================="
}

# record NAME RC [DETAIL]
record() {
  local status=ok
  if [[ $2 -ne 0 ]]; then status="FAILED (exit $2)"; any_failed=1; fi
  SUMMARY+=("$(printf '%-22s %s %s' "$1" "$status" "${3:-}")")
}

# count_ctest LOG: adds ctest's "N tests failed out of M" to the totals.
count_ctest() {
  local line failed total
  line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$1" | tail -n 1 || true)
  if [[ -n $line ]]; then
    failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    total=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$line")
    total_passed=$((total_passed + total - failed)) total_failed=$((total_failed + failed))
  fi
}

# run_ctest NAME BUILD_DIR
run_ctest() {
  local rc=0
  ctest --test-dir "$2" --output-on-failure -j "$JOBS" --timeout 300 2>&1 | tee "$LOGDIR/$1.log" || rc=${PIPESTATUS[0]}
  count_ctest "$LOGDIR/$1.log"
  record "$1" "$rc" "$(grep -E 'tests passed' "$LOGDIR/$1.log" | tail -n 1 || true)"
}

start=$SECONDS

header "dependencies"
if [[ ${GVSHIM_SKIP_DEPS:-0} == 1 ]]; then
  echo "skipped (GVSHIM_SKIP_DEPS=1)"
else
  rc=0; bash scripts/install-deps.sh || rc=$?; record deps "$rc"
  [[ $rc -eq 0 ]] || { echo "dependencies failed; stopping"; exit 1; }
fi

header "build (build/)"
rc=0; bash scripts/build.sh --main || rc=$?; record build "$rc"
build_ok=$((rc == 0))

header "unit tests (ctest, build/)"
if [[ $build_ok -eq 1 ]]; then run_ctest unit build; else echo "skipped: build failed"; record unit 1 "not run"; fi

header "Helm chart (tests/helm: helm lint --strict, helm template assertions, schema, parent chart)"
rc=0
bash tests/helm/test_chart.sh 2>&1 | tee "$LOGDIR/helm.log" || rc=${PIPESTATUS[0]}
line=$(grep -E '^helm: [0-9]+ passed, [0-9]+ failed' "$LOGDIR/helm.log" | tail -n 1 || true)
if [[ -n $line ]]; then
  p=$(sed -E 's/^helm: ([0-9]+) passed, ([0-9]+) failed.*/\1/' <<<"$line")
  m=$(sed -E 's/^helm: ([0-9]+) passed, ([0-9]+) failed.*/\2/' <<<"$line")
  total_passed=$((total_passed + p)) total_failed=$((total_failed + m))
else
  [[ $rc -ne 0 ]] || rc=1  # the stage did not report: count it as failed
  total_failed=$((total_failed + 1))
fi
record helm-chart "$rc" "$line"

header "ASan+UBSan unit tests (build-asan/)"
if [[ ${GVSHIM_SKIP_ASAN:-0} == 1 ]]; then
  echo "skipped (GVSHIM_SKIP_ASAN=1)"
else
  rc=0; bash scripts/build.sh --asan || rc=$?
  if [[ $rc -eq 0 ]]; then
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    run_ctest asan-unit build-asan
  else
    record asan-build "$rc"
  fi
fi

header "fuzz smoke (build-fuzz/, ${FUZZ_SECONDS}s per target)"
if [[ $FUZZ_SECONDS -gt 0 ]]; then
  rc=0; bash scripts/build.sh --fuzz || rc=$?
  if [[ $rc -ne 0 ]]; then
    record fuzz-build "$rc"
  else
    mapfile -t fuzzers < <(find build-fuzz -type f -name '*_fuzz' -perm -u+x | sort)
    if [[ ${#fuzzers[@]} -eq 0 ]]; then echo "no fuzz targets built"; fi
    for f in "${fuzzers[@]}"; do
      name=$(basename "$f")
      corpus=$LOGDIR/corpus-$name
      mkdir -p "$corpus"
      # Seeds from the repo, if any, are copied so the run never writes into the source tree.
      if [[ -d tests/fuzz/corpus/$name ]]; then cp -r "tests/fuzz/corpus/$name/." "$corpus/"; fi
      echo "-- $name"
      rc=0
      "$f" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$LOGDIR/" "$corpus" >"$LOGDIR/$name.log" 2>&1 || rc=$?
      tail -n 5 "$LOGDIR/$name.log"
      if [[ $rc -ne 0 ]]; then
        echo "$name FAILED; its log:"
        tail -n 60 "$LOGDIR/$name.log"
        total_failed=$((total_failed + 1))
      else
        total_passed=$((total_passed + 1))
      fi
      record "fuzz $name" "$rc"
    done
  fi
else
  echo "skipped (GVSHIM_FUZZ_SECONDS=0)"
fi

header "end-to-end (tests/e2e, private containerd + runsc)"
if [[ ${GVSHIM_SKIP_E2E:-0} == 1 ]]; then
  echo "skipped (GVSHIM_SKIP_E2E=1)"
elif [[ $build_ok -ne 1 ]]; then
  echo "skipped: build failed"; record e2e 1 "not run"
else
  rc=0
  bash tests/e2e/run.sh 2>&1 | tee "$LOGDIR/e2e.log" || rc=${PIPESTATUS[0]}
  line=$(grep -E '^e2e: [0-9]+ passed, [0-9]+ failed' "$LOGDIR/e2e.log" | tail -n 1 || true)
  if [[ -n $line ]]; then
    p=$(sed -E 's/^e2e: ([0-9]+) passed, ([0-9]+) failed.*/\1/' <<<"$line")
    m=$(sed -E 's/^e2e: ([0-9]+) passed, ([0-9]+) failed.*/\2/' <<<"$line")
    total_passed=$((total_passed + p)) total_failed=$((total_failed + m))
  fi
  record e2e "$rc" "$line"
fi

# The shim keeps working with the old runsc, and Execute there only with allow_weak_isolation (docs/runsc.md).
header "end-to-end against runsc 0.0~20221219 (tests/e2e/test_task.sh, test_execute.sh)"
if [[ ${GVSHIM_SKIP_E2E:-0} == 1 || ${GVSHIM_SKIP_OLD_RUNSC:-0} == 1 || ${GVSHIM_RUNSC:-new} != new ]]; then
  echo "skipped (GVSHIM_SKIP_E2E, GVSHIM_SKIP_OLD_RUNSC, or the main e2e run already used GVSHIM_RUNSC=${GVSHIM_RUNSC:-new})"
elif [[ $build_ok -ne 1 ]]; then
  echo "skipped: build failed"; record e2e-old-runsc 1 "not run"
else
  rc=0
  GVSHIM_RUNSC=old bash tests/e2e/run.sh tests/e2e/test_task.sh tests/e2e/test_execute.sh 2>&1 |
    tee "$LOGDIR/e2e-old.log" || rc=${PIPESTATUS[0]}
  line=$(grep -E '^e2e: [0-9]+ passed, [0-9]+ failed' "$LOGDIR/e2e-old.log" | tail -n 1 || true)
  if [[ -n $line ]]; then
    p=$(sed -E 's/^e2e: ([0-9]+) passed, ([0-9]+) failed.*/\1/' <<<"$line")
    m=$(sed -E 's/^e2e: ([0-9]+) passed, ([0-9]+) failed.*/\2/' <<<"$line")
    total_passed=$((total_passed + p)) total_failed=$((total_failed + m))
  else
    rc=${rc:-1}; [[ $rc -ne 0 ]] || rc=1
  fi
  record e2e-old-runsc "$rc" "$line"
fi

header "CRI suite (tests/cri, containerd's CRI plugin driven as a kubelet drives it)"
if [[ ${GVSHIM_SKIP_CRI:-0} == 1 ]]; then
  echo "skipped (GVSHIM_SKIP_CRI=1)"
elif [[ $build_ok -ne 1 ]]; then
  echo "skipped: build failed"; record cri 1 "not run"
else
  rc=0
  /usr/bin/python3 tests/cri/run.py 2>&1 | tee "$LOGDIR/cri.log" || rc=${PIPESTATUS[0]}
  line=$(grep -E '^cri: [0-9]+ passed, [0-9]+ failed' "$LOGDIR/cri.log" | tail -n 1 || true)
  if [[ -n $line ]]; then
    p=$(sed -E 's/^cri: ([0-9]+) passed, ([0-9]+) failed.*/\1/' <<<"$line")
    m=$(sed -E 's/^cri: ([0-9]+) passed, ([0-9]+) failed.*/\2/' <<<"$line")
    total_passed=$((total_passed + p)) total_failed=$((total_failed + m))
  else
    # The suite did not report: count it as a failure so that the run cannot pass without it.
    total_failed=$((total_failed + 1))
    [[ $rc -ne 0 ]] || rc=1
    line="no result line"
  fi
  record cri "$rc" "$line"
fi

header "summary ($((SECONDS - start))s)"
printf '%s\n' "${SUMMARY[@]}"
echo "test: $total_passed passed, $total_failed failed"
exit "$any_failed"
