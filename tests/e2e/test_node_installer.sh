#!/usr/bin/env bash
# The node installer (`gvshim node install|uninstall|status|canary`) against a real private containerd 1.6 whose
# config, binaries and state live in a host-root directory this test makes ($HR), restarted by a script that
# restarts that containerd by pid (the installer's --restart-command); the Kubernetes API is a stand-in
# (tests/e2e/tools/kube_api_standin.py, HTTPS on 127.0.0.1) since there is no cluster here. The payload is taken
# out of the node image (scripts/build-node-image.sh), which is also the canary's image and the pod sandbox image.
# Cases run in order: each starts from the state the previous one left.
# shellcheck disable=SC2317
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CASES=(install reinstall_is_a_noop replay_helm_test_pods uninstall_restores_the_original
       ineffective_dropin_is_rolled_back_without_restart)
e2e_require_root_runsc "${CASES[@]}"
HELM=${HELM:-/opt/gvshim/tools/bin/helm}
GVSHIM=$E2E_BIN_DIR/gvshim
NODE_NAME=e2e-node
LABEL=gvshim.dev/gvisor

D=$(mktemp -d /tmp/gvn.XXXX)
HR=$D/host
CFG=$HR/etc/containerd/config.toml
SOCK=$D/c.sock
KUBE=$D/api
echo "gvshim private containerd" >"$D/.gvshim-containerd" # containerd-down.sh may clean this dir
echo "GVS_RUNSC=$(command -v runsc)" >"$D/env"
mkdir -p "$HR/etc/containerd" "$D"/{root,state,runsc,opt,cni/bin,cni/conf} "$KUBE/daemonsets"

teardown() {
  local rc=$?
  if [[ -n ${KUBE_FD:-} ]]; then exec {KUBE_FD}>&-; fi
  if [[ -f $D/containerd.pid ]]; then
    local pid
    pid=$(cat "$D/containerd.pid")
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait_gone_pid "$pid" 30 || kill -KILL "$pid" 2>/dev/null; fi
    rm -f "$D/containerd.pid"
  fi
  if [[ $rc -ne 0 ]]; then tail -n 30 "$D/containerd.log" >&2 || true; fi
  bash "$REPO_ROOT/scripts/containerd-down.sh" "$D" || true
  return "$rc"
}
wait_gone_pid() { local deadline=$((SECONDS + $2)); while kill -0 "$1" 2>/dev/null; do [[ $SECONDS -lt $deadline ]] || return 1; sleep 0.1; done; }
trap teardown EXIT

# --- the "host": containerd's root config (version 2, a runc runtime with options, no gvisor) -----------------
NODE_IMAGE=$(bash "$REPO_ROOT/scripts/build-node-image.sh" --bin-dir "$E2E_BIN_DIR" --out "$REPO_ROOT/build/image")
cat >"$CFG" <<TOML
# The test node's own containerd config; the installer must give back these exact bytes on uninstall.
version = 2
root = "$D/root"
state = "$D/state"

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$D/opt"

[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  sandbox_image = "$NODE_IMAGE"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$D/runc-root"
        NoNewKeyring = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$D/cni/bin"
    conf_dir = "$D/cni/conf"
TOML
cp "$CFG" "$D/config.orig"

# start_containerd: containerd in its own session, stdio to its log, pid in $D/containerd.pid.
cat >"$D/start.sh" <<SH
#!/bin/bash
set -euo pipefail
# containerd finds a pod sandbox's shim by name on its PATH: the host's /usr/local/bin comes first, as on a node.
PATH="$HR/usr/local/bin:\$PATH" setsid containerd --config "$CFG" </dev/null >>"$D/containerd.log" 2>&1 &
echo \$! >"$D/containerd.pid"
deadline=\$((SECONDS + 30))
until ctr -a "$SOCK" --timeout 2s version >/dev/null 2>&1; do
  kill -0 "\$(cat "$D/containerd.pid")" 2>/dev/null || { echo "containerd exited; see $D/containerd.log" >&2; exit 1; }
  [[ \$SECONDS -lt \$deadline ]] || { echo "containerd did not answer" >&2; exit 1; }
  sleep 0.1
done
SH
# The installer's restart command: stop this containerd by pid, start it again; each restart is counted.
cat >"$D/restart.sh" <<SH
#!/bin/bash
set -euo pipefail
pid=\$(cat "$D/containerd.pid")
kill -TERM "\$pid"
deadline=\$((SECONDS + 30))
while kill -0 "\$pid" 2>/dev/null; do [[ \$SECONDS -lt \$deadline ]] || kill -KILL "\$pid"; sleep 0.1; done
echo restart >>"$D/restarts"
exec bash "$D/start.sh"
SH
: >"$D/restarts"
bash "$D/start.sh"
ctr -a "$SOCK" -n k8s.io images import "$REPO_ROOT/build/image/node/image.tar" >/dev/null

# The payload the DaemonSet would use: taken out of the node image.
mkdir -p "$D/image" "$D/node-fs"
tar -C "$D/image" -xf "$REPO_ROOT/build/image/node/image.tar"
manifest=$(jq -r '.manifests[0].digest | sub("sha256:"; "")' "$D/image/index.json")
layer=$(jq -r '.layers[0].digest | sub("sha256:"; "")' "$D/image/blobs/sha256/$manifest")
tar -C "$D/node-fs" -xf "$D/image/blobs/sha256/$layer" ./opt/gvshim-node/payload
PAYLOAD=$D/node-fs/opt/gvshim-node/payload

# The chart's node config, as the ConfigMap carries it (runsc state kept in this test's dir).
# This containerd has no CNI, so the canary and the replayed test pods share the node's network namespace
# (--host-network); the node policy gives them gVisor's own loopback-only network instead of refusing them.
printf '{"runsc":{"root":"%s","network":"none"},"shim":{"log_level":"debug"},"hardening":{"host_network":"isolated"}}\n' \
  "$D/runsc" >"$D/gvshim.json"

# --- the Kubernetes API stand-in ---------------------------------------------------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$KUBE/tls.key" -out "$KUBE/tls.crt" -days 1 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1
cp "$KUBE/tls.crt" "$KUBE/ca.crt"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$KUBE/token"
echo '{"kubernetes.io/os": "linux"}' >"$KUBE/node.json"
exec {KUBE_FD}> >(exec "$PY" "$E2E_DIR/tools/kube_api_standin.py" "$KUBE" "$NODE_NAME")
for _ in $(seq 100); do [[ -f $KUBE/port ]] && break; sleep 0.1; done
[[ -f $KUBE/port ]] || { echo "e2e-case: FAIL $E2E_FILE/setup (API stand-in did not start)"; exit 1; }
export KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=$(cat "$KUBE/port") GVSHIM_KUBE_TOKEN_DIR=$KUBE

ARGS=(--host-root=/ --install-dir="$HR/opt/gvshim/bin" --profiles-dir="$HR/opt/gvshim/seccomp-profiles"
      --state-dir="$HR/opt/gvshim/state" --containerd-config="$CFG" --gvshim-config="$HR/etc/containerd/gvshim.toml"
      --cri-socket="$SOCK" --shim-link-dir="$HR/usr/local/bin" --restart-command="bash $D/restart.sh"
      --node-config="$D/gvshim.json"
      --payload="$PAYLOAD" --canary-image="$NODE_IMAGE" --canary-host-network --node-name="$NODE_NAME"
      --handler=gvisor --node-label="$LABEL=ready")
node_cmd() { timeout --kill-after=5 300 "$GVSHIM" node "$@" "${ARGS[@]}"; }
dump() { containerd --config "$CFG" config dump; }
restarts() { wc -l <"$D/restarts"; }
label() { jq -r --arg k "$LABEL" '.[$k] // ""' "$KUBE/node.json"; }
# same_except_gvisor BEFORE AFTER: the two dumps differ only by runtimes.gvisor (and the list of imported files).
same_except_gvisor() {
  "$PY" - "$1" "$2" <<'PYEOF'
import sys, tomllib
b, a = (tomllib.load(open(p, "rb")) for p in sys.argv[1:3])
rt = a["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
g = rt.pop("gvisor", None)
assert g is not None, "gvisor not registered"
assert g["runtime_type"] == "io.containerd.gvisor.v1", g
assert g["runtime_path"].endswith("/opt/gvshim/bin/containerd-shim-gvisor-v1"), g
assert g["options"]["ConfigPath"].endswith("/etc/containerd/gvshim.toml"), g
for d in (a, b):
    d.pop("imports", None)
if a != b:
    import json
    diff = [k for k in set(a) | set(b) if a.get(k) != b.get(k)]
    sys.exit(f"dumps differ beyond runtimes.gvisor in {diff}")
PYEOF
}

install() {
  dump >"$D/dump.before"
  local pid0 out rc
  pid0=$(cat "$D/containerd.pid")
  [[ -z $(label) ]] || fail "node labelled before install"
  run_rc out rc node_cmd install
  echo "$out" >&2
  assert_eq 0 "$rc" "install"
  assert_contains "$out" "config changed, containerd restarted, canary passed, node labelled"
  assert_eq 1 "$(restarts)" "containerd restarted once"
  [[ $(cat "$D/containerd.pid") != "$pid0" ]] || fail "containerd pid unchanged after a restart"
  dump >"$D/dump.after"
  same_except_gvisor "$D/dump.before" "$D/dump.after"
  assert_eq ready "$(label)" "node label"
  grep -q "^PATCH /api/v1/nodes/$NODE_NAME {\"metadata\":{\"labels\":{\"$LABEL\":\"ready\"}}}$" "$KUBE/requests.log" ||
    fail "label patch: $(cat "$KUBE/requests.log")"
  cmp "$PAYLOAD/runsc" "$HR/opt/gvshim/bin/runsc"
  [[ $(readlink "$HR/usr/local/bin/containerd-shim-gvisor-v1") == "$HR/opt/gvshim/bin/containerd-shim-gvisor-v1" ]]
  "$PY" -c 'import sys, tomllib; c = tomllib.load(open(sys.argv[1], "rb")); assert c["runsc"]["binary"] == sys.argv[2], c' \
    "$HR/etc/containerd/gvshim.toml" "$HR/opt/gvshim/bin/runsc"
  run_rc out rc node_cmd status
  assert_eq 0 "$rc" "status after install: $out"
  # The canary pod is gone: the probe first sees pods (none left) through the same CRI listing ctr uses.
  assert_eq "" "$(ctr -a "$SOCK" -n k8s.io containers ls -q)" "containers left by the canary"
}

reinstall_is_a_noop() {
  local pid0 out rc
  pid0=$(cat "$D/containerd.pid")
  cp "$CFG" "$D/config.installed"
  stat -c %Y.%i "$HR/opt/gvshim/bin/runsc" "$HR/etc/containerd/gvshim/cri-gvisor.toml" >"$D/stat.before"
  run_rc out rc node_cmd install
  echo "$out" >&2
  assert_eq 0 "$rc" "re-install"
  assert_contains "$out" "0 file(s) written, config unchanged, containerd not restarted, canary not needed"
  assert_eq 1 "$(restarts)" "no second restart"
  assert_eq "$pid0" "$(cat "$D/containerd.pid")" "containerd pid"
  cmp "$CFG" "$D/config.installed"
  stat -c %Y.%i "$HR/opt/gvshim/bin/runsc" "$HR/etc/containerd/gvshim/cri-gvisor.toml" | cmp - "$D/stat.before"
}

# The chart's helm test pods, run through the CRI under the handler of the RuntimeClass they name (as a kubelet
# would after the RuntimeClass admission), must pass; the same pod under runc must fail (the test can fail).
replay_helm_test_pods() {
  "$HELM" template gvshim "$REPO_ROOT/charts/gvshim" --set sandbox.gvisor.enabled=true \
    --set sandbox.gvisor.installer.image.repository="${NODE_IMAGE%:*}" \
    --set sandbox.gvisor.installer.image.tag="${NODE_IMAGE##*:}" >"$D/rendered.yaml"
  "$PY" - "$D/rendered.yaml" >"$D/pods.json" <<'PYEOF'
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
handlers = {d["metadata"]["name"]: d["handler"] for d in docs if d["kind"] == "RuntimeClass"}
for d in docs:
    if d["kind"] == "Pod" and d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test":
        c = d["spec"]["containers"][0]
        print(json.dumps({"name": d["metadata"]["name"], "handler": handlers[d["spec"]["runtimeClassName"]],
                          "image": c["image"], "argv": c.get("command", []) + c.get("args", [])}))
PYEOF
  [[ -s $D/pods.json ]] || fail "no helm test pod rendered"
  local line name handler image out rc
  local -a argv
  while read -r line; do
    name=$(jq -r .name <<<"$line") handler=$(jq -r .handler <<<"$line") image=$(jq -r .image <<<"$line")
    mapfile -d '' -t argv < <(jq -j '.argv[] | (., "\u0000")' <<<"$line")  # NUL-separated: args span lines
    assert_eq gvisor "$handler" "RuntimeClass handler of $name"
    run_rc out rc timeout 300 "$GVSHIM" node canary --cri-socket="$SOCK" --handler=runc --image="$image" \
      --host-network --log-dir="$D/canary-logs" --name="$name-runc" --namespace=default -- "${argv[@]}"
    echo "$out" >&2
    [[ $rc -ne 0 ]] || fail "the helm test pod passed under runc: $out"
    assert_contains "$out" "not in gVisor"
    run_rc out rc timeout 300 "$GVSHIM" node canary --cri-socket="$SOCK" --handler="$handler" --image="$image" \
      --host-network --log-dir="$D/canary-logs" --name="$name" --namespace=default -- "${argv[@]}"
    echo "$out" >&2
    assert_eq 0 "$rc" "helm test pod $name under $handler"
    assert_contains "$out" "gvshim-test: gVisor, read-only root, no capabilities"
  done <"$D/pods.json"
}

uninstall_restores_the_original() {
  local out rc
  run_rc out rc node_cmd uninstall
  echo "$out" >&2
  assert_eq 0 "$rc" "uninstall"
  cmp "$CFG" "$D/config.orig" || fail "root config not restored byte for byte"
  dump >"$D/dump.uninstalled"
  diff "$D/dump.before" "$D/dump.uninstalled" || fail "config dump differs from the one before install"
  assert_eq 2 "$(restarts)" "restarted once by uninstall"
  assert_eq "" "$(label)" "label removed"
  [[ ! -e $HR/opt/gvshim && ! -e $HR/etc/containerd/gvshim.toml && ! -e $HR/etc/containerd/gvshim && ! -e $HR/usr ]] ||
    fail "left behind: $(find "$HR/opt" "$HR/usr" "$HR/etc/containerd" -mindepth 1 2>/dev/null | grep -v config.toml)"
  run_rc out rc node_cmd status
  assert_eq 3 "$rc" "status after uninstall: $out"
}

# A nested import (vendor.toml -> vendor-cri.toml) is merged after our drop-in and replaces the whole CRI table,
# so the merged config would not have the gvisor handler: containerd's own `config dump` shows it, the installer
# puts every file back and never restarts containerd.
ineffective_dropin_is_rolled_back_without_restart() {
  printf 'version = 2\nimports = ["%s"]\n' "$HR/etc/containerd/vendor-cri.toml" >"$HR/etc/containerd/vendor.toml"
  printf 'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "%s"\n' "$NODE_IMAGE" \
    >"$HR/etc/containerd/vendor-cri.toml"
  "$PY" - "$CFG" "$HR/etc/containerd/vendor.toml" <<'PYEOF'
import sys
text = open(sys.argv[1]).read()
open(sys.argv[1], "w").write(text.replace("version = 2\n", f'version = 2\nimports = ["{sys.argv[2]}"]\n', 1))
PYEOF
  cp "$CFG" "$D/config.vendor"
  dump >/dev/null || fail "the vendor config itself is valid"
  local pid0 n0 out rc
  pid0=$(cat "$D/containerd.pid") n0=$(restarts)
  run_rc out rc node_cmd install
  echo "$out" >&2
  [[ $rc -ne 0 ]] || fail "install succeeded with an ineffective drop-in"
  assert_contains "$out" "does not register runtime \"gvisor\""
  assert_contains "$out" "original containerd config restored"
  cmp "$CFG" "$D/config.vendor" || fail "root config not restored"
  [[ ! -e $HR/etc/containerd/gvshim/cri-gvisor.toml ]] || fail "drop-in left behind"
  [[ ! -e $HR/opt/gvshim/bin/runsc ]] || fail "binaries left behind by a failed first install"
  assert_eq "$n0" "$(restarts)" "no restart"
  assert_eq "$pid0" "$(cat "$D/containerd.pid")" "containerd pid"
  assert_eq "" "$(label)" "no label"
}

e2e_run_cases "${CASES[@]}"
