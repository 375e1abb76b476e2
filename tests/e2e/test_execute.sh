#!/usr/bin/env bash
# The Execute service through the real shim, in a BusyBox-based image with python3 and node (no util-linux): snippets run in the pod's gVisor sandbox via
# `gvshim exec` (the cases are in execute_cases.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck disable=SC2034 # read by execute_cases.sh
EXEC_VARIANT=python-node
source "$(dirname "${BASH_SOURCE[0]}")/execute_cases.sh"

CASES=("${EXEC_CASES[@]}")
e2e_require_root_runsc "${CASES[@]}"
[[ $E2E_RUNTIME == gvisor ]] || { for n in "${CASES[@]}"; do echo "e2e-case: SKIP $E2E_FILE/$n (gvisor only)"; done; exit 0; }
e2e_setup
exec_setup

e2e_run_cases "${CASES[@]}"
exec_teardown
