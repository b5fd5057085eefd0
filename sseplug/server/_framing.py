"""HTTP/1.1 framing of the loopback server: the scripted ``Response``, the ``RecordedRequest``,
reading a request head and body, writing a response (chunked, close- or length-delimited,
compressed, cut off by ``DROP`` or left stalled)."""

from __future__ import annotations

import enum
import http
import math
import socket
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import parse_qsl, urlsplit

import gevent

__all__ = ["DROP", "BadRequest", "Piece", "RecordedRequest", "Response", "close_socket", "is_seconds", "plain_text",
           "read_request", "send_response"]

_MAX_HEAD = 64 * 1024
_BODILESS = frozenset({204, 304})
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
            if not (piece is DROP or isinstance(piece, bytes) or is_seconds(piece)):
                raise TypeError(f"body pieces are bytes, seconds or DROP, got {piece!r}")
        if self.stall is not None and not is_seconds(self.stall):
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


class BadRequest(Exception):
    """The request could not be read as HTTP/1.1: the server answers 400 with the message."""


def is_seconds(value: object) -> bool:
    """Whether ``value`` is a finite number of seconds >= 0 (a bool is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def plain_text(status: int, message: str) -> Response:
    """A length-delimited ``text/plain`` response carrying ``message``."""
    return Response(status, {"Content-Type": "text/plain; charset=utf-8"}, (message.encode(),), "length")


def read_request(sock: socket.socket) -> RecordedRequest | None:
    """Read one request; ``None`` if the client left before sending it all."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > _MAX_HEAD:
            raise BadRequest("request head too large")
        data = sock.recv(65536)
        if not data:
            return None
        buffer += data
    head, _, body = buffer.partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise BadRequest(f"bad request line {request_line!r}")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if not colon or not name:
            raise BadRequest(f"bad header line {line!r}")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise BadRequest("bad Content-Length") from None
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


def send_response(sock: socket.socket, method: str, response: Response, body: Iterable[Piece]) -> None:
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


def close_socket(sock: socket.socket) -> None:
    """Shut both directions down (a FIN, not a reset), then close."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
