#!/usr/bin/env bash
# The Helm chart's tests: `helm lint --strict` and `helm template` over every charts/gvshim/ci/*-values.yaml with
# assertions on the rendered objects (check_render.py), the schema rejecting misspelt keys and wrong types, and
# the chart as a dependency of an application chart (tests/helm/parent-chart).
# Prints "helm-case: PASS|FAIL NAME" per case and "helm: N passed, M failed" last; exits non-zero on a failure.
# Env: HELM (default: /opt/gvshim/tools/bin/helm, installed by scripts/install-deps.sh, else helm on PATH)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CHART=$ROOT/charts/gvshim
PY=/usr/bin/python3
HELM=${HELM:-/opt/gvshim/tools/bin/helm}
[[ -x $HELM ]] || HELM=$(command -v helm || true)
if [[ -z $HELM ]]; then
  echo "helm-case: FAIL setup (no helm; run scripts/install-deps.sh)"
  echo "helm: 0 passed, 1 failed"
  exit 1
fi
WORK=$(mktemp -d /tmp/gvshim-helm.XXXX)
trap 'rm -rf "$WORK"' EXIT
passed=0 failed=0

# hcase NAME FUNCTION: runs FUNCTION in a subshell with errexit and counts it. (Not "( ... ) || rc=$?": a
# subshell on the left of || runs with errexit off, so a failing command inside would not end the case.)
hcase() {
  local rc
  set +e
  ( set -euo pipefail; "$2" ) >"$WORK/$1.log" 2>&1
  rc=$?
  set -e
  if [[ $rc -eq 0 ]]; then
    echo "helm-case: PASS $1"; passed=$((passed + 1))
  else
    echo "helm-case: FAIL $1"; sed 's/^/    /' "$WORK/$1.log"; failed=$((failed + 1))
  fi
}

# render OUT ARGS...: helm template of the chart into OUT.
render() { local out=$1; shift; "$HELM" template rel "$CHART" "$@" >"$out"; }
# lacks PATTERN FILE: FILE has no line matching PATTERN (a failing check, unlike "! grep" under errexit).
lacks() { if grep -q -- "$1" "$2"; then echo "unexpected match of $1 in $2" >&2; return 1; fi; }

lint_strict() {
  "$HELM" lint --strict "$CHART"
  local f
  for f in "$CHART"/ci/*-values.yaml; do "$HELM" lint --strict "$CHART" -f "$f"; done
}

# One case per ci/*-values.yaml file, named after it; check_render.py has the assertions.
ci_case() {
  local name=$1
  render "$WORK/$name.yaml" -f "$CHART/ci/$name-values.yaml"
  "$PY" "$HERE/check_render.py" "$name" "$WORK/$name.yaml"
}
off() { ci_case off; render "$WORK/defaults.yaml"; "$PY" "$HERE/check_render.py" off "$WORK/defaults.yaml"; }
enabled() { ci_case enabled; }
existing_runtimeclass() { ci_case existing-runtimeclass; }
runtimeclass_only() { ci_case runtimeclass-only; }
custom() { ci_case custom; }
executor() { ci_case executor; }
# The executor refuses to render where its pods would not be sandboxed or could not run snippets.
executor_rejected() {
  local pool=(--set executor.enabled=true --set executor.pool.image.repository=example.com/py-node)
  expect_rejected "needs sandbox.gvisor.enabled=true" "${pool[@]}"
  expect_rejected "needs sandbox.gvisor.enabled=true" "${pool[@]}" --set sandbox.gvisor.config.execute.enabled=true
  expect_rejected "needs sandbox.gvisor.config.execute.enabled=true" "${pool[@]}" --set sandbox.gvisor.enabled=true
  expect_rejected "executor.pool.image.repository is required" --set executor.enabled=true \
    --set sandbox.gvisor.enabled=true --set sandbox.gvisor.config.execute.enabled=true
  expect_rejected "'replica' not allowed" --set executor.pool.replica=3
  expect_rejected "runRateLimit" --set executor.gateway.runRateLimit=lots
  expect_rejected "timeout" --set executor.gateway.timeout=10
}
# An existing Secret, or no token at all (explicitly), changes what the gateway mounts.
executor_auth_variants() {
  local on=(-f "$CHART/ci/executor-values.yaml")
  render "$WORK/ex-secret.yaml" "${on[@]}" --set executor.auth.existingSecret=ragflow-sandbox --set executor.auth.secretKey=api-token
  grep -q "secretName: ragflow-sandbox" "$WORK/ex-secret.yaml"
  grep -q -- "--token-file=/etc/gvshim-gateway/api-token" "$WORK/ex-secret.yaml"
  lacks "^kind: Secret" "$WORK/ex-secret.yaml"
  render "$WORK/ex-open.yaml" "${on[@]}" --set executor.auth.allowUnauthenticated=true
  grep -q -- "--allow-unauthenticated" "$WORK/ex-open.yaml"
  lacks "--token-file" "$WORK/ex-open.yaml"
  lacks "^kind: Secret" "$WORK/ex-open.yaml"
  render "$WORK/ex-token.yaml" "${on[@]}" --set executor.auth.token=given-token
  grep -q "token: \"$(printf given-token | base64)\"" "$WORK/ex-token.yaml"
}

# expect_rejected WHAT ARGS...: helm template must fail and name WHAT in its message.
expect_rejected() {
  local what=$1 out rc=0; shift
  out=$("$HELM" template rel "$CHART" "$@" 2>&1) || rc=$?
  [[ $rc -ne 0 ]] || { echo "accepted: $*"; return 1; }
  [[ $out == *"$what"* ]] || { echo "rejected without naming $what: $out"; return 1; }
}
schema_rejects() {
  expect_rejected "'enabeld' not allowed" --set sandbox.gvisor.enabeld=true
  expect_rejected "'nodeSelectr' not allowed" --set sandbox.gvisor.enabled=true --set sandbox.gvisor.installer.nodeSelectr.a=b
  expect_rejected "'sandboxx' not allowed" --set sandboxx.gvisor.enabled=true
  expect_rejected "'hardning' not allowed" --set sandbox.gvisor.config.hardning.seccomp_profile=strict
  expect_rejected "enabled" --set-string sandbox.gvisor.enabled=yes
  expect_rejected "network" --set sandbox.gvisor.config.runsc.network=bridge
  expect_rejected "handler" --set sandbox.gvisor.runtimeClass.handler=Not_A_Handler
}

# The parent chart renders with this chart copied in as its dependency.
parent_setup() {
  rm -rf "$WORK/parent"
  cp -r "$HERE/parent-chart" "$WORK/parent"
  mkdir -p "$WORK/parent/charts"
  cp -r "$CHART" "$WORK/parent/charts/gvshim"
}
parent_chart() {
  parent_setup
  "$HELM" lint --strict "$WORK/parent"
  "$HELM" template app "$WORK/parent" >"$WORK/p-off.yaml"
  "$PY" "$HERE/check_render.py" parent-off "$WORK/p-off.yaml"
  "$HELM" template app "$WORK/parent" --set gvshim.sandbox.gvisor.enabled=true >"$WORK/p-dep.yaml"
  "$PY" "$HERE/check_render.py" parent-on "$WORK/p-dep.yaml"
  "$HELM" template app "$WORK/parent" --set global.sandbox.gvisor.enabled=true >"$WORK/p-global.yaml"
  "$PY" "$HERE/check_render.py" parent-on "$WORK/p-global.yaml"
  # The dependency's schema still applies inside the parent.
  local out rc=0
  out=$("$HELM" template app "$WORK/parent" --set gvshim.sandbox.gvisor.enabeld=true 2>&1) || rc=$?
  [[ $rc -ne 0 && $out == *"'enabeld' not allowed"* ]] || { echo "parent: misspelt key accepted: $out"; return 1; }
}

hcase lint_strict lint_strict
hcase off_renders_nothing_node_level off
hcase enabled enabled
hcase existing_runtimeclass existing_runtimeclass
hcase runtimeclass_only runtimeclass_only
hcase custom_values custom
hcase schema_rejects_misspelt_keys schema_rejects
hcase parent_chart parent_chart
hcase executor executor
hcase executor_rejected executor_rejected
hcase executor_auth_variants executor_auth_variants

echo "helm: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
