"""The loopback server's demo feeds: ``/feed/<name>`` ticks that resume after Last-Event-ID, and
``/flaky/<name>``, the same with a connection dropped mid-event every K events."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Final
from urllib.parse import unquote

from ._framing import DROP, Piece, RecordedRequest, Response, is_seconds, plain_text

__all__ = ["answer_feed"]

_DONE: Final = Response(204, {"Content-Type": "text/plain"})


def answer_feed(request: RecordedRequest) -> tuple[Response, Iterable[Piece]] | None:
    """The answer to a ``/feed/<name>`` or ``/flaky/<name>`` request; ``None`` for any other path.

    ``count=N&interval=S`` (and ``drop_every=K`` on /flaky) come from the query; a bad value is a
    400, a client that has every event already (``Last-Event-ID >= N``) gets a 204.
    """
    kind, _, name = request.path.lstrip("/").partition("/")
    if kind not in ("feed", "flaky") or not name or "/" in name:
        return None
    try:
        count = int(request.query.get("count", "10"))
        interval = float(request.query.get("interval", "0.05"))
        drop_every = int(request.query.get("drop_every", "3")) if kind == "flaky" else 0
    except ValueError:
        count = interval = drop_every = -1
    if count < 0 or drop_every < 0 or not is_seconds(interval):
        response = plain_text(400, "count and drop_every must be integers >= 0, interval seconds >= 0")
        return response, response.body
    last = _last_event_id(request.headers.get("last-event-id", ""))
    if last >= count:  # the client has it all: 204 tells an EventSource to stop reconnecting
        return _DONE, ()
    return Response(), _ticks(unquote(name), last, count, interval, drop_every)


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
