"""Client for the CRI streaming server (Exec / Attach URLs) over WebSocket, as `kubectl exec` speaks it.

containerd's streaming server (the kubelet's remotecommand code) accepts SPDY and WebSocket; we use WebSocket
with subprotocol `v4.channel.k8s.io` (python3-websocket). Every binary message starts with a channel byte:
0 stdin, 1 stdout, 2 stderr, 3 error (a JSON metav1.Status when the process ends), 4 resize (JSON
{"Width": cols, "Height": rows}, client to server, TTY only). v4 has no way to half-close stdin (that came with
v5, which containerd 1.6 does not speak): interactive tests end the process through its input instead.
"""

import json
import threading
import time

import websocket  # Debian: python3-websocket

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
PROTOCOL = "v4.channel.k8s.io"


class StreamError(AssertionError):
    pass


class Session:
    """One exec/attach session. Output is collected per channel by a reader thread."""

    def __init__(self, url, timeout=30.0):
        ws_url = url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        self.ws = websocket.create_connection(ws_url, subprotocols=[PROTOCOL], timeout=timeout)
        if self.ws.getsubprotocol() != PROTOCOL:
            raise StreamError(f"streaming server chose subprotocol {self.ws.getsubprotocol()!r}, not {PROTOCOL}")
        self.timeout = timeout
        self._cv = threading.Condition()
        self._out = {STDOUT: bytearray(), STDERR: bytearray(), ERROR: bytearray()}
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        try:
            while True:
                op, data = self.ws.recv_data()
                if op == websocket.ABNF.OPCODE_CLOSE:
                    break
                if not data:
                    continue
                with self._cv:
                    self._out.setdefault(data[0], bytearray()).extend(data[1:])
                    self._cv.notify_all()
        except (websocket.WebSocketException, OSError):
            pass
        finally:
            with self._cv:
                self._closed = True
                self._cv.notify_all()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.ws.send_binary(bytes([STDIN]) + data)

    def resize(self, cols, rows):
        self.ws.send_binary(bytes([RESIZE]) + json.dumps({"Width": cols, "Height": rows}).encode())

    def output(self, channel=STDOUT):
        with self._cv:
            return bytes(self._out.get(channel, b""))

    def wait_for_output(self, needle, channel=STDOUT, timeout=None):
        """Waits until `needle` (bytes or str) appears on `channel`; returns everything received on it so far."""
        if isinstance(needle, str):
            needle = needle.encode()
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._cv:
            while needle not in self._out.get(channel, b""):
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise StreamError(f"{needle!r} not seen on channel {channel} "
                                      f"({'stream closed' if self._closed else 'timeout'}); got "
                                      f"{bytes(self._out.get(channel, b''))!r}, "
                                      f"stderr {bytes(self._out.get(STDERR, b''))!r}, "
                                      f"error {bytes(self._out.get(ERROR, b''))!r}")
                self._cv.wait(left)
            return bytes(self._out[channel])

    def wait_closed(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._cv:
            while not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StreamError("stream still open after the timeout")
                self._cv.wait(left)

    def exit_code(self, timeout=None):
        """Waits for the end of the session and returns the process's exit code from the error channel."""
        self.wait_closed(timeout)
        return exit_code_from_status(self.output(ERROR))

    def close(self):
        try:
            self.ws.close()
        except (websocket.WebSocketException, OSError):
            pass


def exit_code_from_status(raw):
    """Exit code from the v4 error channel: empty or Success = 0; NonZeroExitCode carries the code as a cause."""
    if not raw:
        return 0
    st = json.loads(raw)
    if st.get("status") == "Success":
        return 0
    for cause in (st.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            return int(cause["message"])
    raise StreamError(f"stream ended with an error: {st.get('message') or st}")


def run(url, stdin=None, timeout=30.0):
    """Runs a whole non-interactive session: sends `stdin` (if any), returns (stdout, stderr, exit_code)."""
    s = Session(url, timeout)
    try:
        if stdin is not None:
            s.send(stdin)
        code = s.exit_code(timeout)
        return s.output(STDOUT), s.output(STDERR), code
    finally:
        s.close()
