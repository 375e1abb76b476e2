#!/usr/bin/python3
"""Benchmark: a kubelet's pod lifecycle through containerd's CRI, per runtime handler, in the same run.

    /usr/bin/python3 tests/bench/cri_lifecycle.py [--iterations N] [--handlers gvisor,runsc-runc,runc]

Steps per iteration: RunPodSandbox, CreateContainer+StartContainer x2, ExecSync x2, StopPodSandbox,
RemovePodSandbox. Handlers: gvisor (gvshim), runsc-runc (containerd's runc shim driving runsc), runc (plain runc).
Iterations are interleaved across handlers so that machine load hits them alike. Prints the median of each step
and of the total per handler, and the ratios of gvshim to the baselines. Never asserts timings.
"""

import argparse
import statistics
import sys
import time
import pathlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "cri"))
from crilib import client as c  # noqa: E402
from crilib import env  # noqa: E402

STEPS = ["run_pod", "start_2_containers", "exec_sync_2", "stop_pod", "remove_pod", "total"]


def one(cri, image, handler, i, step_timeout):
    """One lifecycle; a step that takes longer than step_timeout seconds counts as hung (the iteration fails)."""
    t = {}
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
    cri.stop_pod(pod.id, timeout=step_timeout)
    t4 = time.monotonic()
    cri.remove_pod(pod.id, timeout=step_timeout)
    t5 = time.monotonic()
    cri.created_pods.remove(pod.id)
    t.update(run_pod=t1 - t0, start_2_containers=t2 - t1, exec_sync_2=t3 - t2, stop_pod=t4 - t3,
             remove_pod=t5 - t4, total=t5 - t0)
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=7)
    ap.add_argument("--handlers", default="gvisor,runsc-runc,runc")
    ap.add_argument("--step-timeout", type=float, default=30.0, help="seconds before a step counts as hung")
    args = ap.parse_args()
    handlers = args.handlers.split(",")
    samples = {h: {s: [] for s in STEPS} for h in handlers}
    failures = {h: [] for h in handlers}
    with env.Containerd(log_level="info") as ctd:
        cri = ctd.client(timeout=180)
        for h in handlers:  # warm-up (image unpack, first shim start)
            try:
                one(cri, ctd.image, h, "warm", args.step_timeout)
            except Exception as e:
                failures[h].append(f"warm-up: {e}")
        for i in range(args.iterations):
            for h in handlers:
                try:
                    for s, v in one(cri, ctd.image, h, i, args.step_timeout).items():
                        samples[h][s].append(v)
                except Exception as e:
                    failures[h].append(f"iteration {i}: {str(e)[:200]}")
        cri.timeout = 60
        cri.cleanup()
    print(f"cri_lifecycle: median seconds per step over {args.iterations} iterations (same containerd, interleaved)")
    print(f"{'step':20s}" + "".join(f"{h:>14s}" for h in handlers))
    med = {h: {s: statistics.median(v) if v else float("nan") for s, v in samples[h].items()} for h in handlers}
    for s in STEPS:
        print(f"{s:20s}" + "".join(f"{med[h][s]:14.3f}" for h in handlers))
    if "gvisor" in handlers:
        for base in handlers:
            if base == "gvisor":
                continue
            print(f"ratio total gvshim / {base}: {med['gvisor']['total'] / med[base]['total']:.2f}")
    for h, f in failures.items():
        print(f"{h}: {len(samples[h]['total'])} of {args.iterations} iterations completed")
        for line in f:
            print(f"{h}: FAILED {line}")


if __name__ == "__main__":
    main()
