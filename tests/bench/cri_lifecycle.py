#!/usr/bin/python3
"""Benchmark: a kubelet's pod lifecycle through containerd's CRI, per runtime handler, in the same run.

    /usr/bin/python3 tests/bench/cri_lifecycle.py [--iterations N] [--handlers gvisor,runsc-runc,runc]

Steps per iteration: RunPodSandbox, CreateContainer+StartContainer x2, ExecSync x2, StopPodSandbox,
RemovePodSandbox. Handlers: gvisor (gvshim), runsc-runc (containerd's runc shim driving runsc), runc (plain runc).
Iterations are interleaved across handlers so that machine load hits them alike. Prints the median of each step
and of the total per handler, and the ratios of gvshim to the baselines. Never asserts timings.

containerd's runc shim cannot stop a runsc pod: it learns a container's exit from the pid runsc writes, and runsc
writes the sandbox's pid for every container of a pod, so a killed app container never "exits" for the runc shim
and StopPodSandbox waits until its deadline. For runsc-runc the script therefore measures the steps up to the
ExecSyncs (`up_to_exec`), then ends the pod's sandbox with `runsc kill` (every container then exits at once) and
stops/removes it unmeasured. The gvshim / runsc-runc ratio is given on `up_to_exec`.
"""

import argparse
import datetime
import re
import statistics
import sys
import time
import pathlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "cri"))
from crilib import client as c  # noqa: E402
from crilib import env  # noqa: E402

import os  # noqa: E402
import signal  # noqa: E402

STEPS = ["run_pod", "start_2_containers", "exec_sync_2", "up_to_exec", "stop_pod", "remove_pod", "total"]
# Handlers whose stop/remove cannot be measured (see the module doc).
NO_STOP = {"runsc-runc"}


def end_runsc_runc_sandbox(ctd, pod_id):
    """Ends a runsc-runc pod without the runc shim's help: SIGKILL to the pod's sandbox (the pid runsc wrote) and
    to the pod's runc shim; containerd then cleans up after the dead shim (runsc delete, unmounts) and reports
    every container exited. (`runsc kill --all` of the pause container leaves the sandbox running while app
    containers live, and the runc shim reports the sandbox pid's exit for one container of the pod only.)"""
    pid_file = pathlib.Path(ctd.env["GVS_STATE"]) / "io.containerd.runtime.v2.task" / "k8s.io" / pod_id / "init.pid"
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    for pid, argv in env.process_argvs():
        if argv[0].endswith(b"containerd-shim-runc-v2") and pod_id.encode() in argv and ctd.sock.encode() in argv:
            os.kill(pid, signal.SIGKILL)


def one(ctd, cri, image, handler, i, step_timeout):
    """One lifecycle; a step that takes longer than step_timeout seconds counts as hung (the iteration fails)."""
    t = {}
    wall0 = time.time()
    t0 = time.monotonic()
    pod = cri.run_pod(f"bench-{handler}-{i}", handler=handler, timeout=step_timeout)
    t1 = time.monotonic()
    cids = []
    for n in ("a", "b"):
        cid = pod.create_container(n, image, command=["sleep", "100000"])
        cri.start(cid, timeout=step_timeout)
        cids.append(cid)
    for cid in cids:
        cri.wait_container(cid, c.RUNNING, timeout=step_timeout)
    t2 = time.monotonic()
    for cid in cids:
        r = cri.exec_sync(cid, ["true"], timeout=int(step_timeout), rpc_timeout=step_timeout + 5)
        assert r.exit_code == 0, r
    t3 = time.monotonic()
    if handler in NO_STOP:
        end_runsc_runc_sandbox(ctd, pod.id)
        for cid in cids:
            cri.wait_container(cid, c.EXITED, timeout=step_timeout)
        cri.stop_pod(pod.id, timeout=step_timeout)
        cri.remove_pod(pod.id, timeout=step_timeout)
        cri.created_pods.remove(pod.id)
        return dict(run_pod=t1 - t0, start_2_containers=t2 - t1, exec_sync_2=t3 - t2, up_to_exec=t3 - t0)
    cri.stop_pod(pod.id, timeout=step_timeout)
    t4 = time.monotonic()
    cri.remove_pod(pod.id, timeout=step_timeout)
    t5 = time.monotonic()
    cri.created_pods.remove(pod.id)
    t.update(run_pod=t1 - t0, start_2_containers=t2 - t1, exec_sync_2=t3 - t2, stop_pod=t4 - t3,
             remove_pod=t5 - t4, up_to_exec=t3 - t0, total=t5 - t0)
    # Wall-clock step windows, to attribute the shim's logged runsc calls to steps (runsc_time_per_step).
    t["_windows"] = [(name, wall0 + a - t0, wall0 + b - t0) for name, a, b in (
        ("run_pod", t0, t1), ("start_2_containers", t1, t2), ("exec_sync_2", t2, t3), ("stop_pod", t3, t4),
        ("remove_pod", t4, t5))]
    return t


RUNSC_CALL = re.compile(r'^time="([0-9T:.\-]+)Z" level=debug msg="runsc (\w+) \S+: ([0-9.]+) ms"')


def runsc_time_per_step(log_path, windows):
    """Sum of the runsc commands gvshim ran (its debug log: `runsc CMD ID: N ms`, logged when the command ends)
    per step window; `runsc wait` (it lasts the container's life) and `runsc exec` (not logged: its process is
    the exec itself) are not counted. Returns {step: seconds}."""
    calls = []
    for line in pathlib.Path(log_path).read_text(errors="replace").splitlines():
        m = RUNSC_CALL.match(line)
        if m and m.group(2) != "wait":
            when = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc).timestamp()
            calls.append((when, float(m.group(3)) / 1000))
    out = {}
    for name, a, b in windows:
        out[name] = sum(d for when, d in calls if a <= when <= b)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=7)
    ap.add_argument("--handlers", default="gvisor,runsc-runc,runc")
    ap.add_argument("--step-timeout", type=float, default=30.0, help="seconds before a step counts as hung")
    args = ap.parse_args()
    handlers = args.handlers.split(",")
    samples = {h: {s: [] for s in STEPS} for h in handlers}
    gv_windows = []
    failures = {h: [] for h in handlers}
    with env.Containerd(log_level="info") as ctd:
        cri = ctd.client(timeout=180)
        for h in handlers:  # warm-up (image unpack, first shim start)
            try:
                one(ctd, cri, ctd.image, h, "warm", args.step_timeout)
            except Exception as e:
                failures[h].append(f"warm-up: {e}")
        for i in range(args.iterations):
            for h in handlers:
                try:
                    r = one(ctd, cri, ctd.image, h, i, args.step_timeout)
                    if h == "gvisor":
                        gv_windows.append(r["_windows"])
                    for s, v in r.items():
                        if s != "_windows":
                            samples[h][s].append(v)
                except Exception as e:
                    failures[h].append(f"iteration {i}: {str(e)[:200]}")
        cri.timeout = 60
        cri.cleanup()
        runsc_parts = [runsc_time_per_step(ctd.env["GVS_LOG"], w) for w in gv_windows]
    print(f"cri_lifecycle: median seconds per step over {args.iterations} iterations (same containerd, interleaved)")
    print(f"{'step':20s}" + "".join(f"{h:>14s}" for h in handlers))
    med = {h: {s: statistics.median(v) if v else float("nan") for s, v in samples[h].items()} for h in handlers}
    for s in STEPS:
        print(f"{s:20s}" + "".join(f"{med[h][s]:14.3f}" for h in handlers))
    if runsc_parts:
        print("gvshim: median seconds of the step spent in runsc commands the shim ran (create/start/kill/delete;")
        print("        not exec or wait), and the rest (shim + containerd + CRI client):")
        for s in STEPS[:3] + STEPS[4:6]:
            r = statistics.median(p[s] for p in runsc_parts)
            print(f"  {s:20s} runsc {r:6.3f}   rest {med['gvisor'][s] - r:6.3f}")
    if "gvisor" in handlers:
        for base in handlers:
            if base == "gvisor":
                continue
            if base not in NO_STOP:
                print(f"ratio total gvshim / {base}: {med['gvisor']['total'] / med[base]['total']:.2f}")
            print(f"ratio up_to_exec gvshim / {base}: {med['gvisor']['up_to_exec'] / med[base]['up_to_exec']:.2f}")
    for h in handlers:
        if h in NO_STOP:
            print(f"{h}: stop_pod/remove_pod not measured (the runc shim cannot stop a runsc pod, see the script)")
    for h, f in failures.items():
        print(f"{h}: {len(samples[h]['up_to_exec'])} of {args.iterations} iterations completed")
        for line in f:
            print(f"{h}: FAILED {line}")


if __name__ == "__main__":
    main()
