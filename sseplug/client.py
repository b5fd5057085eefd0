"""SSEClient: named connections on a gevent greenlet pool, each an iterator of events."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Collection, Generator, Iterator
from itertools import chain
from typing import Any
from urllib.parse import urlsplit

import gevent
import gevent.event
import gevent.monkey
import gevent.pool
import urllib3

from ._handoff import Handoff
from .connection import GIVE_BACK, Connection, ConnectionState, HttpFor, Outcome, Steps
from .errors import SSEError
from .models import DEFAULT_POOL_SIZE, SSERequest, SSEResponse
from .plugins import PluginManager, create_plugin_manager
from .route import DEFAULT_ROUTE, Route

__all__ = ["SSEClient", "EventStream", "StreamPool"]

BUFFERED_BATCHES = 2  # per stream; a slow consumer holds the connection's reads back (backpressure)
CLOSE_TIMEOUT = 5.0
_END = object()
_LENT = object()  # the connection lent its response: read it here (EventStream._steps)
_NO_EVENTS: Iterator[Any] = iter(())  # a stream's events before its first iteration (never returned)


class StreamPool(gevent.pool.Pool):
    """The client's pool: a greenlet per stream, or a place kept for a stream whose iterator
    reads it (``lent``: its greenlet ended, and a new one is spawned when the iterator gives
    the response back, so there must be room for it)."""

    lent = 0

    def full(self) -> bool:
        """Whether no stream more fits."""
        return self.free_count() - self.lent <= 0


class EventStream(Iterator[SSEResponse]):
    """The events of one connection, across reconnects, in stream order.

    Iteration ends cleanly when the stream ends or is closed, and raises the ``SSEError`` that
    ended it otherwise (after the events received before it). An exception raised in the
    consumer while it waits for the next event (a ``gevent.Timeout`` around ``next(stream)``)
    ends no stream: iterating again goes on where it left off. While the consumer is not asking,
    a connection in its own greenlet reads ahead at most ``BUFFERED_BATCHES`` batches. A request with ``on_data``
    gets every event whether or not anyone iterates: its events reach the iterator from the
    moment it is first iterated (iterate right after ``connect``, before anything yields to the
    hub, to see them all), and until then the connection never waits for it.

    Once the consumer waits for events with none buffered, and nothing but the parser runs per
    batch (``Connection.lendable``), the connection's greenlet lends it the response and ends:
    the consumer's greenlet reads on (an idle stream then holds one greenlet, not two), only
    while it iterates, and gives the response back to a new greenlet when it is over, to
    reconnect there, or when a plugin that handles events is registered meanwhile.
    """

    def __init__(
        self,
        connection_id: str,
        request: SSERequest,
        *,
        http_for: HttpFor,
        plugins: PluginManager,
        iterate: bool = True,
        route: Route = DEFAULT_ROUTE,
    ) -> None:
        self.connection = Connection(
            connection_id, request, http_for=http_for, plugins=plugins, deliver=self._put if iterate else None,
            lend=self._lend if iterate and request.on_data is None else None, route=route,
        )
        self.iterate = iterate
        self._reading = request.on_data is None  # with on_data: not until someone iterates
        self._done = False  # the iteration is over: the end was read, or close() was called
        self._handoff = Handoff(BUFFERED_BATCHES)
        # made at the first iteration; a batch's events are stepped through by chain's C loop (no
        # generator frame per event)
        self._batches: Generator[list[SSEResponse], None, None] | None = None
        self._events: Iterator[SSEResponse] = _NO_EVENTS
        self._greenlet: gevent.Greenlet[..., None] | None = None
        self._pool: gevent.pool.Pool | None = None
        self._steps: Steps | None = None  # the response's steps while the iterator reads them
        self._returned: gevent.event.Event | None = None  # set when they are given back (made by _join)

    @property
    def state(self) -> ConnectionState:
        """The connection's state."""
        return self.connection.state

    @property
    def error(self) -> SSEError | None:
        """What failed the stream, once it failed for good."""
        return self.connection.error

    @property
    def is_open(self) -> bool:
        """Whether the stream may still give events: neither ended for good nor closed."""
        return not (self._done or self.connection.state.final)

    def start(self, pool: gevent.pool.Pool) -> EventStream:
        """Run the connection in a greenlet of ``pool``; returns ``self``."""
        if self._pool is not None:
            raise RuntimeError(f"stream {self.connection.id!r} already started")
        self._pool = pool
        self._greenlet = pool.spawn(self._run)
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (for ever with ``None``) for the connection to end for
        good; whether it did. A stream its iterator reads (see the class docstring) gets there
        only while it is iterated, or at ``close()``."""
        if self._pool is None:
            raise RuntimeError(f"stream {self.connection.id!r} not started")
        return self._join(timeout)

    def __iter__(self) -> Iterator[SSEResponse]:
        self._reading = True
        batches = self._batches
        # a generator that is neither suspended nor running was just made, or is over: only then
        # is gi_frame read (reading it makes a frame object, which the generator then keeps)
        if batches is None or (
            not (batches.gi_suspended or batches.gi_running)  # type: ignore[attr-defined]  # not in typeshed
            and batches.gi_frame is None  # type: ignore[attr-defined]  # typeshed's Generator lacks it
            and not self._done
        ):
            # the first iteration; or an exception from outside (a gevent.Timeout around next(), a
            # kill) ended the last generator while it waited between batches: a new one goes on,
            # losing nothing
            self._batches = self._generate()
            self._events = chain.from_iterable(self._batches)
        return self._events  # C iterators: for-loops step them without a Python-level __next__

    def __next__(self) -> SSEResponse:
        return next(iter(self))

    def _generate(self) -> Generator[list[SSEResponse], None, None]:
        """The batches handed over by the connection, in order, until its end or its error; read
        here, step by step, while the connection lends its response."""
        handoff, connection = self._handoff, self.connection
        while True:
            steps = self._steps
            if steps is not None and handoff.empty():  # lent: read here
                signal = GIVE_BACK if self._done else connection.lent_step(steps)
                if isinstance(signal, BaseException):
                    raise signal  # this greenlet's own (a Timeout): the steps go on at the next iteration
                if signal is not None:
                    self._give_back(steps, signal)
                continue
            if self._done and handoff.empty():
                return
            item = handoff.get()
            if item is _LENT:
                continue
            if item is _END:
                self._done = True
                if self._steps is not None:  # closed while this greenlet read: the pool ends the response
                    self._give_back(self._steps, GIVE_BACK)
                return
            if isinstance(item, BaseException):
                self._done = True
                raise item
            yield item
            item = None  # the batch is not held while the next one is waited for

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Stop the connection, release its socket and end the iteration (no exception)."""
        self._done = True
        self.connection.stop()
        self._handoff.close()  # the connection must not wait for room to hand over its last batch
        self._handoff.put(_END, last=True)  # wake a consumer waiting for events
        steps = self._steps
        if steps is not None and not steps.gi_running:  # type: ignore[attr-defined]  # lent, not being read: a greenlet ends it
            self._give_back(steps, GIVE_BACK)
        if self._pool is not None and self._greenlet is not gevent.getcurrent() and not self._join(timeout):
            greenlet = self._greenlet
            if greenlet is not None and not greenlet.dead:  # blocked handing over to a consumer that went away
                greenlet.kill(block=True, timeout=timeout)

    def _join(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds for the connection to end for good, through lends and
        give-backs; whether it did."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self._steps is not None:  # the iterator reads it: until it gives the response back
                self._returned = returned = self._returned or gevent.event.Event()
                if not returned.wait(remaining):
                    return False
                continue
            greenlet = self._greenlet
            assert greenlet is not None  # None only while lent
            greenlet.join(remaining)
            if not greenlet.dead:
                return False
            if greenlet is self._greenlet and self._steps is None:
                return True

    def _run(self, steps: Steps | None = None, after: Outcome | None = None) -> None:
        """The connection's greenlet: run it and pass its outcome to the iterator, unless it
        lent its response to the iterator (which gives it back to a new greenlet here)."""
        lent = False
        try:
            lent = not self.connection.run(steps, after)
        except SSEError as error:  # Connection.run wraps anything else: nothing dies silently
            self._put(error, last=True)
        finally:
            if not lent:
                self._put(_END, last=True)

    def _lend(self, steps: Steps) -> bool:
        """The connection asks after a read: take its response's steps when the consumer waits
        for events with none buffered (its greenlet then ends)."""
        handoff, pool = self._handoff, self._pool
        if self._done or not handoff.waiting() or not handoff.empty() or not isinstance(pool, StreamPool):
            return False
        self._steps, self._greenlet = steps, None  # it ends: a Greenlet object less per idle stream
        self.connection.lent = True
        pool.lent += 1
        handoff.put(_LENT, last=True)  # wakes the consumer once this greenlet ended
        return True

    def _give_back(self, steps: Steps, signal: Any) -> None:
        """The response goes back to a new greenlet of the pool: its ``Outcome`` once it is over,
        else its steps to read on (``GIVE_BACK``)."""
        pool = self._pool
        assert isinstance(pool, StreamPool)
        self._steps = None
        self.connection.lent = False
        pool.lent -= 1
        if signal is GIVE_BACK:
            self._greenlet = pool.spawn(self._run, steps)
        else:
            self._greenlet = pool.spawn(self._run, None, signal)
        returned, self._returned = self._returned, None
        if returned is not None:
            returned.set()

    def _put(self, item: Any, last: bool = False) -> None:
        if self.iterate and not self._done and (self._reading or last):
            # the consumer's own greenlet reads while lent: it takes the batch after the step
            self._handoff.put(item, last or self._steps is not None)


class SSEClient:
    """Many named event streams at once, one greenlet each in a bounded ``gevent.pool.Pool``.

    Loads the installed plugins but those named in ``disable`` (e.g. ``["json"]`` keeps ``data``
    as text) unless a ``plugin_manager`` is given; configures the plugins
    (``PluginManager.configure``: with ``None``) unless their owner did, and unconfigures them at
    ``shutdown()``. Needs gevent's monkey
    patches, applied first thing in the program::

        from gevent import monkey; monkey.patch_all()

    ``connect(id, request)`` returns the stream's iterator; ``close(id)`` or ``close()`` ends
    streams cleanly. A second ``connect`` with the id of a stream still open raises ``ValueError``.
    """

    def __init__(
        self,
        *,
        plugin_manager: PluginManager | None = None,
        disable: Collection[str] = (),
        pool_size: int = DEFAULT_POOL_SIZE,
        http: urllib3.PoolManager | None = None,
    ) -> None:
        if not gevent.monkey.is_module_patched("socket"):
            raise RuntimeError(
                "SSEClient needs gevent's monkey patches: add "
                "'from gevent import monkey; monkey.patch_all()' as the first lines of your program"
            )
        if plugin_manager is not None and disable:
            raise TypeError("disable applies to the plugins SSEClient loads; block them in your plugin_manager instead")
        self.plugins = plugin_manager if plugin_manager is not None else create_plugin_manager(disable=disable)
        self.pool = StreamPool(pool_size)
        self._http = http or urllib3.PoolManager(num_pools=max(10, pool_size), maxsize=pool_size, retries=False)
        self._proxies: dict[str, urllib3.ProxyManager] = {}
        self._proxy_settings: dict[str, str] | None = None  # the standard proxy variables, at the first connect
        self._own_http = http is None
        self._streams: dict[str, EventStream] = {}
        self._shut_down = False
        self.plugins.configure()  # unless its owner (the runner) configured it already

    def connect(
        self, connection_id: str, request: SSERequest, *, iterate: bool = True, route: Route = DEFAULT_ROUTE
    ) -> EventStream:
        """Open the stream ``connection_id`` in the pool and return its event iterator.

        With ``iterate=False`` events go only to the plugins and callbacks (the runner's way);
        the returned stream's ``wait()``, ``state`` and ``error`` tell how it finished.
        ``route`` picks the handler plugins and the events they get, and says what a failing
        handler costs (``sseplug.route.Route``; by default: every handler, every event, a
        failure stops the stream).
        """
        if not isinstance(request, SSERequest):
            raise TypeError(f"request: expected an SSERequest, got {type(request).__name__}")
        current = self._streams.get(connection_id)
        if current is not None and current.is_open:
            raise ValueError(
                f"connection id {connection_id!r} is already open; close it first or use another id"
            )
        if self.pool.full():  # Pool.spawn would block until a stream ends: say so instead
            raise SSEError(
                f"the pool of {self.pool.size} connections is full (pool_size); close a connection "
                "or create the SSEClient with a larger pool_size",
                connection_id=connection_id, url=request.url,
            )
        stream = EventStream(
            connection_id, request, http_for=self._http_for, plugins=self.plugins, iterate=iterate, route=route
        )
        self._streams[connection_id] = stream
        return stream.start(self.pool)

    def restart(self, connection_id: str) -> None:
        """Drop the current response of ``connection_id`` and reconnect at once with
        Last-Event-ID (not counted as a failure); a stream waiting to reconnect goes now."""
        stream = self._streams.get(connection_id)
        if stream is None or not stream.is_open:
            raise KeyError(f"no open connection {connection_id!r}; open ones: {sorted(self.connections)}")
        stream.connection.restart()

    def close(self, connection_id: str | None = None) -> None:
        """Close one stream, or every stream when ``connection_id`` is omitted."""
        if connection_id is None:
            streams = list(self._streams.values())
            self._streams.clear()
        else:
            stream = self._streams.pop(connection_id, None)
            if stream is None:
                raise KeyError(f"no connection {connection_id!r}; open ones: {sorted(self._streams)}")
            streams = [stream]
        for stream in streams:
            stream.connection.stop()  # ask all first, so they wind down together
        for stream in streams:
            stream.close()

    def shutdown(self) -> None:
        """Close every stream, tell the plugins (``sseplug_unconfigure``, once) and release sockets."""
        self.close()
        if self._shut_down:
            return
        self._shut_down = True
        self.plugins.unconfigure()
        if self._own_http:
            self._http.clear()
        for proxy in self._proxies.values():
            proxy.clear()

    def __enter__(self) -> SSEClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    @property
    def connections(self) -> dict[str, Connection]:
        """The open connections by id: neither ended for good nor closed."""
        return {cid: stream.connection for cid, stream in self._streams.items() if stream.is_open}

    def _http_for(self, url: str) -> urllib3.PoolManager:
        """The proxy manager the standard proxy variables (``http_proxy``, ``no_proxy``...; read
        at the first connect) ask for, else the direct pool."""
        if not self._own_http:
            return self._http  # a PoolManager passed in is used as it is
        parts = urlsplit(url)
        if self._proxy_settings is None:  # read once: scanning the environment costs ~0.2 ms a connect
            self._proxy_settings = urllib.request.getproxies()
        proxy = self._proxy_settings.get(parts.scheme)
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # not in typeshed
        if not proxy or bypass(parts.hostname or "", self._proxy_settings):
            return self._http
        if proxy not in self._proxies:
            self._proxies[proxy] = urllib3.ProxyManager(proxy, num_pools=10, retries=False)
        return self._proxies[proxy]
