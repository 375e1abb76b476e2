#!/usr/bin/python3
"""Sends malformed Execute requests straight to a shim's Execute socket, then a good one.

  execute_probe.py SOCKET            malformed requests, then a good one
  execute_probe.py SOCKET health     the Health answer (status and message), without starting anything

Each line: `<case>: <gRPC status code name> <detail>`. The shell test asserts on them. Exits 0 when the probe
itself ran (whatever the codes were).
"""
import os
import subprocess
import sys
import tempfile

import grpc

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def load_pb2(tmp):
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{REPO}/proto", f"--python_out={tmp}",
                    "gvshim/execute/v1/execute.proto"], check=True)
    sys.path.insert(0, tmp)
    from gvshim.execute.v1 import execute_pb2  # noqa: E402
    return execute_pb2


def main() -> int:
    sock = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        pb = load_pb2(tmp)
        channel = grpc.insecure_channel("unix://" + sock)
        if len(sys.argv) > 2 and sys.argv[2] == "health":
            health = channel.unary_unary("/gvshim.execute.v1.Execute/Health",
                                         request_serializer=pb.HealthRequest.SerializeToString,
                                         response_deserializer=pb.HealthResponse.FromString)
            h = health(pb.HealthRequest(), timeout=60)
            print(f"{pb.HealthResponse.ServingStatus.Name(h.status)} {h.message}")
            return 0
        execute = channel.unary_unary("/gvshim.execute.v1.Execute/Execute",
                                      request_serializer=pb.ExecuteRequest.SerializeToString,
                                      response_deserializer=pb.ExecuteResponse.FromString)

        def probe(name, req):
            try:
                resp = execute(req, timeout=60)
                print(f"{name}: OK status={pb.Status.Name(resp.status)} stdout={resp.stdout!r}")
            except grpc.RpcError as e:
                print(f"{name}: {e.code().name} {e.details()}")

        probe("unknown-language", pb.ExecuteRequest(language=99, code="print(1)"))
        probe("unspecified-language", pb.ExecuteRequest(code="print(1)"))
        probe("oversized-code", pb.ExecuteRequest(language=pb.LANGUAGE_PYTHON, code="#" * (2 << 20)))
        probe("bad-arguments", pb.ExecuteRequest(language=pb.LANGUAGE_PYTHON, code="def main(a): return a",
                                                 arguments_json="{not json"))
        probe("good-after", pb.ExecuteRequest(language=pb.LANGUAGE_PYTHON, code="print('alive')"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
