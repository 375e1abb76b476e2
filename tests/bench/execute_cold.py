#!/usr/bin/python3
"""Cold start of Execute (driver of tests/bench/execute.sh, also usable alone).

For each start mode (eager, lazy) and each language, REPS times: a fresh opted-in container is started with
`ctr run -d`; as soon as ctr returns (the container runs), one Execute is sent, waiting first for the pod's
socket to appear. Prints the median and p90 of "container running -> first answer", and how long `ctr run -d`
itself took (an eager container is reported started only once its runners are ready). The baseline, in the same
run: `ctr task exec` of the interpreter with the same snippet in such a container (what a cold `runsc exec`
costs). Measures and prints; never asserts.

  execute_cold.py --ctr "ctr -a SOCK -n NS" --image IMAGE --execute-dir DIR --config TOML [--reps N]
"""
import argparse
import glob
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
SNIPPET = {"python": "def main(a, b):\n    return a + b\n", "javascript": "function main(args) { return args.a + args.b; }"}
BASELINE = {"python": ["python3", "-c", "print(2 + 3)"], "javascript": ["node", "-e", "console.log(2 + 3)"]}


def load_pb2(tmp):
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{REPO}/proto", f"--python_out={tmp}",
                    "gvshim/execute/v1/execute.proto"], check=True)
    sys.path.insert(0, tmp)
    from gvshim.execute.v1 import execute_pb2
    return execute_pb2


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(p / 100.0 * len(v)))]


def socket_of(execute_dir, cid):
    for f in glob.glob(os.path.join(execute_dir, "*.json")):
        try:
            r = json.load(open(f))
        except (OSError, ValueError):
            continue
        if r.get("sandbox_id") == cid and os.path.exists(r.get("socket", "")):
            return r["socket"]
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ctr", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--execute-dir", required=True)
    ap.add_argument("--config", required=True, help="the containerd's gvshim.toml (copied per start mode)")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--summary", help="also write the medians as JSON to this file")
    a = ap.parse_args()
    ctr = shlex.split(a.ctr)
    base_cfg = open(a.config).read()
    with tempfile.TemporaryDirectory() as tmp:
        pb = load_pb2(tmp)
        lang_enum = {"python": pb.LANGUAGE_PYTHON, "javascript": pb.LANGUAGE_JAVASCRIPT}
        results = {}
        start_times = {}
        for mode in ("eager", "lazy"):
            cfg = os.path.join(tmp, f"{mode}.toml")
            with open(cfg, "w") as f:
                f.write(base_cfg.replace("[execute]\n", f"[execute]\nstart = \"{mode}\"\n", 1))
            for lang in ("python", "javascript"):
                samples = []
                starts = []
                for i in range(a.reps):
                    cid = f"cold-{mode}-{lang[:2]}-{i}"
                    ts = time.monotonic()
                    subprocess.run(ctr + ["run", "-d", "--runtime", "io.containerd.gvisor.v1", "--runtime-config-path",
                                          cfg, "--annotation", "dev.gvshim.execute=true", a.image, cid, "sh", "-c",
                                          "while :; do sleep 3600 & wait; done"], check=True,
                                   stdout=subprocess.DEVNULL)
                    t0 = time.monotonic()
                    starts.append((t0 - ts) * 1000)
                    try:
                        sock = None
                        while sock is None and time.monotonic() - t0 < 60:
                            sock = socket_of(a.execute_dir, cid)
                            if sock is None:
                                time.sleep(0.005)
                        ch = grpc.insecure_channel("unix://" + sock)
                        stub = ch.unary_unary("/gvshim.execute.v1.Execute/Execute",
                                              request_serializer=pb.ExecuteRequest.SerializeToString,
                                              response_deserializer=pb.ExecuteResponse.FromString)
                        resp = stub(pb.ExecuteRequest(language=lang_enum[lang], code=SNIPPET[lang],
                                                      arguments_json='{"a": 2, "b": 3}'), timeout=120)
                        t1 = time.monotonic()
                        if resp.status != pb.STATUS_SUCCESS:
                            print(f"  {cid}: status {resp.status} {resp.error}", file=sys.stderr)
                        else:
                            samples.append((t1 - t0) * 1000)
                        ch.close()
                    finally:
                        subprocess.run(ctr + ["task", "kill", "-s", "SIGKILL", cid], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
                        for _ in range(100):
                            if subprocess.run(ctr + ["task", "delete", cid], stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL).returncode == 0:
                                break
                            time.sleep(0.1)
                        subprocess.run(ctr + ["container", "delete", cid], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
                results[(mode, lang)] = samples
                start_times[(mode, lang)] = starts
        # Baseline: a cold interpreter started with `ctr task exec` in a running container of the image.
        cid = "cold-baseline"
        subprocess.run(ctr + ["run", "-d", "--runtime", "io.containerd.gvisor.v1", a.image, cid, "sh", "-c",
                              "while :; do sleep 3600 & wait; done"], check=True, stdout=subprocess.DEVNULL)
        base = {}
        try:
            for lang in ("python", "javascript"):
                s = []
                for i in range(a.reps):
                    t0 = time.monotonic()
                    subprocess.run(ctr + ["task", "exec", "--exec-id", f"b{lang[:2]}{i}", cid] + BASELINE[lang],
                                   check=True, stdout=subprocess.DEVNULL)
                    s.append((time.monotonic() - t0) * 1000)
                base[lang] = s
        finally:
            subprocess.run(ctr + ["task", "kill", "-s", "SIGKILL", cid], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            subprocess.run(ctr + ["task", "delete", cid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            subprocess.run(ctr + ["container", "delete", cid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print("cold start: container running -> first Execute answered (median / p90 of %d)" % a.reps)
    for (mode, lang), s in results.items():
        st = start_times[(mode, lang)]
        if s:
            print("  %-6s %-10s %8.1f ms / %8.1f ms   (ctr run -d took %.0f ms)"
                  % (mode, lang, statistics.median(s), pct(s, 90), statistics.median(st)))
        else:
            print("  %-6s %-10s no successful sample" % (mode, lang))
    for lang, s in base.items():
        print("  baseline `ctr task exec` %-10s %8.1f ms (median)" % (lang, statistics.median(s)))
    if a.summary:
        out = {"%s_%s" % (mode, lang): (statistics.median(s) if s else None) for (mode, lang), s in results.items()}
        out.update({"start_%s_%s" % k: statistics.median(v) for k, v in start_times.items() if v})
        out.update({"exec_%s" % lang: statistics.median(s) for lang, s in base.items()})
        with open(a.summary, "w") as f:
            json.dump(out, f)


if __name__ == "__main__":
    main()
