"""``SSEServer``: the listener, its connections (one request each) and what it recorded."""

from __future__ import annotations

import logging
import socket
import ssl
from collections import Counter
from typing import Any

from gevent.pool import Pool
from gevent.server import StreamServer

from ..recording import Recording
from ._framing import BadRequest, RecordedRequest, Response, close_socket, plain_text, read_request, send_response
from ._routes import Routes

__all__ = ["SSEServer"]

logger = logging.getLogger("sseplug.server")

_KILL_TIMEOUT = 1.0


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
        self._routes = Routes()
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
            close_socket(sock)
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
        self._routes.script(path, responses)

    def replay(self, path: str, recording: Recording, *, speed: float = 1.0, loop: bool = False) -> None:
        """Serve ``recording`` at ``path``: its body with the recorded timing (divided by
        ``speed``; 0: at once), from after the event a request's Last-Event-ID names; with
        ``loop``, over and over."""
        self._routes.replay(path, recording, speed, loop)

    def requests_for(self, path: str) -> list[RecordedRequest]:
        """The recorded requests to ``path``, oldest first."""
        return [request for request in self.requests if request.path == path]

    def open_streams(self, path: str) -> int:
        """How many responses to ``path`` are being written (or stalled) right now."""
        return self._open[path]

    def _handle(self, sock: socket.socket, address: tuple[str, int]) -> None:
        self._sockets.add(sock)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                request = read_request(sock)
            except BadRequest as exc:
                send_response(sock, "GET", plain_text(400, str(exc)), ())
                return
            if request is None:
                return
            self.requests.append(request)
            response, body = self._routes.answer(request)
            self._open[request.path] += 1
            try:
                send_response(sock, request.method, response, body)
            finally:
                self._open[request.path] -= 1
        except ConnectionError:
            pass  # the client hung up: normal for a streaming server
        except Exception:
            logger.exception("error serving %s:%s", *address[:2])
        finally:
            self._sockets.discard(sock)
            close_socket(sock)
