"""SSEClient: named connections on a gevent greenlet pool, each an iterator of events."""

from __future__ import annotations

import urllib.request
from collections.abc import Collection, Generator, Iterator
from itertools import chain
from typing import Any
from urllib.parse import urlsplit

import gevent
import gevent.monkey
import gevent.pool
import urllib3

from ._handoff import Handoff
from .connection import Connection, ConnectionState, HttpFor
from .errors import SSEError
from .models import DEFAULT_POOL_SIZE, SSERequest, SSEResponse
from .plugins import PluginManager, create_plugin_manager
from .route import DEFAULT_ROUTE, Route

__all__ = ["SSEClient", "EventStream"]

BUFFERED_BATCHES = 2  # per stream; a slow consumer holds the connection's reads back (backpressure)
CLOSE_TIMEOUT = 5.0
_END = object()
_NO_EVENTS: Iterator[Any] = iter(())  # a stream's events before its first iteration (never returned)


class EventStream(Iterator[SSEResponse]):
    """The events of one connection, across reconnects, in stream order.

    Iteration ends cleanly when the stream ends or is closed, and raises the ``SSEError`` that
    ended it otherwise (after the events received before it). An exception raised in the
    consumer while it waits for the next event (a ``gevent.Timeout`` around ``next(stream)``)
    ends no stream: iterating again goes on where it left off. While the consumer is not asking,
    the connection reads ahead at most ``BUFFERED_BATCHES`` batches. A request with ``on_data``
    gets every event whether or not anyone iterates: its events reach the iterator from the
    moment it is first iterated (iterate right after ``connect``, before anything yields to the
    hub, to see them all), and until then the connection never waits for it.
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
            route=route,
        )
        self.iterate = iterate
        self._reading = request.on_data is None  # with on_data: not until someone iterates
        self._done = False  # the iteration is over: the end was read, or close() was called
        self._handoff = Handoff(BUFFERED_BATCHES)
        # made at the first iteration; a batch's events are stepped through by chain's C loop (no
        # generator frame per event)
        self._batches: Generator[list[SSEResponse], None, None] | None = None
        self._events: Iterator[SSEResponse] = _NO_EVENTS
        self._greenlet: gevent.Greenlet[[], None] | None = None

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
        if self._greenlet is not None:
            raise RuntimeError(f"stream {self.connection.id!r} already started")
        self._greenlet = pool.spawn(self._run)
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (for ever with ``None``) for the connection to end for
        good; whether it did."""
        if self._greenlet is None:
            raise RuntimeError(f"stream {self.connection.id!r} not started")
        self._greenlet.join(timeout)
        return bool(self._greenlet.dead)

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
        """The batches handed over by the connection, in order, until its end or its error."""
        while not (self._done and self._handoff.empty()):
            item = self._handoff.get()
            if item is _END:
                self._done = True
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
        greenlet = self._greenlet
        if greenlet is not None and greenlet is not gevent.getcurrent():
            greenlet.join(timeout)
            if not greenlet.dead:  # blocked handing over to a consumer that went away
                greenlet.kill(block=True, timeout=timeout)

    def _run(self) -> None:
        """The connection's greenlet: run it and pass its outcome to the iterator."""
        try:
            self.connection.run()
        except SSEError as error:  # Connection.run wraps anything else: nothing dies silently
            self._put(error, last=True)
        finally:
            self._put(_END, last=True)

    def _put(self, item: Any, last: bool = False) -> None:
        if self.iterate and not self._done and (self._reading or last):
            self._handoff.put(item, last)


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
        self.pool = gevent.pool.Pool(pool_size)
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
