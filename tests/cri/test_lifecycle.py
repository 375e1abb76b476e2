"""Pod and container lifecycle through the CRI, as a kubelet drives it, under the `gvisor` handler."""

import time

import grpc

from crilib import client as c
from crilib.runner import case

SLEEP = ["sleep", "100000"]


def expect_not_found(fn, *args):
    try:
        fn(*args)
    except grpc.RpcError as e:
        assert c.code_of(e) == grpc.StatusCode.NOT_FOUND, f"expected NOT_FOUND, got {c.code_of(e)}: {e.details()}"
        return
    raise AssertionError(f"{fn.__name__}{args} succeeded; expected NOT_FOUND")


@case("pod_lifecycle")
def pod_lifecycle(t):
    v = t.cri.version()
    assert v.runtime_api_version == "v1", v
    pod = t.cri.run_pod("lifecycle", labels={"app": "lc"})
    st = pod.status().status
    assert st.state == c.SANDBOX_READY, st
    assert st.runtime_handler == "gvisor", st.runtime_handler
    assert st.created_at > 0 and st.metadata.name == "lifecycle", st
    assert st.labels["app"] == "lc"
    assert [p.id for p in t.cri.list_pods(labels={"app": "lc"})] == [pod.id]
    # The pod's sandbox is a runsc sandbox served by one gvshim shim.
    rid = t.ctd.runsc_id(pod.id)
    assert rid in t.ctd.runsc_list(), f"runsc does not list the pod sandbox {rid}: {t.ctd.runsc_list()}"
    assert len(t.ctd.shim_pids()) == 1, t.ctd.shim_pids()

    cid = pod.run_container("app", t.image, command=SLEEP)
    st = t.cri.wait_container(cid, c.RUNNING)
    assert st.started_at > 0 and st.exit_code == 0, st

    t.cri.stop_pod(pod.id)
    assert pod.status().status.state == c.SANDBOX_NOTREADY
    assert t.cri.container_status(cid).state == c.EXITED
    t.cri.stop_pod(pod.id)  # idempotent
    t.cri.remove_pod(pod.id)
    t.cri.remove_pod(pod.id)  # idempotent
    expect_not_found(t.cri.pod_status, pod.id)
    expect_not_found(t.cri.container_status, cid)
    assert rid not in t.ctd.runsc_list(), "runsc still lists the removed sandbox"
    assert t.ctd.shim_pids() == [], f"shim left after RemovePodSandbox: {t.ctd.shim_pids()}"


@case("one_shim_one_sandbox")
def one_shim_one_sandbox(t):
    """Pods of 1 and 3 containers: each pod has exactly one gvshim process and one runsc sandbox."""
    before_sandboxes = set(t.ctd.runsc_sandbox_pids())
    one = t.cri.run_pod("one")
    one_c = one.run_container("a", t.image, command=SLEEP)
    three = t.cri.run_pod("three")
    three_c = [three.run_container(n, t.image, command=SLEEP) for n in ("a", "b", "c")]
    for cid in [one_c, *three_c]:
        t.cri.wait_container(cid, c.RUNNING)
    assert len(t.ctd.shim_pids()) == 2, f"expected one shim per pod, got {t.ctd.shim_pids()}"
    sandboxes = set(t.ctd.runsc_sandbox_pids()) - before_sandboxes
    assert len(sandboxes) == 2, f"expected one runsc sandbox process per pod, got {sorted(sandboxes)}"
    # Every container of a pod lives in its pod's sandbox: runsc reports the sandbox's pid for each.
    for pod, cids in ((one, [one_c]), (three, three_c)):
        sandbox_pid = t.ctd.runsc_state(t.ctd.runsc_id(pod.id))["pid"]
        assert sandbox_pid in sandboxes, (sandbox_pid, sandboxes)
        for cid in cids:
            assert t.ctd.runsc_state(t.ctd.runsc_id(cid))["pid"] == sandbox_pid, cid
    # The three containers share one kernel: a file in the pod's shared /dev/shm... is not needed; the
    # sandbox's hostname (the pod's) is what each container sees.
    for cid in three_c:
        out = t.cri.exec_sync(cid, ["hostname"], timeout=20)
        assert out.stdout.decode().strip() == "three", out
    one.remove()
    three.remove()
    assert t.ctd.shim_pids() == [], t.ctd.shim_pids()
    assert not (set(t.ctd.runsc_sandbox_pids()) & sandboxes), "a sandbox process outlived its pod"


@case("init_containers")
def init_containers(t):
    """An init container runs to completion before the app container is created (the kubelet's order)."""
    import tempfile
    vol = tempfile.mkdtemp(prefix="cri-init.", dir=t.ctd.dir)
    pod = t.cri.run_pod("init")
    mounts = [dict(container_path="/work", host_path=vol)]
    init = pod.run_container("init", t.image, command=["sh", "-c", "echo prepared >/work/state; exit 0"],
                             mounts=mounts)
    st = t.cri.wait_exit(init)
    assert st.exit_code == 0 and st.reason == "Completed", st
    app = pod.run_container("app", t.image, command=["sh", "-c", "cat /work/state; exec sleep 100000"],
                            mounts=mounts)
    t.cri.wait_container(app, c.RUNNING)
    out = t.cri.exec_sync(app, ["cat", "/work/state"], timeout=20)
    assert out.stdout == b"prepared\n", out
    assert t.cri.container_status(init).state == c.EXITED


@case("restart_attempt")
def restart_attempt(t):
    """Attempt 0 exits, the kubelet creates attempt 1 of the same container in the same running pod."""
    pod = t.cri.run_pod("restart")
    first = pod.run_container("app", t.image, command=["sh", "-c", "exit 3"])
    st = t.cri.wait_exit(first)
    assert st.exit_code == 3 and st.reason == "Error", st
    second = pod.run_container("app", t.image, command=SLEEP, attempt=1)
    st = t.cri.wait_container(second, c.RUNNING)
    assert st.metadata.attempt == 1, st
    assert pod.status().status.state == c.SANDBOX_READY
    attempts = sorted((x.metadata.attempt, x.state) for x in pod.containers())
    assert attempts == [(0, c.EXITED), (1, c.RUNNING)], attempts
    # The kubelet then removes the dead attempt; the pod and attempt 1 are unaffected.
    t.cri.remove(first)
    assert t.cri.exec_sync(second, ["true"], timeout=20).exit_code == 0


@case("stop_grace_period")
def stop_grace_period(t):
    """StopContainer sends SIGTERM, waits the grace period, then SIGKILL."""
    pod = t.cri.run_pod("grace")
    # Handles TERM: ends at once with its own exit code.
    polite = pod.run_container("polite", t.image, command=[
        "sh", "-c", "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.2; done"])
    # Ignores TERM: only the SIGKILL after the grace period ends it.
    stubborn = pod.run_container("stubborn", t.image, command=[
        "sh", "-c", "trap 'echo ignoring TERM' TERM; echo ready; while :; do sleep 0.2; done"])
    for cid in (polite, stubborn):
        t.cri.wait_container(cid, c.RUNNING)
    t.cri.stop(polite, grace=30)
    st = t.cri.container_status(polite)
    assert st.state == c.EXITED and st.exit_code == 7 and st.reason == "Error", st
    grace = 3
    asked = time.time_ns()
    t.cri.stop(stubborn, grace=grace)
    st = t.cri.container_status(stubborn)
    assert st.state == c.EXITED and st.exit_code == 137, st
    assert st.finished_at - asked >= (grace - 0.5) * 1e9, (
        f"killed {(st.finished_at - asked) / 1e9:.2f}s after the stop, before the {grace}s grace period")
    # The pod itself is still running.
    assert pod.status().status.state == c.SANDBOX_READY


@case("exit_codes_and_reasons")
def exit_codes_and_reasons(t):
    pod = t.cri.run_pod("exits")
    cases = {
        "ok": (["true"], 0, "Completed"),
        "fail": (["sh", "-c", "exit 42"], 42, "Error"),
        "killed": (["sh", "-c", "kill -9 $$"], 137, "Error"),
    }
    ids = {n: pod.run_container(n, t.image, command=cmd) for n, (cmd, _, _) in cases.items()}
    for n, (_, code, reason) in cases.items():
        st = t.cri.wait_exit(ids[n])
        assert (st.exit_code, st.reason) == (code, reason), (n, st.exit_code, st.reason, st.message)
        assert st.finished_at >= st.started_at > 0, st
    # A missing binary fails CreateContainer/StartContainer with an error naming it, and the pod survives.
    try:
        pod.run_container("missing", t.image, command=["/no/such/binary"])
        st = t.cri.wait_exit(t.cri.list_containers(pod_sandbox_id=pod.id)[-1].id)
        raise AssertionError(f"a container with a missing binary started: {st}")
    except grpc.RpcError as e:
        assert "/no/such/binary" in e.details(), e.details()
    assert pod.status().status.state == c.SANDBOX_READY
