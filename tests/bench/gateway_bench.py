#!/usr/bin/python3
"""Driver of tests/bench/gateway.sh: the same snippet on the same pod, over direct gRPC Execute and over the
gateway's HTTP /run (a new connection per request, as RAGFlow's requests.post does). Prints; never asserts."""
import argparse
import base64
import concurrent.futures
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import grpc

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CODE = "def main(a, b):\n    return a + b\n"


def load_pb2(tmp):
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{REPO}/proto", f"--python_out={tmp}",
                    "gvshim/execute/v1/execute.proto"], check=True)
    sys.path.insert(0, tmp)
    from gvshim.execute.v1 import execute_pb2
    return execute_pb2


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def cpu_ms(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


class Direct:
    def __init__(self, pb, socket):
        self.pb = pb
        self.channel = grpc.insecure_channel("unix:" + socket)
        self.call = self.channel.unary_unary("/gvshim.execute.v1.Execute/Execute",
                                             request_serializer=pb.ExecuteRequest.SerializeToString,
                                             response_deserializer=pb.ExecuteResponse.FromString)

    def run(self, a, b):
        req = self.pb.ExecuteRequest(language=self.pb.LANGUAGE_PYTHON, code=CODE,
                                     arguments_json=json.dumps({"a": a, "b": b}))
        req.limits.wall_timeout_ms = 10000
        r = self.call(req, timeout=60)
        if r.status != self.pb.STATUS_SUCCESS or json.loads(r.result_json) != a + b:
            raise RuntimeError(f"direct: {r}")


class Http:
    """POST /run; a new connection per request (RAGFlow's requests.post), or one kept alive per thread."""

    def __init__(self, url, token, keep_alive=False):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token}
        self.code_b64 = base64.b64encode(CODE.encode()).decode()
        self.keep_alive = keep_alive
        self.local = threading.local()

    def run(self, a, b):
        conn = getattr(self.local, "conn", None) if self.keep_alive else None
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            if self.keep_alive:
                self.local.conn = conn
        try:
            # UTF-8 bytes, as requests.post(json=...) sends them
            body = json.dumps({"code_b64": self.code_b64, "language": "python", "arguments": {"a": a, "b": b}})
            conn.request("POST", "/run", body.encode(), self.headers)
            resp = conn.getresponse()
            body = json.loads(resp.read())
        finally:
            if not self.keep_alive:
                conn.close()
        if resp.status != 200 or body.get("status") != "success" or body["result"]["value"] != a + b:
            raise RuntimeError(f"http: {resp.status} {body}")


def latency(paths, n, gap):
    samples = {name: [] for name in paths}
    for i in range(n):
        for name, p in paths.items():  # interleaved, so both paths see the same machine state
            time.sleep(gap)
            t = time.perf_counter()
            p.run(i, 1)
            samples[name].append((time.perf_counter() - t) * 1000)
    return samples


def throughput(path, concurrency, seconds):
    stop = time.monotonic() + seconds

    def worker(i):
        n = 0
        while time.monotonic() < stop:
            path.run(i, n)
            n += 1
        return n

    t = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as ex:
        total = sum(ex.map(worker, range(concurrency)))
    return total / (time.monotonic() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--gateway-pid", type=int, required=True)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--tp-seconds", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--gap-ms", type=float, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pb = load_pb2(tmp)
        direct, viahttp = Direct(pb, args.socket), Http(args.url, args.token)
        kept = Http(args.url, args.token, keep_alive=True)
        for _ in range(20):  # warm every path (runners started, connections made)
            direct.run(1, 2)
            viahttp.run(1, 2)
            kept.run(1, 2)
        s = latency({"direct gRPC": direct, "gateway HTTP": viahttp, "HTTP keep-alive": kept}, args.n,
                    args.gap_ms / 1000.0)
        print(f"latency of a Python main(a, b), {args.n} samples per path, interleaved, {args.gap_ms:.0f} ms apart:")
        for name, xs in s.items():
            print(f"  {name:15s} p50 {statistics.median(xs):7.2f} ms   p90 {pct(xs, 90):7.2f} ms   p99 {pct(xs, 99):7.2f} ms")
        for name in ("gateway HTTP", "HTTP keep-alive"):
            d50 = statistics.median(s[name]) - statistics.median(s["direct gRPC"])
            pairs = [h - d for h, d in zip(s[name], s["direct gRPC"])]
            print(f"  added by the gateway ({name}): p50 {d50:+.2f} ms (median of paired differences "
                  f"{statistics.median(pairs):+.2f} ms)   target <= 1 ms")
        cpu0 = cpu_ms(args.gateway_pid)
        tp = {}
        for name, p in (("direct gRPC", direct), ("gateway HTTP", viahttp), ("direct gRPC again", direct)):
            c0 = cpu_ms(args.gateway_pid)
            tp[name] = throughput(p, args.concurrency, args.tp_seconds)
            c1 = cpu_ms(args.gateway_pid)
            extra = f"   gateway CPU {(c1 - c0) / (tp[name] * args.tp_seconds):.2f} ms/execution" if name == "gateway HTTP" else ""
            print(f"throughput at concurrency {args.concurrency}, {name:17s}: {tp[name]:6.1f} executions/s{extra}")
        base = (tp["direct gRPC"] + tp["direct gRPC again"]) / 2
        print(f"  ratio gateway / direct (direct = mean of the runs before and after): {tp['gateway HTTP'] / base:.3f}"
              f"   target >= 0.95")
        print(f"  gateway process CPU over the whole bench: {cpu_ms(args.gateway_pid) - cpu0:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
