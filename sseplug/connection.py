"""One stream's life: claim -> open -> read -> parse -> dispatch -> wait, and again, like a browser.

Theory of operation. ``Connection.run()`` loops: ask ``sseplug_claim`` for the stream (standby
until granted), load the checkpoint when resuming, open a response (``_http``), read its body
(``_body``) through the parser, hand every batch to the ``Dispatcher`` (``_dispatch``: filters,
handlers, checkpoint), then ask ``Backoff`` (``_reconnect``) what follows: end, raise, or wait
and reconnect. The state moves only through ``_enter``, by the ``TRANSITIONS`` table. ``stop()``,
``release()`` and ``restart()`` set one ``Interrupt`` (stop outranks release, release outranks
restart), which ends the read loop, names the close reason and is taken where the loop acts on it.
The rules are docs/design.rst's "Reconnection" and "Delivery" sections.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import urllib3
from urllib3 import HTTPHeaderDict
from urllib3.exceptions import HTTPError as Urllib3Error

from . import _http
from ._body import READ_SIZE, Body, HubTurns, read_size
from ._chunked import ChunkedError
from ._dispatch import ConnectionStats, Counted, Dispatcher
from ._http import HttpFor
from ._reconnect import HEALTHY_AFTER, Backoff, checked_last_event_id, seconds
from .errors import EventTooLargeError, NetworkError, SSEError
from .models import SSERequest, SSEResponse
from .parser import DataDecodeError, EventParser
from .plugins import PluginManager
from .redaction import public_error, public_url
from .route import DEFAULT_ROUTE, Route

__all__ = ["Connection", "ConnectionState", "ConnectionStats", "HttpFor", "Interrupt"]

log = logging.getLogger("sseplug.connection")


class ConnectionState(str, enum.Enum):
    """Where a connection is in its life; a ``str``, so it reads as its value in JSON and logs."""

    NEW = "new"  #: created, not started
    STANDBY = "standby"  #: another process holds the stream (``sseplug_claim``)
    CONNECTING = "connecting"  #: request sent, response head not complete yet
    OPEN = "open"  #: reading events
    WAITING = "waiting"  #: between a response's end and the next reconnect
    ENDED = "ended"  #: ended for good, cleanly (204, no retry, a stop)
    FAILED = "failed"  #: ended for good with ``error``

    @property
    def final(self) -> bool:
        """Whether the connection ended for good."""
        return self in (ConnectionState.ENDED, ConnectionState.FAILED)

    def __str__(self) -> str:
        return self.value


_S = ConnectionState
TRANSITIONS: dict[ConnectionState, frozenset[ConnectionState]] = {
    _S.NEW: frozenset({_S.STANDBY, _S.CONNECTING, _S.ENDED, _S.FAILED}),
    _S.STANDBY: frozenset({_S.STANDBY, _S.CONNECTING, _S.ENDED, _S.FAILED}),
    # a restart or a release reconnects (or claims again) without waiting
    _S.CONNECTING: frozenset({_S.CONNECTING, _S.STANDBY, _S.OPEN, _S.WAITING, _S.ENDED, _S.FAILED}),
    _S.OPEN: frozenset({_S.CONNECTING, _S.STANDBY, _S.WAITING, _S.ENDED, _S.FAILED}),
    _S.WAITING: frozenset({_S.STANDBY, _S.CONNECTING, _S.ENDED, _S.FAILED}),
    _S.ENDED: frozenset(),
    _S.FAILED: frozenset(),
}
"""The states each state may move to; any other move is a bug (``_enter`` raises)."""


class Interrupt(enum.Enum):
    """What cut the connection's current step short; its value is the close reason."""

    RESTART = "restarted"  #: reconnect now, nothing counted (``restart()``)
    RELEASE = "released"  #: give the stream up, claim it again, resume from the checkpoint (``release()``)
    STOP = "stopped"  #: end for good, cleanly (``stop()``); never taken back

    @property
    def rank(self) -> int:
        """Which interrupt wins when two are asked for: the higher rank."""
        return _RANKS[self]


_RANKS = {Interrupt.RESTART: 0, Interrupt.RELEASE: 1, Interrupt.STOP: 2}
_START = Backoff()


class Lifecycle:
    """A connection's state, moved only by ``_enter`` (``TRANSITIONS``), and its pending
    ``Interrupt``: what ``stop()``, ``release()`` and ``restart()`` ask of the running loop."""

    id: str

    def __init__(self) -> None:
        self._state = ConnectionState.NEW
        self._interrupt: Interrupt | None = None
        self._wakeup = gevent.event.Event()  # set to cut a wait short (a stop, a restart)
        self._response: urllib3.BaseHTTPResponse | None = None  # the response being read, to close

    @property
    def state(self) -> ConnectionState:
        """Where the connection is in its life."""
        return self._state

    @property
    def stopping(self) -> bool:
        """Whether ``stop()`` was called."""
        return self._interrupt is Interrupt.STOP

    def _enter(self, state: ConnectionState) -> None:
        """Move to ``state``; a ``RuntimeError`` (a bug) if ``TRANSITIONS`` does not allow it."""
        if state not in TRANSITIONS[self._state]:
            raise RuntimeError(f"connection {self.id!r}: no transition from {self._state} to {state}")
        self._state = state

    def stop(self) -> None:
        """Stop reading and reconnecting: ``run()`` returns soon after, without an error."""
        self._interrupt_with(Interrupt.STOP)
        self._wakeup.set()

    def restart(self) -> None:
        """Drop the current response and reconnect at once, with Last-Event-ID; not a failure:
        neither the retry count nor the backoff moves. A wait to reconnect is cut short."""
        self._interrupt_with(Interrupt.RESTART)
        self._wakeup.set()

    def release(self) -> None:
        """Give the stream up for now (a lease plugin lost it): the current response is closed,
        then the connection asks ``sseplug_claim`` again and, once it has the stream back,
        resumes from ``sseplug_checkpoint_load``. Not a failure: the retry count is untouched."""
        self._interrupt_with(Interrupt.RELEASE)

    def _interrupt_with(self, interrupt: Interrupt) -> None:
        """Ask for ``interrupt`` (unless one that outranks it is pending), and close the response."""
        if self._interrupt is None or interrupt.rank > self._interrupt.rank:
            self._interrupt = interrupt
        response = self._response
        if response is not None:
            try:
                response.shutdown()  # wakes a read blocked on the socket
            except (ValueError, RuntimeError, OSError):
                pass

    def _take(self, *interrupts: Interrupt) -> Interrupt | None:
        """The pending interrupt if it is one of ``interrupts``, now acted on: cleared, and the
        wake-up with it (a stop stays: it is for good)."""
        interrupt = self._interrupt
        if interrupt is None or interrupt not in interrupts:
            return None
        if interrupt is not Interrupt.STOP:
            self._interrupt = None
            self._wakeup.clear()
        return interrupt


class Connection(Counted, Lifecycle):
    """One named event stream: reads it, hands each event to the plugins, reconnects on failure.

    ``run()`` returns when the stream ended cleanly (204, ``retry=False`` and EOF, a retry
    decision of ``False`` after EOF, or ``stop()``) and raises the ``SSEError`` that ended it
    otherwise. ``deliver`` receives each batch of events after the handlers and the checkpoint.
    ``route`` says which plugins handle the events, which events, and what a failing handler
    costs (``sseplug.route.Route``). ``stats`` holds its counts.
    """

    def __init__(
        self,
        connection_id: str,
        request: SSERequest,
        *,
        http_for: HttpFor,
        plugins: PluginManager,
        deliver: Callable[[list[SSEResponse]], Any] | None = None,
        route: Route = DEFAULT_ROUTE,
    ) -> None:
        self.id = connection_id
        self.request = request
        self.route = route
        self.url = request.url
        self.last_event_id = request.last_event_id
        self.backoff = _START  # a value: shared until the first reconnect replaces it
        self.error: SSEError | None = None  # what failed the stream, once it failed for good
        self.last_error: SSEError | None = None  # the latest failure, also one reconnected after
        self._http_for = http_for
        self._plugins = plugins
        self._events = Dispatcher(self, request, plugins=plugins, route=route, deliver=deliver)
        self.stats = self._events.stats
        Lifecycle.__init__(self)

    def __repr__(self) -> str:
        return f"<Connection {self.id!r} {self.state} {public_url(self.url)}>"

    @property
    def attempt(self) -> int:
        """Consecutive failures; reset once a response delivered events."""
        return self.backoff.attempt

    @property
    def backoff_step(self) -> int:
        """Reconnects since the stream was last healthy (open ``HEALTHY_AFTER`` seconds)."""
        return self.backoff.step

    @property
    def retry_ms(self) -> int | None:
        """The server's last ``retry:`` value."""
        return self.backoff.retry_ms

    # -- life cycle ------------------------------------------------------------------------------

    def run(self) -> None:
        """Consume the stream until it ends for good; call ``on_done`` or ``on_error`` once.

        Returns when the stream ended cleanly; raises the ``SSEError`` that failed it (also kept
        in ``error``), an unexpected exception (a bug) being wrapped in one, never lost.
        """
        try:
            self._run()
        except gevent.GreenletExit:
            raise  # killed: the client is closing it
        except BaseException as failure:  # a bug too (even a KeyboardInterrupt from a plugin): never silent
            if isinstance(failure, SSEError):
                error = failure
            else:
                log.exception("connection %r crashed", self.id)
                error = SSEError(f"internal error: {type(failure).__name__}: {failure}",
                                 connection_id=self.id, url=self.url)
                error.__cause__ = failure
            self.error = self.last_error = error
            self._enter(ConnectionState.FAILED)
            self._finished(error)
            self._callback("on_error", error)
            raise error from error.__cause__
        self._enter(ConnectionState.ENDED)
        self._finished(None)
        self._callback("on_done")

    def _run(self) -> None:
        """The loop: claim, resume, one response, then what the interrupt or the backoff says."""
        resume = True  # load the checkpoint before the next request
        while self._claim():
            if self._take(Interrupt.RELEASE):  # released while not streaming (waiting to reconnect)
                resume = True
            if resume and not self._resume():
                continue  # the load itself lost the stream: claim it again first
            resume = False
            delivered_before, error = self.stats.events_total, None
            try:
                if self._consume_once():
                    return  # 204 or an end event: the server asked us to stop
            except SSEError as failure:
                error = self._retryable(failure)
            interrupt = self._take(Interrupt.STOP, Interrupt.RELEASE, Interrupt.RESTART)
            if interrupt is Interrupt.STOP:
                return
            if interrupt is not None:  # released: claim it back later; restarted: reconnect now, nothing counted
                resume = interrupt is Interrupt.RELEASE
                continue
            wait = self._next_wait(error, delivered=self.stats.events_total > delivered_before)
            if wait is None:
                return
            self._wait(wait, error)

    def _claim(self) -> bool:
        """Wait until the plugins let this process consume the stream; False once stopped."""
        while not self.stopping:
            if not self._plugins.implements("sseplug_claim"):
                return True
            answer = self._events.call("sseplug_claim", connection=self)
            if answer is None or answer is True:
                return True
            self._enter(ConnectionState.STANDBY)
            wait = 1.0 if answer is False else seconds("sseplug_claim", answer, connection_id=self.id, url=self.url)
            self._wakeup.wait(wait)
            self._take(Interrupt.RESTART)  # cut the standby short: ask again now
        return False

    def _resume(self) -> bool:
        """Take the last event id from ``sseplug_checkpoint_load``; False if released meanwhile."""
        loaded = self._events.call("sseplug_checkpoint_load", connection=self)
        if self._interrupt is Interrupt.RELEASE:
            return False
        if loaded is not None:
            self.last_event_id = checked_last_event_id(loaded, connection_id=self.id, url=self.url)
        return True

    def _retryable(self, failure: SSEError) -> SSEError:
        """``failure`` when a reconnect may follow it; raised when it ends the stream."""
        self.last_error = failure
        if failure.retryable or self._interrupt is not None:
            return failure
        raise failure

    def _next_wait(self, error: SSEError | None, *, delivered: bool) -> float | None:
        """Count the attempt, then the seconds to wait before reconnecting, or ``None`` to end
        cleanly; raises what ends the stream (``error``, or ``RetriesExhaustedError``)."""
        self.backoff, verdict = self.backoff.after(
            error, delivered=delivered, request=self.request, events_total=self.stats.events_total,
            connection_id=self.id,
        )
        if verdict.action == "ask":
            answer = self._events.call("sseplug_retry_decision", connection=self, attempt=self.backoff.attempt,
                                       error=error, status=getattr(error, "status", None))
            verdict = Backoff.wait(answer, error, connection_id=self.id, url=self.url)
        if verdict.error is not None:
            raise verdict.error
        return verdict.seconds if verdict.action == "wait" else None

    def _wait(self, seconds: float, error: SSEError | None) -> None:
        """Wait before the next reconnect (``stop()`` and ``restart()`` cut it short)."""
        self._enter(ConnectionState.WAITING)
        log.info("connection %r: reconnecting in %.2fs (attempt %d): %s", self.id, seconds, self.attempt,
                 "eof" if error is None else public_error(error))
        self._wakeup.wait(seconds)
        if not self.stopping:
            self.stats.reconnects_total += 1
            self._take(Interrupt.RESTART)  # restart() cut the wait short: it is done

    def _finished(self, error: SSEError | None) -> None:
        """Tell ``sseplug_connection_finished``; an implementation that raises is only logged."""
        try:
            self._plugins.hook.sseplug_connection_finished(connection=self, error=error)
        except Exception:
            log.exception("connection %r: a sseplug_connection_finished implementation raised", self.id)

    def _callback(self, name: str, *args: Any) -> None:
        """Call the request's callback ``name`` if it has one; one that raises is only logged."""
        callback = getattr(self.request, name)
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("connection %r: the %s callback raised", self.id, name)

    # -- one response ----------------------------------------------------------------------------

    def _consume_once(self) -> bool:
        """One request and its response; True when the stream is over (204, an end event)."""
        self._enter(ConnectionState.CONNECTING)
        try:  # not in a method of its own: an idle stream keeps the memory its deepest stack touched
            response = _http.open_response(self._http_for, self.request, *self._request_headers(),
                                           resuming=self.stats.events_total > 0, connection_id=self.id)
        except SSEError as error:
            self._events.call("sseplug_connection_closed", connection=self,
                              reason=f"{type(error).__name__}: {error.message}")
            raise
        self._response = response
        opened_at, reason = None, "eof"
        try:
            if response.status == 204:
                reason = "204"
                return True
            _http.check_response(response, connection_id=self.id, url=self.url)
            self._events.call("sseplug_connection_opened", connection=self, status=response.status,
                              headers=HTTPHeaderDict(response.headers))  # a copy; names case-insensitive
            self._enter(ConnectionState.OPEN)
            opened_at = time.monotonic()
            if self._read(response):
                reason = "end event"
                return True
            if self._interrupt is not None:
                reason = self._interrupt.value
            return False
        except SSEError as error:
            reason = self._interrupt.value if self._interrupt is not None else f"{type(error).__name__}: {error.message}"
            raise
        finally:
            if opened_at is not None and time.monotonic() - opened_at >= HEALTHY_AFTER:
                self.backoff = self.backoff.healthy()  # the next reconnect starts the backoff over
            self._response = None
            response.close()
            response.release_conn()
            self._events.call("sseplug_connection_closed", connection=self, reason=reason)

    def _request_headers(self) -> tuple[HTTPHeaderDict, set[str]]:
        """The next request's headers, with the auth plugins' (checked), and the credentials' names."""
        auth = self._events.call("sseplug_auth_headers", connection=self, request=self.request)
        checked = _http.check_auth_headers(auth, connection_id=self.id, url=self.url)
        return _http.request_headers(self.request, checked, self.last_event_id)

    def _read(self, response: urllib3.BaseHTTPResponse) -> bool:
        """Read the stream until EOF, dispatching every batch of events; True when an end event
        (``end_events``, ``end_data``) ended it."""
        body = Body(response, self.request.read_timeout)
        try:
            return self._read_from(body.read)
        finally:
            body.close()

    def _read_from(self, read: Callable[[int], bytes | memoryview | None]) -> bool:
        """Read, parse and dispatch until EOF (False), an end event (True) or an interrupt (False)."""
        request, events_ = self.request, self._events
        parser = EventParser(self.last_event_id, request.max_event_size)
        if request.on_comment is None:  # the hot path: events only
            feed, dispatch = parser.feed, events_.dispatch
        else:
            feed, dispatch = parser.feed_with_comments, events_.parsed  # type: ignore[assignment]
        on_bytes, stats, turns, size = request.on_bytes, self.stats, HubTurns(), READ_SIZE
        while self._interrupt is None:
            turns.check()
            try:
                chunk = read(size)
            except (Urllib3Error, OSError, ChunkedError) as error:
                raise NetworkError(f"stream broke: {error}", connection_id=self.id, url=self.url) from error
            if chunk is None:
                return False
            if not chunk:
                continue
            stats.bytes_total += len(chunk)
            if on_bytes is not None:
                try:
                    on_bytes(bytes(chunk))  # the same bytes, or a copy of a view of a reused buffer
                except Exception as error:
                    raise events_.plugin_error("on_bytes callback", "on_bytes", error, self.last_event_id) from error
            parser.decode_data = events_.hooks().decode_data
            events = self._feed(feed, parser, chunk)
            if parser.retry is not None and parser.retry != self.backoff.retry_ms:
                self.backoff = self.backoff.with_retry(parser.retry)
            size = read_size(parser.pending_size, len(chunk), len(events))
            if events:
                if dispatch(events, parser.last_event_id):
                    return True
            elif parser.last_event_id != self.last_event_id:
                events_.checkpoint(parser.last_event_id)  # an id-only block
            del chunk, events  # not held while the next read waits (they can be megabytes)
        return False

    def _feed(self, feed: Callable[[bytes | memoryview], list[Any]], parser: EventParser, chunk: bytes | memoryview) -> list[Any]:
        """``feed(chunk)``; the events before a parse error are dispatched before it is raised."""
        try:
            return feed(chunk)
        except EventTooLargeError as error:
            self._events.parsed(error.events, None)
            error.connection_id, error.url = self.id, self.url
            raise
        except DataDecodeError as error:  # the deserialize plugin's decoder, run by the parser
            self._events.parsed(error.events, None)
            plugin = self._plugins.hook.sseplug_deserialize.get_hookimpls()[0].plugin_name
            cause = error.__cause__ if isinstance(error.__cause__, Exception) else error
            raise self._events.plugin_error(plugin, "sseplug_deserialize", cause, error.event_id) from cause
