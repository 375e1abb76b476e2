"""ContainerStats / ListContainerStats per container, OOM kills, and UpdateContainerResources."""

import time

import grpc

from crilib import client as c
from crilib.runner import case

SLEEP = ["sleep", "100000"]
MiB = 1 << 20
# dd fills a 48 MiB buffer and then blocks for ever writing it into a pipe nobody reads: 48 MiB held.
HOG = ["sh", "-c", "dd if=/dev/zero bs=48M count=1 | sleep 100000"]
# No field of a stats answer can be this large: 1 PiB. An unsigned underflow gives ~1.8e19.
SANE = 1 << 50


def value(wrapper):
    return wrapper.value


def wait_stats(t, cid, pred, what, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        st = t.cri.container_stats(cid)
        if pred(st):
            return st
        if time.monotonic() >= deadline:
            raise AssertionError(f"stats of {cid} never showed {what}: {st}")
        time.sleep(0.2)


@case("container_stats_per_container")
def container_stats_per_container(t):
    pod = t.cri.run_pod("stats")
    hog = pod.run_container("hog", t.image, command=HOG, resources=dict(memory_limit_in_bytes=512 * MiB))
    idle = pod.run_container("idle", t.image, command=SLEEP)
    for cid in (hog, idle):
        t.cri.wait_container(cid, c.RUNNING)
    hog_st = wait_stats(t, hog, lambda s: value(s.memory.working_set_bytes) > 45 * MiB, "the hog's 48 MiB")
    idle_st = t.cri.container_stats(idle)
    for name, st in (("hog", hog_st), ("idle", idle_st)):
        m = st.memory
        for field in ("working_set_bytes", "available_bytes", "usage_bytes", "rss_bytes"):
            v = value(getattr(m, field))
            assert v < SANE, f"{name}: memory.{field} = {v}: an underflowed value"
        assert m.timestamp > 0 and st.cpu.timestamp > 0, st
        assert value(st.cpu.usage_core_nano_seconds) > 0, f"{name}: no CPU time reported: {st.cpu}"
        assert st.attributes.metadata.name == name, st.attributes
    # Per container: the idle container does not show the hog's memory.
    assert value(idle_st.memory.working_set_bytes) < 20 * MiB, (
        f"idle container reports {value(idle_st.memory.working_set_bytes)} bytes: the sandbox's total, "
        f"not its own")
    # available = limit - working set for a container with a limit.
    avail = value(hog_st.memory.available_bytes)
    assert 0 < avail <= 512 * MiB - 40 * MiB, f"hog: available_bytes {avail} for a 512 MiB limit"
    listed = {s.attributes.id: s for s in t.cri.list_container_stats(pod_sandbox_id=pod.id)}
    assert set(listed) == {hog, idle}, listed.keys()
    assert value(listed[idle].memory.working_set_bytes) < 20 * MiB


@case("oom_killed")
def oom_killed(t):
    """A container over its memory limit ends OOMKilled / 137; the pod and its other container keep running."""
    pod = t.cri.run_pod("oom")
    other = pod.run_container("other", t.image, command=SLEEP)
    t.cri.wait_container(other, c.RUNNING)
    hog = pod.run_container("hog", t.image, resources=dict(memory_limit_in_bytes=32 * MiB), command=[
        "sh", "-c", "dd if=/dev/zero bs=200M count=1 | sleep 100000"])
    st = t.cri.wait_exit(hog, timeout=60)
    assert (st.exit_code, st.reason) == (137, "OOMKilled"), (st.exit_code, st.reason, st.message)
    assert pod.status().status.state == c.SANDBOX_READY
    assert t.cri.container_status(other).state == c.RUNNING
    assert t.cri.exec_sync(other, ["true"], timeout=20).exit_code == 0


@case("update_container_resources")
def update_container_resources(t):
    """UpdateContainerResources (a kubelet resize) is applied or refused clearly; the pod keeps working."""
    pod = t.cri.run_pod("resize")
    cid = pod.run_container("app", t.image, command=SLEEP,
                            resources=dict(memory_limit_in_bytes=256 * MiB, cpu_period=100000, cpu_quota=50000))
    t.cri.wait_container(cid, c.RUNNING)
    t.cri.update_resources(cid, memory_limit_in_bytes=384 * MiB, cpu_period=100000, cpu_quota=100000)
    st = t.cri.container_status(cid)
    assert st.resources.linux.memory_limit_in_bytes == 384 * MiB, st.resources
    assert st.resources.linux.cpu_quota == 100000, st.resources
    stats = t.cri.container_stats(cid)
    avail = value(stats.memory.available_bytes)
    assert 256 * MiB < avail <= 384 * MiB, f"available_bytes {avail} does not follow the new 384 MiB limit"
    # Nonsense is refused, and the pod still serves.
    try:
        t.cri.update_resources(cid, memory_limit_in_bytes=-5)
        raise AssertionError("a negative memory limit was accepted")
    except grpc.RpcError as e:
        assert e.details(), e
    assert t.cri.exec_sync(cid, ["true"], timeout=20).exit_code == 0
    assert pod.status().status.state == c.SANDBOX_READY
