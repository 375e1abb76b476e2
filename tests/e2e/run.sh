#!/usr/bin/env bash
# Runs every tests/e2e/test_*.sh (or the files given as arguments) and prints the totals as the last lines:
#   e2e: K skipped            (only when something was skipped)
#   e2e: N passed, M failed
# A file counts as failed (one failure more) when it exits non-zero without a failed case (it died, or its
# teardown found leftovers), or when it reported no case at all (unless E2E_CASES picked none of its cases).
# A run in which no case passed fails too (everything skipped is not a pass). Exits non-zero on any failure.
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ $# -gt 0 ]]; then files=("$@"); else files=("$E2E_DIR"/test_*.sh); fi

passed=0 failed=0 skipped=0
failures=()
for f in "${files[@]}"; do
  name=$(basename "${f%.sh}")
  echo "=== e2e: $name"
  log=$(mktemp)
  rc=0
  # Each file runs in its own process (own containerd); cases print "e2e-case: PASS|FAIL|SKIP file/case".
  bash "$f" </dev/null 2>&1 | tee "$log" || rc=$?
  p=$(grep -c '^e2e-case: PASS ' "$log" || true)
  m=$(grep -c '^e2e-case: FAIL ' "$log" || true)
  s=$(grep -c '^e2e-case: SKIP ' "$log" || true)
  while read -r line; do failures+=("$line"); done < <(sed -n 's/^e2e-case: FAIL //p' "$log")
  if [[ $rc -ne 0 && $m -eq 0 ]]; then
    m=1
    failures+=("$name (exited $rc outside any case)")
  elif [[ $((p + m + s)) -eq 0 && -z ${E2E_CASES:-} ]]; then
    m=1
    failures+=("$name (reported no case)")
  fi
  passed=$((passed + p)) failed=$((failed + m)) skipped=$((skipped + s))
  rm -f "$log"
done

if [[ $passed -eq 0 && $failed -eq 0 ]]; then
  failed=1
  failures+=("no e2e case passed (${skipped} skipped)")
fi
echo
if [[ ${#failures[@]} -gt 0 ]]; then
  echo "failed cases:"
  printf '  %s\n' "${failures[@]}"
fi
if [[ $skipped -gt 0 ]]; then echo "e2e: $skipped skipped"; fi
echo "e2e: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
