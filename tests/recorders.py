"""The recorder plugins the tests register: a handler that records what it handles and fails on
a "boom" event, a checkpoint store and a dead-letter store that record what they were given; and
the poisoned stream that routes and the handler error policy are tried on."""

from __future__ import annotations

from typing import Any

import gevent

from sseplug import Route, SSEClient, SSERequest, SSEResponse, hookimpl
from sseplug.connection import Connection
from sseplug.errors import PluginError
from sseplug.server import Response, SSEServer


class Handler:
    """Records every event it handles, with its connection's id (``handled``); raises ``error``
    for data "boom", the first ``fail_times`` times (``None``: every time; 0: never)."""

    def __init__(self, fail_times: int | None = None, error: type[Exception] = RuntimeError) -> None:
        self.handled: list[tuple[str, SSEResponse]] = []
        self.fail_times, self.error = fail_times, error
        self.failures = 0

    @hookimpl
    def sseplug_handle_event(self, event: SSEResponse, connection: Connection) -> None:
        self.handled.append((connection.id, event))
        if event.data == "boom" and (self.fail_times is None or self.failures < self.fail_times):
            self.failures += 1
            raise self.error(f"cannot store {event.data!r}")

    @property
    def data(self) -> list[Any]:
        """The data of the events handled, in order (a redelivered event once per delivery)."""
        return [event.data for _, event in self.handled]

    @property
    def ids(self) -> list[str]:
        """The ids of the events handled, in order."""
        return [event.id for _, event in self.handled]


class Checkpoints:
    """Records every saved checkpoint (``saved``, ``connections``); given a ``handler``, also how
    many events it had handled at each save (``handled_before``)."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.saved: list[str] = []
        self.connections: list[str] = []
        self.handled_before: list[int] = []
        self._handler = handler

    @hookimpl
    def sseplug_checkpoint_save(self, connection: Connection, last_event_id: str) -> None:
        self.saved.append(last_event_id)
        self.connections.append(connection.id)
        if self._handler is not None:
            self.handled_before.append(len(self._handler.handled))


class DeadLetters:
    """Answers sseplug_dead_letter with ``answer`` (True: stored), recording in ``stored``
    ``(event id, connection id, plugin, error, attempts)``; ``broken``: raises instead."""

    def __init__(self, answer: bool | None = True, broken: bool = False) -> None:
        self.answer, self.broken = answer, broken
        self.stored: list[tuple[str, str, str, str, int]] = []

    @hookimpl
    def sseplug_dead_letter(
        self, event: SSEResponse, connection: Connection, plugin: str, error: BaseException, attempts: int
    ) -> bool | None:
        if self.broken:
            raise OSError("dead-letter store is down")
        self.stored.append((event.id, connection.id, plugin, str(error), attempts))
        return self.answer


POISONED = [b"id: 1\ndata: a\n\n", b"id: 2\nevent: quote\ndata: b\n\n", b"id: 3\ndata: boom\n\n", b"id: 4\ndata: c\n\n"]
"""Four events, the third one "boom" (the one a ``Handler`` fails on), the second of type "quote"."""


def consume(
    sse_server: SSEServer, sse_client: SSEClient, route: Route, **request: Any
) -> tuple[PluginError | None, list[SSEResponse]]:
    """Consume ``POISONED`` once through ``route``: (the ``PluginError`` that ended it, or None;
    the events iterated)."""
    sse_server.script("/s", Response(body=POISONED))
    stream = sse_client.connect("s", SSERequest(sse_server.url("/s"), reconnect="on_error", **request), route=route)
    got: list[SSEResponse] = []
    try:
        with gevent.Timeout(10):
            for event in stream:
                got.append(event)
    except PluginError as error:
        return error, got
    return None, got
