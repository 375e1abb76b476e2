#!/usr/bin/python3
"""Assertions on `helm template` output of charts/gvshim (called by tests/helm/test_chart.sh).

    check_render.py CASE RENDERED.yaml

Exits 0 when every assertion of CASE holds, else prints the first failing one and exits 1.
"""
import json
import sys

import yaml

NODE_LEVEL = {"RuntimeClass", "DaemonSet", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
              "RoleBinding", "ConfigMap", "Job", "Pod"}


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def of_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def one(docs, kind, name=None):
    found = [d for d in of_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    check(len(found) == 1, f"expected one {kind}{' ' + name if name else ''}, found {len(found)}")
    return found[0]


def hook(d):
    return d["metadata"].get("annotations", {}).get("helm.sh/hook")


def installer_args(ds):
    c = ds["spec"]["template"]["spec"]["containers"][0]
    return c["command"] + c["args"]


def arg(ds, flag):
    vals = [a.split("=", 1)[1] for a in installer_args(ds) if a.startswith(flag + "=")]
    check(len(vals) == 1, f"installer flag {flag} given {len(vals)} times")
    return vals[0]


def check_no_node_level(docs):
    kinds = sorted({d["kind"] for d in docs} & NODE_LEVEL)
    check(not kinds, f"nothing node-level may render with sandbox.gvisor.enabled=false, got {kinds}")


def check_installer(docs, release_ns="default", label=("gvshim.dev/gvisor", "ready"), handler="gvisor"):
    ds = one(docs, "DaemonSet")
    name = ds["metadata"]["name"]
    spec = ds["spec"]["template"]["spec"]
    check(spec["serviceAccountName"] == name, "DaemonSet runs as its own ServiceAccount")
    check(spec["hostPID"] is True, "hostPID (nsenter into pid 1's mount namespace)")
    c = spec["containers"][0]
    check(c["securityContext"]["privileged"] is True, "installer container is privileged")
    check(c["command"] == ["/usr/local/bin/gvshim", "node", "run"], f"installer command {c['command']}")
    host = [v for v in spec["volumes"] if v.get("hostPath")]
    check(len(host) == 1 and host[0]["hostPath"]["path"] == "/", "exactly one hostPath volume: the host root")
    mount = [m for m in c["volumeMounts"] if m["name"] == host[0]["name"]][0]
    check(mount["mountPath"] == "/host" and arg(ds, "--host-root") == "/host", "host root mounted at /host")
    check(arg(ds, "--handler") == handler, "installer registers the RuntimeClass's handler")
    check(arg(ds, "--node-label") == f"{label[0]}={label[1]}", "installer sets the RuntimeClass's label")
    check(arg(ds, "--daemonset") == name, "installer knows its DaemonSet (uninstall decision)")
    env = {e["name"]: e for e in c["env"]}
    check(env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName", "NODE_NAME from spec.nodeName")
    # ServiceAccount + least-privilege RBAC.
    sa = one(docs, "ServiceAccount", name)
    check(sa["metadata"]["namespace"] == release_ns, "ServiceAccount in the release namespace")
    cr = one(docs, "ClusterRole", name)
    check(cr["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}],
          f"ClusterRole grants nodes get/patch and nothing else: {cr['rules']}")
    role = [r for r in of_kind(docs, "Role") if r["metadata"]["name"] == name]
    check(len(role) == 1, "namespaced Role of the installer")
    check(role[0]["rules"] == [{"apiGroups": ["apps"], "resources": ["daemonsets"], "resourceNames": [name],
                                "verbs": ["get"]}], f"Role: get its own DaemonSet only: {role[0]['rules']}")
    for kind, rname in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        b = [x for x in of_kind(docs, kind) if x["metadata"]["name"] == name]
        check(len(b) == 1, f"{kind} {name}")
        check(b[0]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": rname, "name": name},
              f"{kind} refers to {rname} {name}")
        check(b[0]["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": release_ns}],
              f"{kind} binds the installer's ServiceAccount only")
    for r in of_kind(docs, "ClusterRole") + of_kind(docs, "Role"):
        for rule in r["rules"]:
            check("*" not in rule["verbs"] and "*" not in rule["resources"], f"no wildcard in {r['metadata']['name']}")
    # The retire hook (pre-delete) and its RBAC.
    job = one(docs, "Job")
    check(hook(job) == "pre-delete", "the retire Job is a pre-delete hook")
    jc = job["spec"]["template"]["spec"]["containers"][0]
    check(jc["command"] == ["/usr/local/bin/gvshim", "node", "retire"], "retire command")
    check(f"--daemonset={name}" in jc["args"], "retire targets the installer DaemonSet")
    check(jc["securityContext"].get("privileged") is not True and jc["securityContext"]["runAsNonRoot"] is True,
          "retire Job is unprivileged")
    cm = one(docs, "ConfigMap", name)
    return ds, cm


def check_runtimeclass(docs, name="gvisor", handler="gvisor", label=("gvshim.dev/gvisor", "ready")):
    rc = one(docs, "RuntimeClass", name)
    check(rc["handler"] == handler, f"RuntimeClass handler {rc['handler']}")
    check(rc["scheduling"]["nodeSelector"] == {label[0]: label[1]}, "RuntimeClass schedules on verified nodes")
    check(set(rc["overhead"]["podFixed"]) == {"cpu", "memory"}, "RuntimeClass overhead podFixed cpu+memory")
    return rc


def check_test_pod(docs, rc_name):
    pods = [p for p in of_kind(docs, "Pod") if hook(p) == "test"]
    check(len(pods) >= 1, "at least one helm test pod")
    for p in pods:
        check(p["spec"]["runtimeClassName"] == rc_name, f"test pod uses RuntimeClass {rc_name}")
        check(p["spec"]["restartPolicy"] == "Never", "test pod runs once")


def case_off(docs):
    check_no_node_level(docs)
    check_no_executor(docs)


def case_enabled(docs):
    check_no_executor(docs)
    rc = check_runtimeclass(docs)
    check(rc["overhead"]["podFixed"] == {"cpu": "50m", "memory": "32Mi"}, f"measured overhead {rc['overhead']}")
    ds, cm = check_installer(docs)
    spec = ds["spec"]["template"]["spec"]
    check(spec["nodeSelector"] == {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}, "default nodeSelector")
    check(spec["priorityClassName"] == "system-node-critical", "default priorityClassName")
    check(spec["containers"][0]["resources"]["requests"] == {"cpu": "10m", "memory": "32Mi"}, "default requests")
    check(arg(ds, "--canary-image") == spec["containers"][0]["image"], "canary defaults to the installer image")
    check("--restart-command" not in " ".join(installer_args(ds)), "default restart: systemd")
    config = json.loads(cm["data"]["gvshim.json"])
    check(config["runsc"]["network"] == "sandbox" and config["execute"] == {"enabled": False}, f"config {config}")
    check_test_pod(docs, "gvisor")


def case_existing_runtimeclass(docs):
    check(not of_kind(docs, "RuntimeClass"), "no RuntimeClass rendered for an existing one")
    check_installer(docs)
    check_test_pod(docs, "sandboxed")


def case_runtimeclass_only(docs):
    check_runtimeclass(docs)
    for kind in ("DaemonSet", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Job",
                 "ConfigMap"):
        check(not of_kind(docs, kind), f"installer.enabled=false renders no {kind}")
    check_test_pod(docs, "gvisor")


def case_custom(docs):
    label = ("example.com/gvisor", "yes")
    rc = check_runtimeclass(docs, label=label)
    check(rc["overhead"]["podFixed"] == {"cpu": "100m", "memory": "64Mi"}, "overhead from values")
    check(rc["scheduling"]["tolerations"][0]["key"] == "sandbox", "RuntimeClass tolerations")
    ds, cm = check_installer(docs, label=label)
    spec = ds["spec"]["template"]["spec"]
    c = spec["containers"][0]
    check(ds["metadata"]["name"] == "gv-node", "fullnameOverride")
    check(spec["nodeSelector"] == {"example.com/pool": "sandbox", "kubernetes.io/os": "linux",
                                   "kubernetes.io/arch": "amd64"}, f"nodeSelector {spec['nodeSelector']}")
    check(spec["tolerations"] == [{"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"}], "tolerations")
    check(spec["priorityClassName"] == "platform-critical", "priorityClassName")
    check(c["resources"] == {"requests": {"cpu": "20m", "memory": "40Mi"}, "limits": {"memory": "100Mi"}}, "resources")
    check(c["image"] == "registry.example.com/gvshim-node@sha256:" + "0123456789abcdef" * 4, "image by digest")
    check(c["imagePullPolicy"] == "Always", "pullPolicy")
    check(arg(ds, "--restart-command") == "systemctl restart k3s", "restart command")
    check(arg(ds, "--cri-socket") == "/run/k3s/containerd/containerd.sock", "CRI socket")
    check(arg(ds, "--install-dir") == "/usr/local/gvshim/bin", "install dir")
    for d in docs:
        check(d["metadata"].get("labels", {}).get("team") == "platform",
              f"commonLabels on {d['kind']} {d['metadata']['name']}")
    raw = cm["data"]["gvshim.json"]
    check('"max_concurrent":4' in raw and '"memory_bytes":268435456' in raw, f"integers stay integers: {raw}")
    config = json.loads(raw)
    check(config["hardening"] == {"seccomp_profile": "strict", "run_as_uid": 1000}, "hardening table")
    check(config["runsc"]["platform"] == "ptrace", "runsc table")


EXECUTOR_KINDS = {"Deployment", "Service", "Secret"}


def check_no_executor(docs):
    kinds = sorted({d["kind"] for d in docs} & EXECUTOR_KINDS)
    check(not kinds, f"nothing of the executor may render with executor.enabled=false, got {kinds}")


def component(docs, kind, comp):
    found = [d for d in of_kind(docs, kind)
             if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == comp]
    check(len(found) == 1, f"expected one {kind} of component {comp}, found {len(found)}")
    return found[0]


def gateway_flags(c):
    flags = {}
    for a in c["args"]:
        k, _, v = a.partition("=")
        flags[k] = v
    return flags


def case_executor(docs):
    # The gVisor part is still there, with its own installer DaemonSet.
    check_runtimeclass(docs)
    check(component(docs, "DaemonSet", "node-installer")["metadata"]["name"] == "rel-gvshim-node", "installer")
    # The pool: replicas = pool size, under the RuntimeClass, opted into Execute, non-root, read-only root.
    pool = component(docs, "Deployment", "executor-pool")
    check(pool["metadata"]["name"] == "rel-gvshim-pool", f"pool name {pool['metadata']['name']}")
    check(pool["spec"]["replicas"] == 5, "replicas = pool size")
    tpl = pool["spec"]["template"]
    spec = tpl["spec"]
    check(spec["runtimeClassName"] == "gvisor", "pool pods run under the gvisor RuntimeClass")
    check(tpl["metadata"]["annotations"]["dev.gvshim.execute"] == "true", "pool pods opt into Execute")
    check(tpl["metadata"]["annotations"]["dev.gvshim.pool"] == "rel-gvshim-pool", "pool annotation")
    check(spec["automountServiceAccountToken"] is False, "no API token in pods that run untrusted code")
    check(spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 65534,
          "pool runs as non-root")
    c = spec["containers"][0]
    check(c["image"] == "registry.example.com/ragflow-sandbox:1.2", f"pool image {c['image']}")
    check(c["securityContext"]["readOnlyRootFilesystem"] is True, "pool: read-only root")
    check(c["securityContext"]["allowPrivilegeEscalation"] is False, "pool: no privilege escalation")
    check(c["securityContext"]["capabilities"]["drop"] == ["ALL"], "pool: no capabilities")
    check(c["command"][0] == "python3", "the default command needs only python3")
    check(set(tpl["metadata"]["labels"].items()) >= set(pool["spec"]["selector"]["matchLabels"].items()),
          "pool selector matches its pods")
    # The gateway: a DaemonSet on the verified gVisor nodes, the node's discovery dir read-only, no privilege.
    gw = component(docs, "DaemonSet", "executor-gateway")
    gspec = gw["spec"]["template"]["spec"]
    check(gspec["nodeSelector"] == {"gvshim.dev/gvisor": "ready"}, f"gateway on gVisor nodes: {gspec['nodeSelector']}")
    check("runtimeClassName" not in gspec, "the gateway itself is not sandboxed (it reads host sockets)")
    g = gspec["containers"][0]
    check(g["command"] == ["/usr/local/bin/gvshim", "gateway"], f"gateway command {g['command']}")
    check(g["image"] == "localhost/gvshim-node:0.1.0", "gateway image defaults to the installer image")
    f = gateway_flags(g)
    check(f["--listen"] == "0.0.0.0:9385" and f["--dir"] == "/run/gvshim/execute", f"gateway flags {f}")
    check(f["--select-pod"] == "default/rel-gvshim-pool-", "gateway selects this release's pool pods")
    check(f["--timeout-ms"] == "90000", "1m30s is 90000 ms")
    check(f["--memory-bytes"] == "268435456" and "--output-bytes" not in f, "limits from values")
    check(f["--run-rate-limit"] == "3/minute", "rate limit from values")
    check(f["--token-file"] == "/etc/gvshim-gateway/token" and "--allow-unauthenticated" not in f, "token file")
    sc = g["securityContext"]
    check(sc.get("privileged") is not True and sc["allowPrivilegeEscalation"] is False, "gateway unprivileged")
    check(sc["capabilities"]["drop"] == ["ALL"] and sc["readOnlyRootFilesystem"] is True, "gateway: no caps, ro root")
    hp = [v for v in gspec["volumes"] if v.get("hostPath")]
    check(len(hp) == 1 and hp[0]["hostPath"]["path"] == "/run/gvshim/execute", "one hostPath: the discovery dir")
    m = [v for v in g["volumeMounts"] if v["name"] == hp[0]["name"]][0]
    check(m["readOnly"] is True and m["mountPath"] == "/run/gvshim/execute", "discovery dir mounted read-only")
    check(g["readinessProbe"]["httpGet"]["path"] == "/readyz", "ready only with a ready pool pod on its node")
    # The Service RAGFlow calls, selecting the gateway pods.
    svc = one(docs, "Service")
    check(svc["metadata"]["name"] == "sandbox-executor-manager", "Service name RAGFlow expects")
    check(svc["spec"]["ports"] == [{"name": "http", "port": 9385, "targetPort": "http"}], "port 9385")
    check(set(gw["spec"]["template"]["metadata"]["labels"].items()) >= set(svc["spec"]["selector"].items()),
          "the Service selects the gateway pods")
    check(not set(tpl["metadata"]["labels"].items()) >= set(svc["spec"]["selector"].items()),
          "the Service does not select pool pods")
    # The token Secret the gateway mounts.
    sec = one(docs, "Secret")
    vol = [v for v in gspec["volumes"] if v.get("secret")][0]
    check(vol["secret"]["secretName"] == sec["metadata"]["name"], "gateway mounts the chart's token Secret")
    check(len(sec["data"]["token"]) >= 64, "a random token of 48 characters")


def case_executor_off(docs):
    check_no_executor(docs)


def case_parent_on(docs):
    check_runtimeclass(docs)
    check_installer(docs)
    dep = one(docs, "Deployment")
    check(dep["spec"]["template"]["spec"]["runtimeClassName"] == "gvisor", "parent's pods use the RuntimeClass")


def case_parent_off(docs):
    check_no_node_level(docs)
    dep = one(docs, "Deployment")
    check("runtimeClassName" not in dep["spec"]["template"]["spec"], "parent's pods are not sandboxed")


CASES = {n[5:]: f for n, f in globals().items() if n.startswith("case_")}

if __name__ == "__main__":
    case, path = sys.argv[1], sys.argv[2]
    try:
        CASES[case.replace("-", "_")](load(path))
    except Failure as e:
        print(f"check_render {case}: {e}", file=sys.stderr)
        sys.exit(1)
