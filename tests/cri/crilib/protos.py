"""CRI v1 Python stubs, generated at run time from the repository's proto/cri/runtime/v1/api.proto.

Nothing generated is kept in the tree: the first call to load() runs Debian's grpc_tools (python3-grpc-tools)
into a private temporary directory and imports `api_pb2` / `api_pb2_grpc` from there.
"""

import atexit
import importlib
import pathlib
import shutil
import sys
import tempfile

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
PROTO_ROOT = REPO_ROOT / "proto"
PROTO_FILE = "cri/runtime/v1/api.proto"

_loaded = None


def load():
    """Returns (api_pb2, api_pb2_grpc) for package runtime.v1, generating them once per process."""
    global _loaded
    if _loaded is not None:
        return _loaded
    from grpc_tools import protoc  # Debian: python3-grpc-tools

    out = tempfile.mkdtemp(prefix="gvshim-cri-stubs.")
    atexit.register(shutil.rmtree, out, True)
    args = ["protoc", f"-I{PROTO_ROOT}", f"--python_out={out}", f"--grpc_python_out={out}", PROTO_FILE]
    rc = protoc.main(args)
    if rc != 0:
        raise RuntimeError(f"generating CRI stubs: protoc {' '.join(args[1:])} exited {rc}")
    sys.path.insert(0, out)
    try:
        api_pb2 = importlib.import_module("cri.runtime.v1.api_pb2")
        api_pb2_grpc = importlib.import_module("cri.runtime.v1.api_pb2_grpc")
    finally:
        sys.path.remove(out)
    _loaded = (api_pb2, api_pb2_grpc)
    return _loaded
