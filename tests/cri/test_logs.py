"""Container logs in the CRI format at log_directory/log_path, and ReopenContainerLog."""

import os
import re
import tempfile
import time

from crilib import client as c
from crilib.runner import case

# <RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>
LINE = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)) (stdout|stderr) ([FP]) (.*)$")


def parse_log(path):
    records = []
    with open(path, "rb") as f:
        for raw in f.read().split(b"\n"):
            if not raw:
                continue
            m = LINE.match(raw)
            assert m, f"{path}: not a CRI log line: {raw[:120]!r}"
            records.append((m.group(4).decode(), m.group(5).decode(), m.group(6)))
    return records


def wait_file_contains(path, needle, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, "rb") as f:
                data = f.read()
            if needle in data:
                return data
        except FileNotFoundError:
            data = b"(missing)"
        if time.monotonic() >= deadline:
            raise AssertionError(f"{path}: {needle!r} not written within {timeout}s; content {data[-300:]!r}")
        time.sleep(0.05)


@case("cri_log_format")
def cri_log_format(t):
    logdir = tempfile.mkdtemp(prefix="cri-logs.", dir=t.ctd.dir)
    pod = t.cri.run_pod("logs", log_directory=logdir)
    # 40000 bytes on one line: the CRI splits lines longer than 16 KiB into partial (P) records.
    script = "echo out-line; echo err-line >&2; head -c 40000 /dev/zero | tr '\\0' x; echo; printf no-newline"
    cid = pod.run_container("writer", t.image, command=["sh", "-c", script], log_path="writer/0.log")
    st = t.cri.wait_exit(cid)
    assert st.exit_code == 0, st
    path = os.path.join(logdir, "writer/0.log")
    assert st.log_path == path, (st.log_path, path)
    records = parse_log(path)
    assert ("stdout", "F", b"out-line") in records, records[:5]
    assert ("stderr", "F", b"err-line") in records, records[:5]
    long_parts = [r for r in records if r[0] == "stdout" and set(r[2]) == {ord("x")}]
    tags = [r[1] for r in long_parts]
    assert tags and tags[-1] == "F" and set(tags[:-1]) == {"P"} and len(tags) >= 3, tags
    assert sum(len(r[2]) for r in long_parts) == 40000
    # Output that ends without a newline is a partial line: the CRI tags it P.
    assert records[-1] == ("stdout", "P", b"no-newline"), records[-1]


@case("reopen_container_log")
def reopen_container_log(t):
    """After the log file is rotated (renamed), ReopenContainerLog makes the runtime write a new file."""
    logdir = tempfile.mkdtemp(prefix="cri-logs.", dir=t.ctd.dir)
    pod = t.cri.run_pod("rotate", log_directory=logdir)
    cid = pod.run_container("ticker", t.image, log_path="ticker.log", command=[
        "sh", "-c", "i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.1; done"])
    t.cri.wait_container(cid, c.RUNNING)
    path = os.path.join(logdir, "ticker.log")
    wait_file_contains(path, b"tick-3")
    os.rename(path, path + ".1")
    t.cri.reopen_log(cid)
    data = wait_file_contains(path, b"tick-")
    first = int(re.search(rb"tick-(\d+)", data).group(1))
    assert first > 3, f"the new log starts with tick-{first}: it should continue the old one"
    assert parse_log(path), "the reopened log has no CRI records"
    # ReopenContainerLog on a container that is not running is an error, and creates no file.
    t.cri.stop(cid, grace=0)
    os.rename(path, path + ".2")
    try:
        t.cri.reopen_log(cid)
        raise AssertionError("ReopenContainerLog of a stopped container succeeded")
    except c.grpc.RpcError:
        pass
    assert not os.path.exists(path)
