"""Reading an event stream's body: the socket's bytes as fast as they come, a stall deadline,
how much to ask for, and when to let the hub run.

An idle stream waits in ``recv`` for minutes. Bounding each wait with the socket's own timeout
costs a gevent ``Timeout`` (a timer started and stopped) per ``recv``: at thousands of streams
that is a good part of the CPU per event. Here the socket waits without a timeout and one timer
per response, re-armed once per ``read_timeout``, fails the read that has waited that long.
"""

from __future__ import annotations

import collections
import io
import os
import ssl
import time
from collections.abc import Callable
from typing import Any

import gevent
import urllib3
from gevent import getcurrent
from urllib3.response import BytesQueueBuffer

from ._chunked import ChunkedDecoder, ChunkedError

__all__ = ["HUB_TURN_EVERY", "LARGE_PENDING", "LARGE_READ_SIZE", "READ_SIZE", "Body", "HubTurns", "StallError",
           "read_size"]

READ_SIZE = 64 * 1024
"""Bytes asked of the socket per read, unless the connection asks more for large events."""
LARGE_READ_SIZE = 1024 * 1024
"""Bytes asked of the socket while a large event (``LARGE_PENDING`` bytes or more) is pending,
or after a read whose events were that large on average: fewer reads and fewer pieces to join.
An idle stream never holds a buffer this size: a read that waits goes through ``recv``, which
allocates once bytes are there; one the socket has bytes for lands in a buffer reused from read to
read (``Body._read_plain``), put back as the process's one spare when reads wait or get small."""
LARGE_PENDING = 16 * 1024
HUB_TURN_EVERY = 0.005
"""Seconds a stream whose socket always has data reads between two polls of the hub before it
lets the hub run (timers, other streams, signals): without it a flooding server freezes the
process, as ``recv`` never blocks. A stream that waited for its bytes starts a new turn."""


Dechunker: type[ChunkedDecoder] = ChunkedDecoder
"""The chunked decoder bodies use: with the whole-chunks loop in C when the parser's C core is
built (``sseplug._cparser.whole_chunks``, the same stops and pieces), else ``ChunkedDecoder``."""
if os.environ.get("SSEPLUG_PURE_PYTHON") != "1":
    try:
        from ._cparser import whole_chunks
    except ImportError:  # pragma: no cover - exercised where the extension is not built
        pass
    else:

        class _CDechunker(ChunkedDecoder):
            """``ChunkedDecoder`` with its common case, whole plain chunks, scanned in C."""

            __slots__ = ()
            _whole_chunks = staticmethod(whole_chunks)

        Dechunker = _CDechunker


def read_size(pending: int, received: int, events: int) -> int:
    """Bytes to ask for next, after a read of ``received`` bytes that completed ``events``
    events and left ``pending`` bytes of an incomplete one: ``LARGE_READ_SIZE`` while events
    are large, ``READ_SIZE`` otherwise."""
    large = pending >= LARGE_PENDING or (events and received >= LARGE_PENDING * events)
    return LARGE_READ_SIZE if large else READ_SIZE


class HubTurns:
    """The hub-turn rule of one reading greenlet: call ``check()`` before each read; once the
    greenlet has read for ``HUB_TURN_EVERY`` seconds without the hub polling in between (its
    socket always had data), ``check()`` yields to the hub (``gevent.idle``)."""

    __slots__ = ("_clock", "_due", "_idle", "_loop", "_polled")

    def __init__(self) -> None:
        self._clock, self._idle, self._loop = time.monotonic, gevent.idle, gevent.get_hub().loop
        self._polled, self._due = -1, 0.0

    def check(self) -> None:
        """Start a new turn if the hub polled since the last check, else yield if the turn is over."""
        iteration = self._loop.iteration
        if iteration != self._polled:  # the hub polled since (this stream waited or yielded): a new turn
            self._polled, self._due = iteration, self._clock() + HUB_TURN_EVERY
        elif self._clock() >= self._due:  # a socket that always has data never blocks: give the hub a turn
            self._idle()
            self._polled = -1


class StallError(TimeoutError):
    """No byte came within ``read_timeout`` while the stream waited for one."""


class Body:
    """The body of ``response``: ``read(size)`` returns the next bytes available, at most about
    ``size`` of them (``None`` at the end); ``close()`` when done with it.

    A body without content coding whose end is not given by Content-Length (chunked, or ending
    at close: every SSE response in practice) is read with the socket's own ``recv``, which
    allocates its buffer once bytes are there (``read1`` allocates 64 KiB before it waits, and
    an idle stream would hold it); chunked bodies are decoded here, many HTTP chunks at a time.
    Anything else goes through urllib3's ``read1`` (at most one HTTP chunk per call) and the
    socket's timeout. A ``recv`` that waits ``read_timeout`` seconds raises ``StallError``.
    Once the socket is read directly, http.client's buffered file (its 8 KiB buffer held for
    the stream's whole life) is swapped for the raw socket file it wraps.
    """

    # methods and slots, not closures: an idle stream holds a bound method or two instead of
    # functions, their cells and closure tuples (~0.7 KB)
    __slots__ = ("read", "_buffer", "_decoder", "_pending", "_read1", "_reader", "_recv", "_since", "_sock", "_timer")

    def __init__(self, response: urllib3.BaseHTTPResponse, read_timeout: float | None) -> None:
        self.read: Callable[[int], bytes | memoryview | None]
        self._timer: Any = None
        self._buffer: bytearray | None = None  # while reads are large and the socket has bytes for them
        self._since: float | None = None  # when the pending recv started; None outside recv
        self._reader: Any = None  # the greenlet in that recv (the stream's, or its iterator's)
        raw: Any = getattr(getattr(response, "_fp", None), "fp", None)  # http.client's buffered socket file
        sock = getattr(getattr(raw, "raw", None), "_sock", None)
        chunked = getattr(response, "chunked", False)
        if (
            sock is None
            or not hasattr(raw, "read1")
            or not (chunked or response.length_remaining is None)
            or response.headers.get("Content-Encoding", "identity").strip().lower() != "identity"
        ):
            self._read1 = response.read1
            self.read = self._read_urllib3
            return
        self._pending = _drain(raw, sock)  # body bytes read along with the headers
        # the buffered file is empty now and never read again: http.client's response gets its
        # raw socket file instead (to close it), and the file's 8 KiB buffer goes with it
        if isinstance(raw, io.BufferedReader):  # what http.client's makefile("rb") gives
            response._fp.fp = raw.detach()  # type: ignore[attr-defined]  # the http.client response
        # urllib3's queue of decoded bytes is not used on this path: an empty one is swapped for
        # one that makes its deque (one 64-slot block, ~0.6 KB) only if urllib3 ever reads again
        queue = getattr(response, "_decoded_buffer", None)
        if type(queue) is BytesQueueBuffer and not len(queue):
            response._decoded_buffer = _IdleQueue()  # type: ignore[attr-defined]  # urllib3's HTTPResponse
        self._recv, self._sock = sock.recv, sock
        if read_timeout is not None:
            sock.settimeout(None)
            self._arm(read_timeout)
        if not chunked:
            self.read = self._read_plain
            return
        self._decoder = Dechunker()
        self.read = self._read_chunked

    def _read_urllib3(self, size: int) -> bytes | None:
        """urllib3's ``read1``: at most one HTTP chunk; ``None`` at the end."""
        return self._read1(size) or None

    def _read_body(self, size: int) -> bytes:
        """Up to ``size`` bytes: those read along with the head first, then the socket's."""
        pending = self._pending
        if pending:
            self._pending = b""
            return pending
        self._since, self._reader = time.monotonic(), getcurrent()
        try:
            received: bytes = self._recv(size)
        finally:
            self._since = None
        return received

    def _read_plain(self, size: int) -> bytes | memoryview | None:
        """The socket's bytes; ``None`` at the end. A large read the socket has bytes for right
        now lands in a buffer kept from read to read: a view of it, valid until the next read,
        instead of a new bytes object each time (a 1 MiB allocation, and page faults whenever glibc
        gives the heap's top back and takes it again). A small read, or one that has to wait, puts
        the buffer back (``_SPARE``): a stream waiting for bytes holds none."""
        buffer = self._buffer
        if size >= LARGE_READ_SIZE and not self._pending:
            if buffer is None:
                try:
                    buffer = _SPARE.pop()
                except IndexError:
                    buffer = bytearray(LARGE_READ_SIZE)
                self._buffer = buffer
            sock = self._sock
            timeout = sock.gettimeout()
            sock.settimeout(0.0)  # only what is there now: a wait would hold the buffer
            try:
                received = sock.recv_into(buffer)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):  # nothing yet
                pass
            else:
                return memoryview(buffer)[:received] if received else None
            finally:
                sock.settimeout(timeout)
        if buffer is not None:
            self._buffer = None
            if not _SPARE:
                _SPARE.append(buffer)
        return self._read_body(size) or None

    def _read_chunked(self, size: int) -> bytes | None:
        """The payload of what the socket gave; ``None`` once the last chunk came."""
        decoder = self._decoder
        if decoder.done:  # the last chunk came: never wait for a keep-alive socket to close
            return None
        data = self._read_body(size)
        if not data:
            raise ChunkedError("the connection closed before the last chunk")
        return decoder.feed(data)

    def _arm(self, seconds: float, after: float | None = None) -> None:
        """Check in ``after`` (default ``seconds``) seconds whether a read waits in ``recv``
        since ``seconds`` or more: fail that read, else check again when it would be due."""
        self._timer = gevent.get_hub().loop.timer(seconds if after is None else after)
        self._timer.start(self._check, seconds)

    def _check(self, seconds: float) -> None:
        """The timer's callback: fail the read that waited ``seconds``, else check again later."""
        timer = self._timer
        if timer is not None:
            timer.close()
        since = self._since
        waited = 0.0 if since is None else time.monotonic() - since
        if waited < seconds:
            self._arm(seconds, seconds - waited)
            return
        self._timer = None
        self._reader.throw(StallError(
            f"no byte for {waited:.3g} s (read_timeout {seconds:g} s): the server or the network "
            "stopped sending; raise read_timeout if the server is quiet for longer between events"
        ))

    def close(self) -> None:
        """Stop the stall timer."""
        if self._timer is not None:
            self._timer.close()
            self._timer = None


_SPARE: list[bytearray] = []
"""The large-read buffer no body holds, if any (``Body._read_plain``): the next body to read large
takes it. One per process at most, whatever the number of streams."""


class _IdleQueue(BytesQueueBuffer):
    """urllib3's ``BytesQueueBuffer`` without its deque until something is put in it."""

    def __init__(self) -> None:  # no super().__init__(): no deque yet
        self._size = 0

    def __getattr__(self, name: str) -> Any:
        if name != "buffer":
            raise AttributeError(name)
        self.buffer = collections.deque()  # first use: urllib3 reads this response after all
        return self.buffer


def _drain(raw: Any, sock: Any) -> bytes:
    """What the buffered file ``raw`` holds, and what the socket has right now, without waiting."""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        return raw.read1(READ_SIZE) or b""
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):  # TLS's "nothing yet" (plain sockets: b"")
        return b""
    finally:
        sock.settimeout(timeout)

