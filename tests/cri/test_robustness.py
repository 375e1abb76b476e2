"""Robustness: containerd restarts, a killed shim, many pods at once, same names in two namespaces."""

import os
import signal
import threading

import grpc

from crilib import client as c
from crilib import env as crienv
from crilib.runner import case

SLEEP = ["sleep", "100000"]


def assert_nothing_left(t, sandbox_pids_before):
    """No shim, no runsc container, no sandbox process of ours, no mount of a removed pod's bundle."""
    # containerd's cleanup of a dead shim (`containerd-shim-gvisor-v1 ... delete`) may still be running.
    crienv.wait_pids_gone(t.ctd.shim_pids(), 30)
    left = t.ctd.shim_pids()
    if left:
        argv = {p: open(f"/proc/{p}/cmdline", "rb").read().replace(b"\0", b" ").decode() for p in left}
        raise AssertionError(f"shims left: {argv}")
    assert t.ctd.runsc_list() == [], f"runsc still lists {t.ctd.runsc_list()}"
    left = set(t.ctd.runsc_sandbox_pids()) - set(sandbox_pids_before)
    assert not left, f"sandbox processes left: {sorted(left)}"
    bundles = os.path.join(t.ctd.dir, "state/io.containerd.runtime.v2.task/k8s.io")
    assert t.ctd.mounts_under(bundles) == [], t.ctd.mounts_under(bundles)


@case("containerd_restart")
def containerd_restart(t):
    pod = t.cri.run_pod("survivor")
    cids = [pod.run_container(n, t.image, command=SLEEP) for n in ("a", "b")]
    for cid in cids:
        t.cri.wait_container(cid, c.RUNNING)
    shims = t.ctd.shim_pids()
    assert len(shims) == 1, shims
    t.cri.close()
    t.ctd.stop_containerd_only()
    # The pod lives on without containerd.
    assert crienv.pid_alive(shims[0]), "the shim died with containerd"
    assert len(t.ctd.runsc_list()) == 3, t.ctd.runsc_list()
    t.ctd.restart_containerd()
    t.cri = t.ctd.client()
    t.cri.created_pods = [pod.id]
    pod.client = t.cri
    assert pod.status().status.state == c.SANDBOX_READY
    for cid in cids:
        assert t.cri.container_status(cid).state == c.RUNNING, cid
        assert t.cri.exec_sync(cid, ["true"], timeout=20).exit_code == 0
    # New containers join the pod, and everything can be stopped and removed.
    late = pod.run_container("late", t.image, command=SLEEP)
    t.cri.wait_container(late, c.RUNNING)
    assert t.ctd.shim_pids() == shims, "a second shim appeared for the pod after the restart"
    pod.remove()
    assert t.ctd.shim_pids() == [] and t.ctd.runsc_list() == []


@case("shim_killed")
def shim_killed(t):
    """kill -9 of a pod's shim: containerd notices, the pod can be stopped and removed, nothing is left."""
    before = t.ctd.runsc_sandbox_pids()
    pod = t.cri.run_pod("victim")
    cid = pod.run_container("app", t.image, command=SLEEP)
    t.cri.wait_container(cid, c.RUNNING)
    shims = t.ctd.shim_pids()
    sandboxes = set(t.ctd.runsc_sandbox_pids()) - set(before)
    assert len(shims) == 1 and len(sandboxes) == 1, (shims, sandboxes)
    assert t.ctd.runsc_list(), "the probe does not see the running pod"
    os.kill(shims[0], signal.SIGKILL)
    st = t.cri.wait_container(cid, c.EXITED, timeout=60)
    assert st.exit_code != 0, st
    pod.remove()
    assert crienv.wait_pids_gone(list(sandboxes), 30), f"sandbox {sandboxes} outlived its killed shim"
    assert_nothing_left(t, before)


@case("parallel_pods")
def parallel_pods(t):
    """20 pods started at once: all run, all are removed, nothing is left."""
    before = t.ctd.runsc_sandbox_pids()
    n = 20
    results, errors = {}, []

    def one(i):
        try:
            cli = t.ctd.client()
            pod = cli.run_pod(f"par-{i}", timeout=240)
            cid = pod.run_container("app", t.image, command=SLEEP)
            cli.wait_container(cid, c.RUNNING, timeout=120)
            out = cli.exec_sync(cid, ["hostname"], timeout=60, rpc_timeout=240).stdout.decode().strip()
            results[i] = (pod.id, out)
            cli.close()
        except Exception as e:  # reported below
            errors.append(f"pod {i}: {e}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    t.cri.created_pods += [pid for pid, _ in results.values()]
    assert not errors, "\n".join(errors)
    assert sorted(results) == list(range(n))
    assert all(out == f"par-{i}" for i, (_, out) in results.items()), results
    assert len(t.ctd.shim_pids()) == n, t.ctd.shim_pids()
    assert len(set(t.ctd.runsc_sandbox_pids()) - set(before)) == n

    def remove(pid):
        cli = t.ctd.client()
        cli.stop_pod(pid, timeout=240)
        cli.remove_pod(pid, timeout=240)
        cli.close()

    threads = [threading.Thread(target=remove, args=(pid,)) for pid, _ in results.values()]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.cri.list_pods() == [], t.cri.list_pods()
    assert crienv.wait_pids_gone(list(set(t.ctd.runsc_sandbox_pids()) - set(before)), 30)
    assert_nothing_left(t, before)


@case("same_names_two_namespaces")
def same_names_two_namespaces(t):
    """Pods of the same name, with containers of the same names, in two Kubernetes namespaces at once."""
    pods = {ns: t.cri.run_pod("twin", namespace=ns, labels={"ns": ns}) for ns in ("team-a", "team-b")}
    cids = {}
    for ns, pod in pods.items():
        for name in ("app", "sidecar"):
            cids[ns, name] = pod.run_container(name, t.image, command=SLEEP, env={"WHO": ns})
    for cid in cids.values():
        t.cri.wait_container(cid, c.RUNNING)
    for (ns, name), cid in cids.items():
        r = t.cri.exec_sync(cid, ["sh", "-c", "echo $WHO"], timeout=20)
        assert r.stdout.decode().strip() == ns, (ns, name, r)
        assert t.cri.container_stats(cid).attributes.metadata.name == name
    assert len(t.ctd.shim_pids()) == 2
    pods["team-a"].remove()
    for name in ("app", "sidecar"):
        assert t.cri.container_status(cids["team-b", name]).state == c.RUNNING
        assert t.cri.exec_sync(cids["team-b", name], ["true"], timeout=20).exit_code == 0
    try:
        t.cri.exec_sync(cids["team-a", "app"], ["true"], timeout=20)
        raise AssertionError("exec into a removed pod's container succeeded")
    except grpc.RpcError as e:
        assert c.code_of(e) == grpc.StatusCode.NOT_FOUND, e
