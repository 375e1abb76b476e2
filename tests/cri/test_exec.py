"""ExecSync, and Exec/Attach through containerd's streaming server (WebSocket, v4.channel.k8s.io)."""

import re
import time

import grpc

from crilib import client as c
from crilib import stream
from crilib.runner import case

SLEEP = ["sleep", "100000"]


def sleeper(t, name):
    pod = t.cri.run_pod(name)
    cid = pod.run_container("app", t.image, command=SLEEP)
    t.cri.wait_container(cid, c.RUNNING)
    return pod, cid


@case("exec_sync")
def exec_sync(t):
    pod, cid = sleeper(t, "execsync")
    r = t.cri.exec_sync(cid, ["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=20)
    assert (r.stdout, r.stderr, r.exit_code) == (b"out\n", b"err\n", 3), r
    r = t.cri.exec_sync(cid, ["id", "-u"], timeout=20)
    assert r.exit_code == 0 and r.stdout.strip().isdigit(), r
    # No terminal for ExecSync.
    r = t.cri.exec_sync(cid, ["sh", "-c", "tty; true"], timeout=20)
    assert b"not a tty" in r.stdout, r


@case("exec_sync_timeout")
def exec_sync_timeout(t):
    """ExecSync with a timeout returns once it passes, and the command does not linger in the pod."""
    pod, cid = sleeper(t, "exectimeout")
    start = time.monotonic()
    try:
        r = t.cri.exec_sync(cid, ["sh", "-c", "echo started; exec sleep 40"], timeout=2)
        raise AssertionError(f"ExecSync past its timeout answered {r}")
    except grpc.RpcError as e:
        assert "timeout" in e.details().lower() or "deadline" in e.details().lower(), e.details()
    took = time.monotonic() - start
    assert took < 30, f"ExecSync with timeout 2 took {took:.1f}s"
    deadline = time.monotonic() + 20
    while True:
        ps = t.cri.exec_sync(cid, ["ps", "-o", "args"], timeout=20).stdout.decode()
        assert "sleep 100000" in ps, ps  # the probe sees the container's own process
        if "sleep 40" not in ps:
            break
        assert time.monotonic() < deadline, f"the timed-out exec is still running:\n{ps}"
        time.sleep(0.1)
    assert t.cri.container_status(cid).state == c.RUNNING


@case("exec_stream")
def exec_stream(t):
    pod, cid = sleeper(t, "execstream")
    out, err, code = stream.run(t.cri.exec_url(cid, ["sh", "-c", "echo out; echo err >&2; exit 5"]))
    assert (out, err, code) == (b"out\n", b"err\n", 5), (out, err, code)
    # stdin
    s = stream.Session(t.cri.exec_url(cid, ["sh", "-c", "read line; echo got:$line"], stdin=True))
    try:
        s.send("hello\n")
        s.wait_for_output("got:hello")
        assert s.exit_code() == 0
    finally:
        s.close()


@case("exec_tty")
def exec_tty(t):
    """A terminal exec gets a real pty inside the sandbox: tty names /dev/pts/N, ttyname works, resize works."""
    pod, cid = sleeper(t, "exectty")
    s = stream.Session(t.cri.exec_url(cid, ["sh"], tty=True, stdin=True))
    try:
        s.resize(100, 30)
        s.send("stty size; tty; echo TTY-$((6*7))\n")
        out = s.wait_for_output("TTY-42").decode(errors="replace")
        assert "not a tty" not in out, out
        assert re.search(r"/dev/pts/\d+", out), f"tty did not name a /dev/pts device:\n{out!r}"
        assert "30 100" in out, f"stty size does not show the resize to 100x30:\n{out!r}"
        # A resize while the shell waits for input: the terminal follows it (SIGWINCH reaches the pty's owner).
        s.resize(120, 40)
        deadline = time.monotonic() + 20
        n = 0
        while True:
            n += 1
            s.send(f"stty size; echo SIZE-$(({n}*1000))\n")
            out = s.wait_for_output(f"SIZE-{n * 1000}\r\n").decode(errors="replace")
            last = out.rsplit(f"SIZE-$(({n}*1000))", 1)[-1]
            if "40 120" in last:
                break
            assert time.monotonic() < deadline, f"second resize not seen:\n{out!r}"
            time.sleep(0.2)
        s.send("exit 3\n")
        assert s.exit_code() == 3
    finally:
        s.close()


@case("attach")
def attach(t):
    """Attach to a container's stdio, without and with a terminal."""
    pod = t.cri.run_pod("attach")
    plain = pod.run_container("plain", t.image, stdin=True, command=[
        "sh", "-c", "while read l; do echo got:$l; echo err:$l >&2; done"])
    term = pod.run_container("term", t.image, stdin=True, tty=True, command=["sh"])
    for cid in (plain, term):
        t.cri.wait_container(cid, c.RUNNING)
    s = stream.Session(t.cri.attach_url(plain, stdin=True))
    try:
        s.send("one\n")
        s.wait_for_output("got:one")
        s.wait_for_output("err:one", channel=stream.STDERR)
    finally:
        s.close()
    s = stream.Session(t.cri.attach_url(term, tty=True, stdin=True))
    try:
        s.resize(90, 20)
        s.send("tty; stty size; echo ATT-$((2+3))\n")
        out = s.wait_for_output("ATT-5").decode(errors="replace")
        assert re.search(r"/dev/pts/\d+|/dev/console", out) and "not a tty" not in out, out
        assert "20 90" in out, f"resize through attach not seen:\n{out!r}"
    finally:
        s.close()
    assert t.cri.container_status(term).state == c.RUNNING
