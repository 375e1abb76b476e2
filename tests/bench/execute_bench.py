#!/usr/bin/python3
"""Driver of tests/bench/execute.sh: talks gRPC to one shim's Execute socket; prints medians and ratios."""
import argparse
import concurrent.futures
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import grpc

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

PY_MAIN = "def main(a, b):\n    return a + b\n"
JS_MAIN = "function main(args) { return args.a + args.b; }"
PY_BASELINE = "import json; print(json.dumps(2 + 3))"
JS_BASELINE = "console.log(JSON.stringify(2 + 3))"


def load_pb2(tmp):
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{REPO}/proto", f"--python_out={tmp}",
                    "gvshim/execute/v1/execute.proto"], check=True)
    sys.path.insert(0, tmp)
    from gvshim.execute.v1 import execute_pb2
    return execute_pb2


def cpu_ms(pid):
    """utime + stime of a process, in ms."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


def sandbox_cpu_reader(pid):
    """CPU time (ms) of the cgroup v1 cpuacct group the sandbox process pid runs in; None where there is none."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                if "cpuacct" in ctrls.split(","):
                    usage = f"/sys/fs/cgroup/{ctrls}{path}/cpuacct.usage"
                    if os.path.exists(usage):
                        return lambda: int(open(usage).read()) / 1e6
    except OSError:
        pass
    return None


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(p / 100.0 * len(v)))]


def shim_footprint(pid):
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--shim-pid", type=int, required=True)
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--ctr", required=True)
    ap.add_argument("--pod", required=True)
    ap.add_argument("--sandbox-pid", type=int, default=0, help="the pod's sandbox process (for its CPU time)")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--baseline-n", type=int, default=20)
    ap.add_argument("--soak", type=int, default=10000)
    ap.add_argument("--tp-seconds", type=float, default=10)
    ap.add_argument("--gap-ms", type=float, default=200,
                    help="idle time before each warm-latency request (the runner refills its ready workers)")
    ap.add_argument("--summary", help="also write the medians as JSON to this file (execute.sh's table)")
    a = ap.parse_args()
    summary = {}
    with tempfile.TemporaryDirectory() as tmp:
        pb = load_pb2(tmp)
        ch = grpc.insecure_channel("unix://" + a.socket)
        call = ch.unary_unary("/gvshim.execute.v1.Execute/Execute",
                              request_serializer=pb.ExecuteRequest.SerializeToString,
                              response_deserializer=pb.ExecuteResponse.FromString)
        py = pb.ExecuteRequest(language=pb.LANGUAGE_PYTHON, code=PY_MAIN, arguments_json='{"a": 2, "b": 3}')
        js = pb.ExecuteRequest(language=pb.LANGUAGE_JAVASCRIPT, code=JS_MAIN, arguments_json='{"a": 2, "b": 3}')

        def run(req):
            t0 = time.perf_counter()
            r = call(req, timeout=120)
            dt = (time.perf_counter() - t0) * 1000
            if r.status != pb.STATUS_SUCCESS or r.result_json.strip() != "5":
                raise RuntimeError(f"unexpected result: {r}")
            return dt

        for _ in range(5):  # warm the runners
            run(py)
            run(js)
        ctr = shlex.split(a.ctr)

        def baseline(argv):
            times = []
            for i in range(a.baseline_n):
                t0 = time.perf_counter()
                out = subprocess.run(ctr + ["task", "exec", "--exec-id", f"b{os.getpid()}x{i}", a.pod] + argv,
                                     capture_output=True, text=True, timeout=120)
                times.append((time.perf_counter() - t0) * 1000)
                if out.stdout.strip() != "5":
                    raise RuntimeError(f"baseline output {out.stdout!r} {out.stderr!r}")
            return times

        print(f"Execute latency through the shim ({a.n} runs each) vs runsc exec per snippet "
              f"(ctr task exec, {a.baseline_n} runs), same sandbox, same run")
        print(f"  warm: each request after {a.gap_ms:.0f} ms idle (the runner has a ready worker, as for requests that "
              "do not arrive back to back); back-to-back: the next request as soon as the previous answer arrived")
        for name, req, base_argv in (("python main(a, b)", py, ["python3", "-c", PY_BASELINE]),
                                     ("javascript main", js, ["node", "-e", JS_BASELINE])):
            warm = []
            for _ in range(a.n):
                time.sleep(a.gap_ms / 1000.0)
                warm.append(run(req))
            b2b = [run(req) for _ in range(a.n)]
            base = baseline(base_argv)
            w50, w99, c50, c99 = statistics.median(warm), pct(warm, 99), statistics.median(b2b), pct(b2b, 99)
            b50 = statistics.median(base)
            summary[name.split()[0]] = {"warm_p50": w50, "warm_p99": w99, "b2b_p50": c50, "b2b_p99": c99,
                                        "runsc_exec_p50": b50}
            print(f"  {name:18s} warm p50 {w50:6.1f} ms p99 {w99:6.1f} ms (speed-up {b50 / w50:5.1f}x) | "
                  f"back-to-back p50 {c50:6.1f} ms p99 {c99:6.1f} ms (speed-up {b50 / c50:5.1f}x) | "
                  f"runsc exec p50 {b50:6.1f} ms")

        print(f"Throughput (python main(a, b), {a.tp_seconds:.0f} s per level); CPU per execution of the sandbox, "
              "the Execute server and this gRPC client")
        sandbox_cpu = sandbox_cpu_reader(a.sandbox_pid) if a.sandbox_pid else None
        for conc in (1, 4, 8):
            done = 0
            c0 = (sandbox_cpu() if sandbox_cpu else 0.0, cpu_ms(a.server_pid), sum(os.times()[:2]) * 1000)
            end = time.perf_counter() + a.tp_seconds
            with concurrent.futures.ThreadPoolExecutor(conc) as ex:
                def worker():
                    n = 0
                    while time.perf_counter() < end:
                        run(py)
                        n += 1
                    return n
                done = sum(f.result() for f in [ex.submit(worker) for _ in range(conc)])
            c1 = (sandbox_cpu() if sandbox_cpu else 0.0, cpu_ms(a.server_pid), sum(os.times()[:2]) * 1000)
            sb, srv, cli = ((y - x) / max(done, 1) for x, y in zip(c0, c1))
            summary[f"tput_{conc}"] = done / a.tp_seconds
            summary[f"cpu_{conc}"] = sb if sandbox_cpu else None
            print(f"  concurrency {conc}: {done / a.tp_seconds:6.1f} executions/s; CPU per execution: sandbox "
                  + (f"{sb:.1f} ms" if sandbox_cpu else "n/a") + f", server {srv:.1f} ms, client {cli:.1f} ms")

        if a.summary:
            with open(a.summary, "w") as f:
                json.dump(summary, f)
        if a.soak <= 0:
            return
        before = {name: shim_footprint(pid) for name, pid in (("shim", a.shim_pid), ("Execute server", a.server_pid))}
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            list(ex.map(lambda i: run(py if i % 2 else js), range(a.soak)))
        elapsed = time.perf_counter() - t0
        for name, pid in (("shim", a.shim_pid), ("Execute server", a.server_pid)):
            (rss0, fds0, thr0), (rss1, fds1, thr1) = before[name], shim_footprint(pid)
            print(f"{name} footprint over {a.soak} executions ({elapsed:.0f} s): "
                  f"VmRSS {rss0} -> {rss1} KiB, fds {fds0} -> {fds1}, threads {thr0} -> {thr1}")


if __name__ == "__main__":
    main()
