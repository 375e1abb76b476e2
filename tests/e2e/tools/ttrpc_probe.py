#!/usr/bin/python3
"""Talks raw ttrpc to a shim socket: well-formed calls and deliberately malformed frames.

  ttrpc_probe.py --address unix:///path --namespace NS --id ID CASE

CASE:
  connect         Task/Connect; prints shim_pid=, task_pid=, code=
  unknown-method  a call to a method that does not exist; prints code= (gRPC code; 12 = UNIMPLEMENTED)
  concurrent      --clients N --calls M --shim-pid P: N connections at once, M State calls each; prints the
                  shim's fd count before, during and after, and the failed calls
  call METHOD k=v one Task call (Create, Start, Wait, Kill, Delete, State, Shutdown) with the given request
                  fields; prints code=, message= and the response's fields as fN=value
  malformed       sends, each on its own connection: a bad frame type, an oversized length, garbage, half a header,
                  an undecodable Request, an even (server-side) stream id; checks the shim's answer to each
                  against EXPECTED (a code on the frame's stream, or a closed connection) and, with a fresh
                  connection, that Connect still answers. Prints one line per case; exits 1 on any wrong answer
                  or if the shim stopped answering.
Protobuf is encoded by hand (the envelope has five fields), so this needs nothing but Python's stdlib.
"""
import argparse
import os
import random
import re
import socket
import struct
import sys

TYPE_REQUEST, TYPE_RESPONSE = 1, 2
MAX_PAYLOAD = 4 << 20
TASK = "containerd.task.v2.Task"


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(num: int, data: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_varint(num: int, value: int) -> bytes:
    return varint(num << 3) + varint(value)


def parse(buf: bytes) -> dict:
    """Decodes one protobuf message into {field: [values]} (varints as int, length-delimited as bytes)."""
    fields, i = {}, 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(buf, i)
        elif wt == 2:
            n, i = read_varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        fields.setdefault(num, []).append(v)
    return fields


def read_varint(buf: bytes, i: int):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def request(service: str, method: str, payload: bytes, namespace: str) -> bytes:
    kv = field_bytes(1, b"containerd-namespace-ttrpc") + field_bytes(2, namespace.encode())
    return (field_bytes(1, service.encode()) + field_bytes(2, method.encode()) + field_bytes(3, payload) +
            field_varint(4, 10_000_000_000) + field_bytes(5, kv))


def frame(stream: int, typ: int, payload: bytes, flags: int = 0, length: int = None) -> bytes:
    n = len(payload) if length is None else length
    return struct.pack(">IIBB", n, stream, typ, flags) + payload


def connect(address: str) -> socket.socket:
    path = address[len("unix://"):] if address.startswith("unix://") else address
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    if path.startswith("@"):
        path = "\0" + path[1:]
    s.connect(path)
    return s


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def read_response(s: socket.socket):
    """Returns (stream, code, message, payload) of the next response frame."""
    while True:
        length, stream, typ, _flags = struct.unpack(">IIBB", recv_exact(s, 10))
        body = recv_exact(s, length)
        if typ != TYPE_RESPONSE:
            continue
        resp = parse(body)
        code, message = 0, ""
        if 1 in resp:
            st = parse(resp[1][0])
            code = st.get(1, [0])[0]
            message = st.get(2, [b""])[0].decode(errors="replace")
        return stream, code, message, resp.get(2, [b""])[0]


def call(s: socket.socket, stream: int, method: str, payload: bytes, namespace: str):
    s.sendall(frame(stream, TYPE_REQUEST, request(TASK, method, payload, namespace)))
    return read_response(s)


def do_connect(address: str, namespace: str, task_id: str) -> dict:
    with connect(address) as s:
        _, code, message, payload = call(s, 1, "Connect", field_bytes(1, task_id.encode()), namespace)
    out = {"code": code, "message": message}
    if code == 0:
        resp = parse(payload)
        out["shim_pid"] = resp.get(1, [0])[0]
        out["task_pid"] = resp.get(2, [0])[0]
    return out


def outcome(s: socket.socket) -> str:
    """What the server did after a malformed frame: answered (with which code) or closed, or stayed silent."""
    try:
        stream, code, message, _ = read_response(s)
        return f"response stream={stream} code={code} ({message[:80]})"
    except EOFError:
        return "closed"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    except socket.timeout:
        return "silent"


# What the shim must do with each malformed frame (shim/ttrpc/server.cc): answer on the frame's stream with a
# gRPC code when the frame header is usable, close the connection when it is not. "silent" (no answer, no close
# within the timeout) is never right.
EXPECTED = {
    "bad-type": r"response stream=1 code=3 \(ttrpc: unsupported message type 127",
    "oversized-length": r"response stream=1 code=8 \(ttrpc: message length 4294967280 exceeds maximum",
    "oversized-payload": r"response stream=1 code=8 \(ttrpc: message length 4194305 exceeds maximum",
    # Seeded garbage: its first ten bytes read as a header with an odd stream id and a length far beyond the
    # maximum (the seed makes it so); the rest is discarded as that frame's payload.
    "garbage": r"response stream=18344433 code=8 \(ttrpc: message length 4157042717 exceeds maximum",
    "half-header": r"closed",
    "undecodable-request": r"response stream=1 code=3 \(ttrpc: unmarshal request",
    "even-stream-id": r"closed|reset",
    "truncated-then-close": r"closed",
}


def malformed(address: str, namespace: str, task_id: str) -> int:
    rng = random.Random(1234)
    good = request(TASK, "Connect", field_bytes(1, task_id.encode()), namespace)
    cases = {
        "bad-type": lambda s: s.sendall(frame(1, 0x7F, good)),
        "oversized-length": lambda s: s.sendall(frame(1, TYPE_REQUEST, b"", length=0xFFFFFFF0)),
        "oversized-payload": lambda s: s.sendall(frame(1, TYPE_REQUEST, b"\0" * (MAX_PAYLOAD + 1))),
        "garbage": lambda s: s.sendall(bytes(rng.getrandbits(8) for _ in range(65536))),
        "half-header": lambda s: (s.sendall(b"\0\0\0\x05\0"), s.shutdown(socket.SHUT_WR)),
        "undecodable-request": lambda s: s.sendall(frame(1, TYPE_REQUEST, b"\xff\xff\xff\xff\x0f\x0a\x99")),
        "even-stream-id": lambda s: s.sendall(frame(2, TYPE_REQUEST, good)),
        "truncated-then-close": lambda s: (s.sendall(frame(1, TYPE_REQUEST, good, length=len(good) + 100)),
                                           s.shutdown(socket.SHUT_WR)),
    }
    assert set(cases) == set(EXPECTED)
    failures = 0
    for name, send in cases.items():
        try:
            with connect(address) as s:
                s.settimeout(1.5)
                try:
                    send(s)
                    what = outcome(s)
                except (BrokenPipeError, ConnectionResetError):
                    what = "reset while sending"
        except OSError as e:
            what = f"connect failed: {e}"
        verdict = "as expected"
        if not re.match(EXPECTED[name], what):
            verdict = f"WRONG (expected /{EXPECTED[name]}/)"
            failures += 1
        try:
            after = do_connect(address, namespace, task_id)
            if after["code"] == 0:
                alive = "alive"
            else:
                alive = f"WRONG: alive but Connect code={after['code']}"
                failures += 1
        except Exception as e:  # noqa: BLE001 - any failure here means the shim stopped serving
            alive = f"WRONG: DEAD ({e!r})"
            failures += 1
        print(f"{name}: {what}; {verdict}; afterwards shim {alive}", flush=True)
    return 1 if failures else 0


# Request fields of the Task methods `call` can send: name -> (field number, kind) with kind s(tring), u(int),
# b(ool). Field numbers from containerd's runtime/v2/task/shim.proto.
ID_EXEC = {"id": (1, "s"), "exec_id": (2, "s")}
SCHEMAS = {
    "Create": {"id": (1, "s"), "bundle": (2, "s"), "terminal": (4, "b"), "stdin": (5, "s"), "stdout": (6, "s"),
               "stderr": (7, "s")},
    "Start": ID_EXEC, "Wait": ID_EXEC, "Delete": ID_EXEC, "State": ID_EXEC,
    "Kill": {"id": (1, "s"), "exec_id": (2, "s"), "signal": (3, "u"), "all": (4, "b")},
    "Shutdown": {"id": (1, "s"), "now": (2, "b")},
}


def do_call(address: str, namespace: str, method: str, pairs: list) -> int:
    """One Task call with fields given as key=value; prints code=, message= and the response's top-level
    fields as fN=value (varints as numbers, bytes as text)."""
    schema = SCHEMAS[method]
    payload = b""
    for pair in pairs:
        key, _, value = pair.partition("=")
        num, kind = schema[key]
        if kind == "s":
            payload += field_bytes(num, value.encode())
        elif kind == "u":
            payload += field_varint(num, int(value))
        else:
            payload += field_varint(num, 1 if value in ("1", "true") else 0)
    with connect(address) as s:
        s.settimeout(120)
        _, code, message, body = call(s, 1, method, payload, namespace)
    print(f"code={code}")
    print(f"message={message}")
    if code == 0:
        for num, values in sorted(parse(body).items()):
            v = values[0]
            print(f"f{num}={v.decode(errors='replace') if isinstance(v, bytes) else v}")
    return 0 if code == 0 else 1


def concurrent(address: str, namespace: str, task_id: str, clients: int, calls: int, shim_pid: int) -> int:
    """`clients` connections at once, each making `calls` State calls; prints the shim's open fd count before,
    while every connection is open, and after they are closed, and how many calls failed."""
    import threading
    import time

    def fds() -> int:
        return len(os.listdir(f"/proc/{shim_pid}/fd"))

    before = fds()
    socks = [connect(address) for _ in range(clients)]
    failures, lock = [0], threading.Lock()
    ready = threading.Barrier(clients + 1)

    def client(s: socket.socket, n: int) -> None:
        ready.wait()
        for i in range(calls):
            try:
                _, code, message, _ = call(s, 2 * i + 1, "State", field_bytes(1, task_id.encode()), namespace)
                if code != 0:
                    raise RuntimeError(f"code={code} {message}")
            except Exception as e:  # noqa: BLE001 - counted and reported
                with lock:
                    failures[0] += 1
                print(f"client {n} call {i}: {e!r}", flush=True)
                return

    threads = [threading.Thread(target=client, args=(s, n)) for n, s in enumerate(socks)]
    for t in threads:
        t.start()
    ready.wait()
    for t in threads:
        t.join()
    during = fds()
    for s in socks:
        s.close()
    # The server notices each close asynchronously: wait (bounded) for the count to settle at or below before.
    deadline = time.monotonic() + 20
    after = fds()
    while after > before and time.monotonic() < deadline:
        time.sleep(0.05)
        after = fds()
    print(f"fds_before={before}")
    print(f"fds_during={during}")
    print(f"fds_after={after}")
    print(f"failed_calls={failures[0]}")
    print(f"ok_calls={clients * calls - failures[0]}")
    return 0 if failures[0] == 0 else 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--id", default="")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--shim-pid", type=int, default=0)
    ap.add_argument("case", choices=["connect", "unknown-method", "malformed", "concurrent", "call"])
    ap.add_argument("rest", nargs="*", help="call: METHOD key=value ...")
    args = ap.parse_args()
    if args.case == "call":
        return do_call(args.address, args.namespace, args.rest[0], args.rest[1:])
    if args.case == "concurrent":
        return concurrent(args.address, args.namespace, args.id, args.clients, args.calls, args.shim_pid)
    if args.case == "connect":
        r = do_connect(args.address, args.namespace, args.id)
        for k, v in r.items():
            print(f"{k}={v}")
        return 0 if r["code"] == 0 else 1
    if args.case == "unknown-method":
        with connect(args.address) as s:
            _, code, message, _ = call(s, 1, "NoSuchMethod", b"", args.namespace)
        print(f"code={code}")
        print(f"message={message}")
        return 0
    return malformed(args.address, args.namespace, args.id)


if __name__ == "__main__":
    sys.exit(main())
