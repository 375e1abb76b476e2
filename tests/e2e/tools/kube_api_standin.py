#!/usr/bin/python3
"""A stand-in for the few Kubernetes API calls the node installer makes (there is no cluster on the test machines).

    kube_api_standin.py DIR NODE_NAME

Serves HTTPS on 127.0.0.1 (an ephemeral port, written to DIR/port) with the certificate DIR/tls.crt + tls.key,
and checks the bearer token in DIR/token. State: one Node (labels in DIR/node.json), DaemonSets from
DIR/daemonsets/NS_NAME.json (absent = 404). Answers:
  GET   /api/v1/nodes/NODE                             the node
  PATCH /api/v1/nodes/NODE  (merge patch of metadata.labels only; anything else is refused with 422)
  GET   /apis/apps/v1/namespaces/NS/daemonsets/NAME
Every request is appended to DIR/requests.log as "METHOD PATH BODY". It stops when its stdin closes.
"""
import http.server
import json
import os
import ssl
import sys
import threading

DIR, NODE = sys.argv[1], sys.argv[2]


def node():
    with open(os.path.join(DIR, "node.json")) as f:
        labels = json.load(f)
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": labels}}


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def record(self, body=""):
        with open(os.path.join(DIR, "requests.log"), "a") as f:
            f.write(f"{self.command} {self.path} {body}\n")

    def authorized(self):
        with open(os.path.join(DIR, "token")) as f:
            token = f.read().strip()
        if self.headers.get("Authorization") != f"Bearer {token}":
            self.answer(401, {"kind": "Status", "message": "Unauthorized", "code": 401})
            return False
        return True

    def do_GET(self):
        self.record()
        if not self.authorized():
            return
        if self.path == f"/api/v1/nodes/{NODE}":
            return self.answer(200, node())
        parts = self.path.split("/")
        if len(parts) == 8 and parts[1:4] == ["apis", "apps", "v1"] and parts[6] == "daemonsets":
            path = os.path.join(DIR, "daemonsets", f"{parts[5]}_{parts[7]}.json")
            if os.path.exists(path):
                with open(path) as f:
                    return self.answer(200, json.load(f))
        self.answer(404, {"kind": "Status", "message": f"{self.path} not found", "code": 404})

    def do_PATCH(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        self.record(body)
        if not self.authorized():
            return
        if self.path != f"/api/v1/nodes/{NODE}":
            return self.answer(404, {"kind": "Status", "message": f"{self.path} not found", "code": 404})
        if self.headers.get("Content-Type") != "application/merge-patch+json":
            return self.answer(415, {"kind": "Status", "message": "unsupported patch type", "code": 415})
        patch = json.loads(body)
        if set(patch) != {"metadata"} or set(patch["metadata"]) != {"labels"}:
            return self.answer(422, {"kind": "Status", "message": "only metadata.labels may change", "code": 422})
        with open(os.path.join(DIR, "node.json")) as f:
            labels = json.load(f)
        for k, v in patch["metadata"]["labels"].items():
            if v is None:
                labels.pop(k, None)
            else:
                labels[k] = v
        with open(os.path.join(DIR, "node.json"), "w") as f:
            json.dump(labels, f)
        self.answer(200, node())


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(DIR, "tls.crt"), os.path.join(DIR, "tls.key"))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    with open(os.path.join(DIR, "port.tmp"), "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(os.path.join(DIR, "port.tmp"), os.path.join(DIR, "port"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()  # until the test closes our stdin
    server.shutdown()


if __name__ == "__main__":
    main()
