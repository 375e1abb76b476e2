#!/usr/bin/env bash
# Static checks that need no running system:
#   scripts/lint.sh tidy    clang-tidy (.clang-tidy) over every shim/**/*.cc, with build-fuzz/compile_commands.json
#                           (scripts/build.sh --fuzz makes it); a finding is an error
#   scripts/lint.sh shell   shellcheck (.shellcheckrc) over every shell script in scripts/ and tests/
#   scripts/lint.sh format  clang-format (.clang-format) --dry-run over every tracked *.cc and *.h; a file that
#                           `clang-format -i` would change is a failure
#   scripts/lint.sh         all three
# Each part prints one summary line, "lint-<part>: N checked, M failed", and the script exits non-zero if any
# file failed or nothing was checked. Env: JOBS (default nproc), BUILD_FUZZ_DIR (default build-fuzz).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
JOBS=${JOBS:-$(nproc)}
BUILD_FUZZ_DIR=${BUILD_FUZZ_DIR:-$ROOT/build-fuzz}
parts=("$@")
if [[ ${#parts[@]} -eq 0 ]]; then parts=(tidy shell format); fi
rc=0

# Files tracked by git under the given paths (the worktree's view, so new files count once added).
tracked() { git ls-files -- "$@"; }

lint_tidy() {
  if [[ ! -f $BUILD_FUZZ_DIR/compile_commands.json ]]; then
    echo "lint-tidy: $BUILD_FUZZ_DIR/compile_commands.json missing (run scripts/build.sh --fuzz first)" >&2
    echo "lint-tidy: 0 checked, 1 failed"
    return 1
  fi
  local -a files
  mapfile -t files < <(tracked 'shim/*.cc')
  local out
  out=$(mktemp -d)
  # One clang-tidy per file, JOBS at a time; each writes its findings to its own file.
  # shellcheck disable=SC2016 # the inner script expands its own arguments
  printf '%s\n' "${files[@]}" | xargs -P "$JOBS" -I{} sh -c \
    'clang-tidy -p "$1" --quiet "$2" >"$3/$(echo "$2" | tr / _).log" 2>&1 || echo "$2" >>"$3/failed"' \
    _ "$BUILD_FUZZ_DIR" {} "$out"
  local failed=0
  if [[ -f $out/failed ]]; then
    failed=$(sort -u "$out/failed" | wc -l)
    while read -r f; do
      echo "-- clang-tidy $f"
      grep -E 'warning:|error:' -A3 "$out/$(echo "$f" | tr / _).log" | head -n 40
    done < <(sort -u "$out/failed")
  fi
  rm -rf "$out"
  echo "lint-tidy: ${#files[@]} checked, $failed failed"
  [[ ${#files[@]} -gt 0 && $failed -eq 0 ]]
}

lint_shell() {
  local -a files
  local f
  files=()
  while read -r f; do
    [[ -f $f ]] || continue
    if [[ $f == *.sh ]] || head -n 1 "$f" | grep -qE '^#!.*\b(ba)?sh\b'; then files+=("$f"); fi
  done < <(tracked scripts tests)
  local failed=0
  for f in "${files[@]}"; do
    if ! shellcheck -x -f gcc "$f"; then failed=$((failed + 1)); fi
  done
  echo "lint-shell: ${#files[@]} checked, $failed failed"
  [[ ${#files[@]} -gt 0 && $failed -eq 0 ]]
}

lint_format() {
  local -a files
  mapfile -t files < <(tracked '*.cc' '*.h')
  local failed=0 f
  for f in "${files[@]}"; do
    [[ -f $f ]] || continue
    if ! clang-format --dry-run -Werror "$f" 2>/dev/null; then
      echo "-- clang-format would change $f (run: clang-format -i $f)"
      failed=$((failed + 1))
    fi
  done
  echo "lint-format: ${#files[@]} checked, $failed failed"
  [[ ${#files[@]} -gt 0 && $failed -eq 0 ]]
}

for p in "${parts[@]}"; do
  case $p in
    tidy) lint_tidy || rc=1 ;;
    shell) lint_shell || rc=1 ;;
    format) lint_format || rc=1 ;;
    *) echo "lint.sh: unknown part $p (tidy, shell, format)" >&2; exit 2 ;;
  esac
done
exit "$rc"
