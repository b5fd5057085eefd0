"""Servers that misbehave on purpose, on raw loopback sockets: flooding, silent, dripping, two-faced.

The flood runs in its own process (``python -m tests.integration.hostile flood SECONDS``): a
server in the client's process could only write while the client yields, which is exactly what
a flood must not depend on. It prints its port, then streams tiny events as fast as loopback
takes them for SECONDS, to every client that connects.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gevent
from gevent.pool import Pool
from gevent.server import StreamServer

from sseplug.server import SSEServer

ROOT = Path(__file__).resolve().parents[2]
STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            break
        data += more
    return data


# -- the flood, in its own process ----------------------------------------------------------------


def _flood(seconds: float) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    block = b"data: x\n\n" * 10_000
    until = time.monotonic() + seconds

    def serve(sock: socket.socket) -> None:
        with sock:
            _read_head(sock)
            try:
                sock.sendall(STREAM_HEAD)
                while time.monotonic() < until:
                    sock.sendall(block)
            except OSError:
                pass  # the client left

    listener.settimeout(0.5)
    while time.monotonic() < until:
        try:
            sock, _ = listener.accept()
        except TimeoutError:
            continue
        threading.Thread(target=serve, args=(sock,), daemon=True).start()


@contextmanager
def flood_server(seconds: float) -> Iterator[str]:
    """The URL of a flooding server in a subprocess, which floods for ``seconds`` then stops."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.hostile", "flood", str(seconds)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        with gevent.Timeout(20, AssertionError("the flood server did not start")):
            port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/flood"
    finally:
        proc.kill()
        proc.wait(timeout=10)


# -- servers in the test's process ----------------------------------------------------------------


@contextmanager
def raw_server(handle: object) -> Iterator[str]:
    """A gevent server on 127.0.0.1 calling ``handle(sock)`` per connection; yields its base URL."""
    # a pool: stop() kills the handlers still running (a silent one sleeps for a minute)
    server = StreamServer(("127.0.0.1", 0), lambda sock, _address: handle(sock), spawn=Pool())  # type: ignore[operator]
    server.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.stop(timeout=1)


def silent(sock: socket.socket) -> None:
    """Read the request, then never answer."""
    _read_head(sock)
    gevent.sleep(60)


def dripping_head(sock: socket.socket) -> None:
    """Answer with a head that never ends, one byte every 0.25 s."""
    _read_head(sock)
    for byte in (STREAM_HEAD[:-2] + b"X-Pad: " + b"a" * 240):
        sock.sendall(bytes([byte]))
        gevent.sleep(0.25)


class TwoFacedServer(SSEServer):
    """An ``SSEServer`` speaking TLS and plain HTTP on one port (it peeks at the first byte), so
    that ``https://host:port/`` can redirect to ``http://host:port/``: same host, same port."""

    def __init__(self, tls: ssl.SSLContext) -> None:
        super().__init__()
        self._tls = tls

    def _handle(self, sock: socket.socket, address: tuple[str, int]) -> None:
        try:
            first = sock.recv(1, socket.MSG_PEEK)
            if first == b"\x16":  # a TLS handshake record
                sock = self._tls.wrap_socket(sock, server_side=True)
        except (OSError, ssl.SSLError):
            sock.close()
            return
        super()._handle(sock, address)


if __name__ == "__main__":
    if sys.argv[1:2] == ["flood"]:
        _flood(float(sys.argv[2]))
