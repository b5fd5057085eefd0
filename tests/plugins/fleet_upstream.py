"""A loopback SSE upstream for fleets: many streams (``GET /s/<id>``), each an append-only log of
events replayed from ``Last-Event-ID``, with what a fleet test must observe: every connect (time,
stream, Last-Event-ID), the readers of each stream at once, and ``drop_all()`` (a restart).

Used in-process by tests/plugins/test_fleet*.py and as a process by benchmarks/fleet.py
(``python tests/plugins/fleet_upstream.py --port P --streams N --interval S``; ``GET /stats``).
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import gevent
import gevent.event
import gevent.monkey
import gevent.server

__all__ = ["Upstream", "peak_per_second"]

_poll = gevent.monkey.get_original("select", "poll")  # select() cannot take descriptors past 1023


def _still_there(sock: socket.socket) -> bool:
    """Whether the client of ``sock`` still has its end open (no FIN or reset arrived yet)."""
    if sock.fileno() < 0:
        return False
    poller = _poll()
    poller.register(sock.fileno(), 1)  # POLLIN
    if not poller.poll(0):
        return True
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except OSError:
        return False


def _arrived(sock: socket.socket) -> float:
    """When the connection of a socket just accepted arrived (monotonic): the kernel's time of the
    handshake, not the accept, which a busy upstream process makes late and in bunches."""
    now = time.monotonic()
    try:  # Linux tcp_info: tcpi_last_data_sent (ms) at offset 44; nothing was sent but the SYN-ACK yet
        since_handshake = struct.unpack_from("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104), 44)[0]
    except (OSError, AttributeError, struct.error):
        return now
    return now - since_handshake / 1000


def peak_per_second(moments: Iterable[float]) -> int:
    """The most of ``moments`` (seconds) in any window of 1 s."""
    times = sorted(moments)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] > 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


class Upstream:
    """Streams ``/s/<id>``: event ``n`` of a stream has ``id: n`` and data ``{"s": id, "n": n, "t": time}``."""

    def __init__(self, port: int = 0, *, interval: float = 0.0) -> None:
        self.interval = interval  # with streams(): one event per stream every interval seconds (0: none)
        self.logs: defaultdict[str, list[bytes]] = defaultdict(list)  # id -> events, event n at n - 1
        self.connects: list[tuple[float, str, str]] = []  # (monotonic time, stream, Last-Event-ID)
        self.responses: defaultdict[str, set[socket.socket]] = defaultdict(set)  # id -> responses being sent
        self.overlaps: list[tuple[float, str]] = []  # a response opened while another reader of its stream was there
        self._wake: defaultdict[str, gevent.event.Event] = defaultdict(gevent.event.Event)
        self._sockets: set[socket.socket] = set()
        self.server = gevent.server.StreamServer(("127.0.0.1", port), self._serve, backlog=4096)
        self._ticker: gevent.Greenlet[..., Any] | None = None
        self.dropped_at = 0.0  # monotonic time of the last drop_all()

    def start(self, ids: list[str] | None = None) -> Upstream:
        self.ids = list(ids or ())
        self.server.start()
        if ids and self.interval > 0:
            self._ticker = gevent.spawn(self._tick, ids)
        return self

    def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.kill()
        self.server.stop(timeout=1)
        self.drop_all()

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def url(self, stream: str) -> str:
        return f"http://127.0.0.1:{self.port}/s/{stream}"

    def send(self, stream: str) -> int:
        """Append one event to ``stream`` now; its number."""
        log = self.logs[stream]
        n = len(log) + 1
        data = json.dumps({"s": stream, "n": n, "t": time.time()}, separators=(",", ":"))
        log.append(f"id: {n}\ndata: {data}\n\n".encode())
        self._wake[stream].set()
        self._wake[stream] = gevent.event.Event()
        return n

    def drop_all(self) -> int:
        """Close every client connection at once (the upstream restarting); how many."""
        sockets = list(self._sockets)
        self.dropped_at = time.monotonic()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(sockets)

    def connects_per_second(self, since: float) -> int:
        """The most connects seen in any 1 s window after ``since``."""
        return peak_per_second(t for t, _, _ in self.connects if t >= since)

    def readers(self, stream: str) -> int:
        """Clients reading ``stream`` now (a response whose client closed its end is not counted)."""
        return sum(1 for sock in list(self.responses.get(stream, ())) if _still_there(sock))

    def open_streams(self) -> int:
        return sum(1 for stream in list(self.responses) if self.readers(stream) > 0)

    def _tick(self, ids: list[str]) -> None:
        step = self.interval / max(1, len(ids))  # spread over the interval
        while True:
            for stream in ids:
                self.send(stream)
                gevent.sleep(step)

    def _serve(self, sock: socket.socket, _address: Any) -> None:
        arrived = _arrived(sock)
        self._sockets.add(sock)
        stream = None
        try:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                head += chunk
            lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            if path.startswith("/stats"):
                after = float(path.partition("?since=")[2] or "inf")
                since = [t for t, _, _ in self.connects if t > self.dropped_at]
                body = json.dumps({"open": self.open_streams(), "connects": len(self.connects),
                                   "overlaps": len(self.overlaps), "now": time.monotonic(),
                                   "connects_since_drop": len(since),
                                   "connect_times_since_drop": since,
                                   "unread": [s for s in self.ids if self.readers(s) == 0][:10],
                                   "connected_since": {s: t for t, s, _ in self.connects if t > after},
                                   "events": sum(len(log) for log in self.logs.values())}).encode()
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
                return
            if path == "/drop":
                self._sockets.discard(sock)  # not this one: its answer must go out
                count = self.drop_all()
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                             + json.dumps({"dropped": count}).encode())
                return
            if method != "GET" or not path.startswith("/s/"):
                sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            stream = path[3:]
            last = headers.get("last-event-id", "")
            self.connects.append((arrived, stream, last))
            if self.readers(stream) > 0:
                self.overlaps.append((time.monotonic(), stream))
            self.responses[stream].add(sock)
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                         b"Connection: close\r\n\r\n: hello\n\n")
            sent = int(last) if last.isdigit() else len(self.logs[stream])  # new readers: from now on
            while True:
                log = self.logs[stream]
                if sent < len(log):
                    sock.sendall(b"".join(log[sent:]))
                    sent = len(log)
                self._wake[stream].wait()
        except (OSError, ValueError):
            return
        finally:
            if stream is not None:
                self.responses[stream].discard(sock)
            self._sockets.discard(sock)
            try:
                sock.close()
            except OSError:
                pass


def main() -> None:
    from gevent import monkey

    monkey.patch_all()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--first", type=int, default=0, help="the number of the first stream (s<first>)")
    parser.add_argument("--interval", type=float, default=10.0)
    args = parser.parse_args()
    upstream = Upstream(args.port, interval=args.interval).start(
        [f"s{i}" for i in range(args.first, args.first + args.streams)])
    try:
        gevent.wait()
    finally:
        upstream.stop()


if __name__ == "__main__":
    main()
