"""Loopback SSE server for the benchmarks: precomputed bodies, one path per workload.

    python benchmarks/sse_server.py [--workloads small,large] [--quick] [--silence 2.0]

Runs in its own process (started by throughput.py and first_event.py), binds 127.0.0.1 on a free
port and prints one JSON line: {"port": ..., "bodies": {path: payload bytes}, "wire": {path: body
bytes after the head, HTTP framing included}}. Then it serves, one
thread per connection, until it is terminated:

- ``/<workload>``: the workload's whole body with one ``sendall`` (close-delimited, or chunked with
  one HTTP chunk per event when the workload says so), then the server closes;
- ``/first-close`` and ``/first-chunked``: one event, then ``--silence`` seconds of nothing, then
  the end of the response. A reader that waits for a fixed number of bytes sees the event only then.

The same module defines the workloads, so clients and server agree on counts and contents.
"""

from __future__ import annotations

import argparse
import json
import socket
import socketserver
import sys
from dataclasses import dataclass

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Connection: close\r\n"
)
CHUNKED = b"Transfer-Encoding: chunked\r\n"


@dataclass(frozen=True)
class Workload:
    name: str
    events: int
    quick_events: int
    chunked: bool  # one HTTP chunk per event; else close-delimited
    json: bool  # data is JSON: peers decode it like sseplug's json plugin does
    data_len: int  # length of the last event's data as text (the check when not decoded)

    def count(self, quick: bool) -> int:
        return self.quick_events if quick else self.events


WORKLOADS = {
    w.name: w
    for w in (
        Workload("small", 100_000, 10_000, chunked=False, json=True, data_len=64),
        Workload("large", 2_000, 200, chunked=False, json=False, data_len=64 * 1024),
        Workload("multiline", 50_000, 5_000, chunked=False, json=False, data_len=8 * 32 + 7),
        Workload("multiline-digits", 50_000, 5_000, chunked=False, json=False, data_len=8 * 32 + 7),
        Workload("small-chunked", 100_000, 10_000, chunked=True, json=True, data_len=64),
    )
}

_LARGE = ("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ+/" * 1024).encode()
assert len(_LARGE) == 64 * 1024


def small_data(i: int) -> bytes:
    """Exactly 64 bytes of JSON: {"seq":i,"kind":"tick","pad":"xxx..."}."""
    head = b'{"seq":%d,"kind":"tick","pad":"' % i
    return head + b"x" * (64 - len(head) - 2) + b'"}'


def events_of(workload: Workload, quick: bool) -> list[bytes]:
    """Each event's bytes, in order."""
    n = workload.count(quick)
    if workload.name in ("small", "small-chunked"):
        return [b"id: %d\nevent: tick\ndata: %s\n\n" % (i, small_data(i)) for i in range(n)]
    if workload.name == "large":
        return [b"id: %d\nevent: blob\ndata: %s\n\n" % (i, _LARGE) for i in range(n)]
    if workload.name in ("multiline", "multiline-digits"):
        # "multiline": word-led data; "-digits": digit-led rows (CSV, ids) that are not JSON either
        line = b"line %d of event %d " if workload.name == "multiline" else b"%08d-line%d,"
        out = []
        for i in range(n):
            values = [(k, i) if workload.name == "multiline" else (i, k) for k in range(8)]
            lines = b"".join(b"data: %s\n" % (line % value).ljust(32, b".") for value in values)
            out.append(b"id: %d\nevent: lines\n%s\n" % (i, lines))
        return out
    raise KeyError(workload.name)


def body_of(workload: Workload, quick: bool) -> tuple[bytes, int]:
    """(the bytes after the response head, the SSE payload length without HTTP framing)."""
    events = events_of(workload, quick)
    payload = sum(map(len, events))
    if workload.chunked:
        return b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n", payload
    return b"".join(events), payload


FIRST_EVENT = b'id: 1\nevent: first\ndata: {"hello":"world"}\n\n'


class Handler(socketserver.BaseRequestHandler):
    server: Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = b""
        while b"\r\n\r\n" not in head:
            more = sock.recv(4096)
            if not more:
                return
            head += more
        path = head.split(b" ", 2)[1].decode()
        if path in self.server.bodies:
            chunked, body = self.server.bodies[path]
            sock.sendall(HEAD + (CHUNKED if chunked else b"") + b"\r\n" + body)
        elif path in ("/first-close", "/first-chunked"):
            chunked = path == "/first-chunked"
            event = b"%x\r\n%s\r\n" % (len(FIRST_EVENT), FIRST_EVENT) if chunked else FIRST_EVENT
            sock.sendall(HEAD + (CHUNKED if chunked else b"") + b"\r\n" + event)
            sock.settimeout(self.server.silence)
            try:  # silent; stop early when the client goes away
                while sock.recv(4096):
                    pass
                return
            except TimeoutError:
                pass
            except OSError:
                return
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        else:
            sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        try:  # FIN, then wait for the client's close so that no RST can discard unread bytes
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(10)
            while sock.recv(65536):
                pass
        except OSError:
            pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    bodies: dict[str, tuple[bool, bytes]]
    silence: float


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--workloads", default=",".join(WORKLOADS))
    options.add_argument("--quick", action="store_true")
    options.add_argument("--silence", type=float, default=2.0)
    args = options.parse_args(argv)

    server = Server(("127.0.0.1", 0), Handler)
    server.silence = args.silence
    server.bodies, sizes, wire = {}, {}, {}
    for name in filter(None, args.workloads.split(",")):
        workload = WORKLOADS[name]
        body, payload = body_of(workload, args.quick)
        server.bodies["/" + name] = (workload.chunked, body)
        sizes["/" + name], wire["/" + name] = payload, len(body)
    print(json.dumps({"port": server.server_address[1], "bodies": sizes, "wire": wire}), flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
