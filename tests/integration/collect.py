"""Bounded consumption of an event iterator, for tests: by count and by time, never forever."""

from __future__ import annotations

from collections.abc import Iterator

import gevent

from sseplug import SSEResponse


def collect(stream: Iterator[SSEResponse], count: int | None = None, timeout: float = 10.0) -> list[SSEResponse]:
    """Events of ``stream`` until it ends or ``count`` arrived; fails after ``timeout`` seconds."""
    events: list[SSEResponse] = []
    with gevent.Timeout(timeout, AssertionError(f"stream did not end within {timeout}s; got {events}")):
        for event in stream:
            events.append(event)
            if count is not None and len(events) >= count:
                break
    return events
