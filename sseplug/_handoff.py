"""Handoff: batches of events from a connection's greenlet to the greenlet iterating them.

A ``gevent.queue.Queue`` wakes its reader through the hub, after every other greenlet made
ready by the same poll: with thousands of streams, thousands of batches then wait in memory
at once (and the garbage collector walks them). Here a batch put while the reader waits is
handed over at once, by switching straight to the reader, which switches straight back when
it asks for the next one; should the reader yield to the hub first (it sleeps, does I/O or
stops iterating), the hub resumes the writer then. Everything else waits on the hub as usual.
"""

from __future__ import annotations

import weakref
from typing import Any

from gevent import getcurrent
from gevent.hub import Waiter, get_hub

__all__ = ["Handoff"]


class Handoff:
    """A bounded channel from one writer greenlet to one reader greenlet, on one hub.

    ``put(item)`` hands ``item`` to a waiting reader, the writer going on when the reader asks
    for more or yields to the hub; with no reader waiting it buffers up to ``maxsize`` items,
    then waits for room. ``put(item, last=True)`` only buffers and never waits (the writer is
    about to end, or is not the writer). ``get()`` returns the next item, waiting as long as
    it takes; an exception thrown into a waiting reader (``gevent.Timeout``, a kill) leaves the
    channel consistent.
    """

    __slots__ = (
        "_closed", "_hub", "_items", "_paused_writer", "_reader", "_reader_waiter", "_resumer", "_writer_waiter",
        "maxsize",
    )

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        # a list, not a deque: a deque allocates a block of 64 slots at once, and an idle stream
        # keeps its channel; at most maxsize items (a few more from put(last=True)) wait here
        self._items: list[Any] = []
        self._hub = hub = get_hub()
        self._resumer = _resumers.get(hub) or _resumers.setdefault(hub, _Resumer(hub))
        self._reader: Any = None  # the greenlet waiting in get()
        self._reader_waiter: Waiter[Any] | None = None  # set while the reader waits on the hub
        self._paused_writer: Any = None  # the writer, paused inside put() after a handover
        self._writer_waiter: Waiter[Any] | None = None  # set while the writer waits for room
        self._closed = False  # the reader went away: the writer no longer waits for room

    def empty(self) -> bool:
        """Whether no item is buffered."""
        return not self._items

    def waiting(self) -> bool:
        """Whether the reader waits in ``get()``."""
        return self._reader is not None

    def close(self) -> None:
        """The reader is going away: from now on the writer never waits for room."""
        self._closed = True
        self._wake_writer()

    def put(self, item: Any, last: bool = False) -> None:
        """Give ``item`` to the reader (see the class docstring)."""
        reader = self._reader
        if reader is not None and not last and not self._items:
            self._reader = None
            self._paused_writer = writer = getcurrent()
            self._resumer.add(self)  # should the reader yield to the hub instead of asking
            try:
                reader.switch(item)  # runs the reader until it asks for more or yields to the hub
            finally:
                if self._paused_writer is writer:
                    self._paused_writer = None
            return
        while not (last or self._closed) and len(self._items) >= self.maxsize:
            self._writer_waiter = Waiter(self._hub)
            try:
                self._writer_waiter.get()
            finally:
                self._writer_waiter = None
        self._items.append(item)
        reader = self._reader  # again: it may have come to wait while this writer waited for room
        if reader is not None:
            self._hub.loop.run_callback(self._wake_reader, reader)

    def get(self) -> Any:
        """The next item; waits for one."""
        if self._items:
            return self._take()
        self._reader = reader = getcurrent()
        try:
            while True:
                writer = self._paused_writer
                if writer is not None:  # the writer waits for this very call: go straight back
                    self._paused_writer = None
                    item = writer.switch()
                else:
                    self._reader_waiter = Waiter(self._hub)
                    try:
                        item = self._reader_waiter.get()
                    finally:
                        self._reader_waiter = None
                if item is not None:
                    return item
                if self._items:
                    return self._take()
                self._reader = reader  # woken for nothing (a stale wake-up): wait again
        finally:
            if self._reader is reader:
                self._reader = None

    def _take(self) -> Any:
        item = self._items.pop(0)
        self._wake_writer()  # there is room now
        return item

    def _wake_writer(self) -> None:
        """Let a writer waiting for room look again (through the hub)."""
        if self._writer_waiter is not None:
            self._hub.loop.run_callback(self._writer_waiter.switch, None)

    # -- hub callbacks: each checks that what it was scheduled for still holds --------------

    def _wake_reader(self, reader: Any) -> None:
        if self._reader is not reader:
            return  # it stopped waiting (got an item, or an exception) since
        if self._reader_waiter is not None:
            self._reader_waiter.switch(None)
        else:  # it is waiting in writer.switch() for a writer that buffered instead
            reader.switch(None)


class _Resumer:
    """Per hub: the writers paused after a handover go on at the hub's next callback phase
    (when their reader yielded to the hub instead of asking for more); one callback for all
    streams, not an object per handover, which with thousands of streams the GC would walk."""

    __slots__ = ("loop", "paused", "scheduled")

    def __init__(self, hub: Any) -> None:
        self.loop = hub.loop  # not the hub: the hub is the weak key
        self.paused: list[Handoff] = []
        self.scheduled = False

    def add(self, handoff: Handoff) -> None:
        """Let ``handoff``'s paused writer go on at the next callback phase (one callback for all)."""
        self.paused.append(handoff)
        if not self.scheduled:
            self.scheduled = True
            self.loop.run_callback(self.run)

    def run(self) -> None:
        """The callback: resume every writer paused since the last one."""
        self.scheduled = False
        paused, self.paused = self.paused, []
        for handoff in paused:
            writer = handoff._paused_writer
            if writer is not None:
                handoff._paused_writer = None
                writer.switch()


_resumers: weakref.WeakKeyDictionary[Any, _Resumer] = weakref.WeakKeyDictionary()
