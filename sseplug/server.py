"""A loopback SSE server on gevent that speaks raw HTTP/1.1, scripted byte for byte for tests and demos."""

from __future__ import annotations

import enum
import http
import json
import logging
import math
import socket
import ssl
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import gevent
from gevent.pool import Pool
from gevent.server import StreamServer

from .recording import Recording

__all__ = ["DROP", "Response", "RecordedRequest", "SSEServer"]

logger = logging.getLogger(__name__)

_MAX_HEAD = 64 * 1024
_BODILESS = frozenset({204, 304})
_KILL_TIMEOUT = 1.0
_WBITS = {"gzip": 31, "deflate": 15}  # zlib window bits: gzip wrapper, zlib wrapper (HTTP's deflate)


class _Marker(enum.Enum):
    DROP = "DROP"

    def __repr__(self) -> str:
        return self.value


DROP: Final = _Marker.DROP
"""Body marker: close the socket right there, mid-response (no terminating chunk, no gzip trailer).

The close is a FIN, not a reset, so every byte written before it still reaches the client.
"""

Piece = bytes | float | Literal[_Marker.DROP]


def _event_stream_headers() -> dict[str, str]:
    return {"Content-Type": "text/event-stream"}


@dataclass(frozen=True, slots=True)
class Response:
    """One scripted response: status, headers, and a body of byte pieces, sleeps and ``DROP``.

    ``bytes`` pieces are written as is (one HTTP chunk each when chunked; empty ones are skipped),
    numbers sleep that many seconds, ``DROP`` aborts the connection. ``framing`` is ``"chunked"``,
    ``"close"`` (ends by closing) or ``"length"`` (Content-Length of all bytes, compressed if
    compressed). ``encoding`` (``"gzip"`` or ``"deflate"``) compresses the pieces with one stream,
    sync-flushed after each piece, and sends the matching ``Content-Encoding``.
    ``stall`` keeps the connection open, silent, for that many seconds after the body, then closes
    it without ending the response. The server adds framing headers, ``Content-Encoding`` and
    ``Connection: close`` unless ``headers`` already names them.
    """

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=_event_stream_headers)
    body: Sequence[Piece] = ()
    framing: Literal["chunked", "close", "length"] = "chunked"
    encoding: Literal["gzip", "deflate"] | None = None
    stall: float | None = None

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 999:
            raise ValueError(f"status must be a 3-digit code, got {self.status!r}")
        if self.encoding not in (None, *_WBITS):
            raise ValueError(f"encoding must be None, 'gzip' or 'deflate', got {self.encoding!r}")
        if self.framing not in ("chunked", "close", "length"):
            raise ValueError(f"framing must be 'chunked', 'close' or 'length', got {self.framing!r}")
        for piece in self.body:
            if not (piece is DROP or isinstance(piece, bytes) or _is_seconds(piece)):
                raise TypeError(f"body pieces are bytes, seconds or DROP, got {piece!r}")
        if self.stall is not None and not _is_seconds(self.stall):
            raise ValueError(f"stall must be None or seconds >= 0, got {self.stall!r}")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request as the server received it; ``headers`` have lowercase names, ``path`` no query."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    received_at: float


class _BadRequest(Exception):
    pass


class SSEServer:
    """A gevent ``StreamServer`` answering scripted paths, ``/feed/<name>`` and ``/flaky/<name>``.

    Each connection carries one request and is closed after its response (no keep-alive).
    ``/feed/<name>?count=N&interval=S`` streams tick events ``last+1 .. N`` (``last`` from the
    Last-Event-ID header) and ends, or answers 204 when there is nothing left; ``/flaky/<name>?count=N&drop_every=K&interval=S`` does the
    same but, after every K events, writes half of the next one and drops the connection.
    Any other path gets a 404.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None,
        backlog: int | None = None,
    ) -> None:
        self.host = host
        self.backlog = backlog  # the listen queue (gevent's default: 256; raise it for bursts of connects)
        self.ssl_context = ssl_context  # serve https with it
        self.requests: list[RecordedRequest] = []
        self._requested_port = port
        self._server: StreamServer | None = None
        self._pool = Pool()
        self._sockets: set[socket.socket] = set()
        self._scripts: dict[str, tuple[Response, ...]] = {}
        self._replays: dict[str, tuple[Recording, float, bool]] = {}
        self._served: Counter[str] = Counter()
        self._open: Counter[str] = Counter()

    def start(self) -> SSEServer:
        """Bind and serve in the background (in greenlets); return ``self``."""
        if self._server is not None:
            raise RuntimeError("server already started")
        extra: dict[str, Any] = {"ssl_context": self.ssl_context} if self.ssl_context is not None else {}
        self._server = StreamServer(
            (self.host, self._requested_port), self._handle, spawn=self._pool, backlog=self.backlog, **extra
        )
        self._server.start()
        return self

    def stop(self) -> None:
        """Close the listener and every open client connection, stalled ones too."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        self._pool.kill(block=True, timeout=_KILL_TIMEOUT)
        for sock in list(self._sockets):
            _close(sock)
        self._sockets.clear()

    def __enter__(self) -> SSEServer:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (known once started)."""
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.server_port or 0)

    def url(self, path: str = "/") -> str:
        """The absolute URL of ``path`` on this server."""
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}/{path.lstrip('/')}"

    def script(self, path: str, *responses: Response) -> None:
        """Answer the Nth request to ``path`` (from now on) with ``responses[N]``; the last repeats."""
        if not responses:
            raise ValueError("script() needs at least one Response")
        self._scripts[path] = responses
        self._served[path] = 0

    def replay(self, path: str, recording: Recording, *, speed: float = 1.0, loop: bool = False) -> None:
        """Serve ``recording`` at ``path``: its body with the recorded timing (divided by
        ``speed``; 0: at once), from after the event a request's Last-Event-ID names; with
        ``loop``, over and over."""
        self._replays[path] = (recording, speed, loop)

    def requests_for(self, path: str) -> list[RecordedRequest]:
        """The recorded requests to ``path``, oldest first."""
        return [request for request in self.requests if request.path == path]

    def open_streams(self, path: str) -> int:
        """How many responses to ``path`` are being written (or stalled) right now."""
        return self._open[path]

    # -- connection handling ------------------------------------------------------------------

    def _handle(self, sock: socket.socket, address: tuple[str, int]) -> None:
        self._sockets.add(sock)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                request = _read_request(sock)
            except _BadRequest as exc:
                _send(sock, "GET", _text(400, str(exc)), ())
                return
            if request is None:
                return
            self.requests.append(request)
            response, body = self._route(request)
            self._open[request.path] += 1
            try:
                _send(sock, request.method, response, body)
            finally:
                self._open[request.path] -= 1
        except ConnectionError:
            pass  # the client hung up: normal for a streaming server
        except Exception:
            logger.exception("error serving %s:%s", *address[:2])
        finally:
            self._sockets.discard(sock)
            _close(sock)

    def _route(self, request: RecordedRequest) -> tuple[Response, Iterable[Piece]]:
        replay = self._replays.get(request.path)
        if replay is not None:
            recording, speed, loop = replay
            offset = recording.resume_offset(request.headers.get("last-event-id") or "\x00")  # NUL: no id
            return Response(headers={"Content-Type": recording.content_type}), _replayed(recording, offset, speed, loop)
        responses = self._scripts.get(request.path)
        if responses is not None:
            index = self._served[request.path]
            self._served[request.path] += 1
            response = responses[min(index, len(responses) - 1)]
            return response, response.body
        kind, _, name = request.path.lstrip("/").partition("/")
        if kind not in ("feed", "flaky") or not name or "/" in name:
            return _NOT_FOUND, _NOT_FOUND.body
        try:
            count = int(request.query.get("count", "10"))
            interval = float(request.query.get("interval", "0.05"))
            drop_every = int(request.query.get("drop_every", "3")) if kind == "flaky" else 0
        except ValueError:
            count = interval = drop_every = -1
        if count < 0 or drop_every < 0 or not _is_seconds(interval):
            response = _text(400, "count and drop_every must be integers >= 0, interval seconds >= 0")
            return response, response.body
        last = _last_event_id(request.headers.get("last-event-id", ""))
        if last >= count:  # the client has it all: 204 tells an EventSource to stop reconnecting
            return _DONE, ()
        return Response(), _ticks(unquote(name), last, count, interval, drop_every)


# -- helpers ------------------------------------------------------------------------------------


def _replayed(recording: Recording, offset: int, speed: float, loop: bool) -> Iterator[Piece]:
    yield from recording.timeline(offset, speed)
    while loop and recording.pieces:
        yield from recording.timeline(0, speed)


def _is_seconds(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _text(status: int, message: str) -> Response:
    return Response(status, {"Content-Type": "text/plain; charset=utf-8"}, (message.encode(),), "length")


_NOT_FOUND: Final = Response(
    404, {"Content-Type": "text/html; charset=utf-8"}, (b"<html><body><h1>404 Not Found</h1></body></html>\n",), "length"
)


_DONE: Final = Response(204, {"Content-Type": "text/plain"})


def _last_event_id(value: str) -> int:
    try:
        return max(0, int(value))
    except ValueError:
        return 0


def _ticks(name: str, last: int, count: int, interval: float, drop_every: int) -> Iterator[Piece]:
    """The body of /feed and /flaky: events ``last+1 .. count``, a half event and DROP every K."""
    yield b"retry: 200\n\n"
    yield b": hello\n\n"
    sent = 0
    for seq in range(last + 1, count + 1):
        event = f"id: {seq}\nevent: tick\ndata: {json.dumps({'feed': name, 'seq': seq})}\n\n".encode()
        if sent:
            yield interval
        if drop_every and sent == drop_every:
            yield event[: len(event) // 2]
            yield DROP
            return
        yield event
        sent += 1


def _read_request(sock: socket.socket) -> RecordedRequest | None:
    """Read one request; ``None`` if the client left before sending it all."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > _MAX_HEAD:
            raise _BadRequest("request head too large")
        data = sock.recv(65536)
        if not data:
            return None
        buffer += data
    head, _, body = buffer.partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise _BadRequest(f"bad request line {request_line!r}")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if not colon or not name:
            raise _BadRequest(f"bad header line {line!r}")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise _BadRequest("bad Content-Length") from None
    while len(body) < length:
        data = sock.recv(65536)
        if not data:
            return None
        body += data
    target = urlsplit(parts[1])
    return RecordedRequest(
        method=parts[0],
        path=target.path or "/",
        query=dict(parse_qsl(target.query, keep_blank_values=True)),
        headers=headers,
        body=body[:length],
        received_at=time.monotonic(),
    )


def _encoded(pieces: Iterable[Piece], encoding: str | None) -> Iterator[Piece]:
    """The pieces as they go on the wire (before framing); empty byte pieces are dropped."""
    compressor = zlib.compressobj(wbits=_WBITS[encoding]) if encoding else None
    for piece in pieces:
        if isinstance(piece, bytes):
            if not piece:
                continue
            if compressor is not None:
                piece = compressor.compress(piece) + compressor.flush(zlib.Z_SYNC_FLUSH)
        yield piece
        if piece is DROP:
            return
    if compressor is not None:
        yield compressor.flush()


def _send(sock: socket.socket, method: str, response: Response, body: Iterable[Piece]) -> None:
    """Write the response; the caller closes the socket afterwards (also after DROP or a stall)."""
    status, framing = response.status, response.framing
    bodiless = status in _BODILESS or status < 200
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{name}: {value}" for name, value in response.headers.items())]
    given = {name.lower() for name in response.headers}

    def add(name: str, value: str) -> None:
        """Add a header line unless the scripted response set that header itself."""
        if name.lower() not in given:
            lines.append(f"{name}: {value}")

    if not bodiless:
        if response.encoding:
            add("Content-Encoding", response.encoding)
        if framing == "chunked":
            add("Transfer-Encoding", "chunked")
        elif framing == "length":
            body = list(body)
            whole = _encoded((piece for piece in body if piece is not DROP), response.encoding)
            add("Content-Length", str(sum(len(piece) for piece in whole if isinstance(piece, bytes))))
    add("Connection", "close")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    if bodiless or method == "HEAD":
        body = ()
    chunked = framing == "chunked" and not bodiless and method != "HEAD"
    for piece in _encoded(body, response.encoding):
        if piece is DROP:
            return
        if isinstance(piece, bytes):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        else:
            gevent.sleep(piece)
    if response.stall is not None:
        gevent.sleep(response.stall)
    elif chunked:
        sock.sendall(b"0\r\n\r\n")


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
