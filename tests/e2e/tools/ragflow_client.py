#!/usr/bin/python3
"""A RAGFlow-shaped client of `gvshim gateway` (what RAGFlow's self-managed sandbox provider sends).

  ragflow_client.py run URL [--token T | --x-token T] [--lang python|nodejs] [--args JSON]
                    (--code CODE | --code-b64 TEXT | --body RAW) [--no-lang]
      one POST /run; prints {"http": CODE, "pod": X-Gvshim-Pod, "body": <JSON or text>}
  ragflow_client.py get URL PATH
      one GET; prints {"http": CODE, "body": ...} (the body as text for /metrics)
  ragflow_client.py load URL --token T --clients N --seconds S
      N threads post python and nodejs snippets with arguments for S seconds, each on a new connection (as
      `requests.post` does); checks every answer; prints {"requests": n, "failures": [...], "pods": {...}}

Exits 0 when the client itself ran.
"""
import argparse
import base64
import http.client
import json
import sys
import threading
import time
import urllib.parse


def request(url, method, path, body=None, headers=None, timeout=120):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read().decode("utf-8", "replace")
        return resp.status, dict(resp.getheaders()), data
    finally:
        conn.close()


def auth_headers(args):
    h = {}
    if getattr(args, "token", None):
        h["Authorization"] = "Bearer " + args.token
    if getattr(args, "x_token", None):
        h["X-Sandbox-Token"] = args.x_token
    return h


def post_run(url, payload, headers, timeout=120):
    h = {"Content-Type": "application/json"}
    h.update(headers)
    # UTF-8 bytes, as requests.post(json=...) sends them (http.client would encode a str as Latin-1)
    body = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
    if isinstance(body, str):
        body = body.encode()
    code, hdrs, data = request(url, "POST", "/run", body, h, timeout)
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = data
    return {"http": code, "pod": hdrs.get("X-Gvshim-Pod", ""), "body": parsed}


def cmd_run(args):
    if args.body is not None:
        payload = args.body
    else:
        payload = {}
        if args.code is not None:
            payload["code_b64"] = base64.b64encode(args.code.encode()).decode()
        elif args.code_b64 is not None:
            payload["code_b64"] = args.code_b64
        if not args.no_lang:
            payload["language"] = args.lang
        if args.args is not None:
            payload["arguments"] = json.loads(args.args)
    print(json.dumps(post_run(args.url, payload, auth_headers(args))))


def cmd_get(args):
    code, _, data = request(args.url, "GET", args.path)
    try:
        body = json.loads(data)
    except ValueError:
        body = data
    print(json.dumps({"http": code, "body": body}))


SNIPPETS = [
    ("python", "def main(a, b):\n    return {'sum': a + b}\n", lambda a, b: {"sum": a + b}),
    ("nodejs", "function main(args) { return {sum: args.a + args.b}; }", lambda a, b: {"sum": a + b}),
]


def cmd_load(args):
    stop = time.monotonic() + args.seconds
    lock = threading.Lock()
    stats = {"requests": 0, "failures": [], "pods": {}, "by_language": {}}

    def worker(i):
        n = 0
        while time.monotonic() < stop:
            lang, code, want = SNIPPETS[(i + n) % len(SNIPPETS)]
            a, b = i, n
            n += 1
            payload = {"code_b64": base64.b64encode(code.encode()).decode(), "language": lang,
                       "arguments": {"a": a, "b": b}}
            try:
                r = post_run(args.url, payload, auth_headers(args))
                body = r["body"]
                ok = (r["http"] == 200 and isinstance(body, dict) and body.get("status") == "success"
                      and (body.get("result") or {}).get("value") == want(a, b))
                err = None if ok else r
            except Exception as e:  # noqa: BLE001 - any client error is a failure to report
                ok, err = False, repr(e)
            with lock:
                stats["requests"] += 1
                stats["by_language"][lang] = stats["by_language"].get(lang, 0) + 1
                if ok:
                    stats["pods"][r["pod"]] = stats["pods"].get(r["pod"], 0) + 1
                elif len(stats["failures"]) < 5:
                    stats["failures"].append(err)
                else:
                    stats["failures"].append("...")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(stats))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("url")
    r.add_argument("--token")
    r.add_argument("--x-token")
    r.add_argument("--lang", default="python")
    r.add_argument("--no-lang", action="store_true")
    r.add_argument("--args")
    r.add_argument("--code")
    r.add_argument("--code-b64")
    r.add_argument("--body")
    g = sub.add_parser("get")
    g.add_argument("url")
    g.add_argument("path")
    ld = sub.add_parser("load")
    ld.add_argument("url")
    ld.add_argument("--token")
    ld.add_argument("--clients", type=int, default=8)
    ld.add_argument("--seconds", type=float, default=10)
    args = p.parse_args()
    {"run": cmd_run, "get": cmd_get, "load": cmd_load}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
