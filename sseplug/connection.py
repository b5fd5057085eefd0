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
from collections.abc import Callable, Generator
from typing import Any, NamedTuple

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

__all__ = ["GIVE_BACK", "Connection", "ConnectionState", "ConnectionStats", "HttpFor", "Interrupt", "Outcome", "Steps"]

log = logging.getLogger("sseplug.connection")

Steps = Generator[Any, None, bool]
"""A response being read (``Connection._steps``): one step per read, the value True when the
stream is over (204, an end event)."""


class Outcome(NamedTuple):
    """How a response's steps ended: ``ended`` (the server asked to stop), or ``error``."""

    ended: bool
    error: BaseException | None


GIVE_BACK = "give back"
"""``Connection.lent_step``: a plugin now runs per batch; the steps go back to a greenlet of their own."""


class _Lent(BaseException):
    """Unwinds ``run()`` once the response's steps were lent to the iterator."""


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
    ``lend(steps)``, asked after each read while ``lendable()``, may take the response's steps
    to read them in the greenlet iterating the events (``lent_step``): True when it took them.
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
        lend: Callable[[Steps], bool] | None = None,
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
        self._lend = lend
        self.lent = False  # the steps of the response are read by the iterating greenlet
        self._delivered_before = 0  # events_total when the current response was requested
        self._opened_at = 0.0  # when the current response was opened
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

    def run(self, steps: Steps | None = None, after: Outcome | None = None) -> bool:
        """Consume the stream until it ends for good; call ``on_done`` or ``on_error`` once.

        Returns True when the stream ended cleanly; raises the ``SSEError`` that failed it (also
        kept in ``error``), an unexpected exception (a bug) being wrapped in one, never lost.
        Returns False when the read of the current response was lent to the iterator (``lend``):
        the greenlet iterating it reads on, and gives the response back (``steps``, or its
        ``after`` outcome once it was over) to another ``run()`` to go on from there.
        """
        try:
            self._run(steps, after)
        except _Lent:
            return False
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
        return True

    def _run(self, steps: Steps | None, after: Outcome | None) -> None:
        """The loop: claim, resume, one response, then what the interrupt or the backoff says.
        With ``steps`` or ``after``, it goes on from a response given back by the iterator."""
        resume = steps is None and after is None  # load the checkpoint before the next request
        while steps is not None or after is not None or self._claim():
            if steps is None and after is None:
                if self._take(Interrupt.RELEASE):  # released while not streaming (waiting to reconnect)
                    resume = True
                if resume and not self._resume():
                    continue  # the load itself lost the stream: claim it again first
                resume = False
                self._delivered_before = self.stats.events_total
                try:
                    steps = self._respond()
                except SSEError as failure:
                    after = Outcome(False, failure)
            if after is None:
                assert steps is not None
                after = self._drive(steps)
            steps, (ended, error), after = None, after, None
            if ended:
                return  # 204 or an end event: the server asked us to stop
            if error is not None:
                if not isinstance(error, SSEError):
                    raise error  # a bug, raised where the iterator read: run() reports it
                error = self._retryable(error)
            interrupt = self._take(Interrupt.STOP, Interrupt.RELEASE, Interrupt.RESTART)
            if interrupt is Interrupt.STOP:
                return
            if interrupt is not None:  # released: claim it back later; restarted: reconnect now, nothing counted
                resume = interrupt is Interrupt.RELEASE
                continue
            wait = self._next_wait(error, delivered=self.stats.events_total > self._delivered_before)
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

    def _respond(self) -> Steps:
        """Send the request; the steps of its response."""
        self._enter(ConnectionState.CONNECTING)
        try:
            response = _http.open_response(self._http_for, self.request, *self._request_headers(),
                                           resuming=self.stats.events_total > 0, connection_id=self.id)
        except SSEError as error:
            self._events.call("sseplug_connection_closed", connection=self,
                              reason=f"{type(error).__name__}: {error.message}")
            raise
        self._response = response
        return self._steps(response)

    def _drive(self, steps: Steps) -> Outcome:
        """Run the response's steps in this greenlet to their end; lend them to the iterator
        (raises ``_Lent``) at a step where it waits for them."""
        lend = self._lend
        try:
            while True:
                next(steps)
                if lend is not None and self.lendable() and lend(steps):
                    raise _Lent
        except StopIteration as stop:
            return Outcome(stop.value, None)
        except SSEError as error:
            return Outcome(False, error)

    def lendable(self) -> bool:
        """Whether a greenlet iterating the stream may read it: nothing but the parser (and its
        decoder) runs per batch, so an exception of the iterator's own (a ``gevent.Timeout``)
        can only land while it waits for bytes, where it loses nothing."""
        request, hooks = self.request, self._events.hooks()
        return (request.on_data is None and request.on_comment is None and request.on_bytes is None
                and hooks.handle_event is None and hooks.checkpoint_save is None and hooks.deserialize is None)

    def lent_step(self, steps: Steps) -> Any:
        """One step of lent ``steps``, in the iterating greenlet: ``None`` to go on; an exception
        of that greenlet's own, to raise there (the steps go on at the next call); ``GIVE_BACK``
        when a plugin changed what runs per batch; else the ``Outcome`` of the response."""
        try:
            step = next(steps)
        except StopIteration as stop:
            return Outcome(stop.value, None)
        except Exception as error:  # SSEError; anything else is a bug, reported by run()
            return Outcome(False, error)
        if step is None and not self.lendable():
            return GIVE_BACK
        return step

    def _steps(self, response: urllib3.BaseHTTPResponse) -> Steps:
        """Read, parse and dispatch the response, one step per read, until EOF (False),
        an interrupt (False), a 204 or an end event (True); then close it. One generator, not
        two: a greenlet waiting in it (the iterator's, when lent) saves one frame less of C stack.
        An exception thrown into the greenlet while it waits for bytes is the iterating
        greenlet's own when the steps are lent: it is passed on as a step, losing nothing."""
        body, reason = None, "eof"
        try:
            body = self._open_body(response)
            if body is None:
                reason = "204"
                return True
            read, events_, request = body.read, self._events, self.request
            parser = EventParser(self.last_event_id, request.max_event_size)
            feed, dispatch = ((parser.feed, events_.dispatch) if request.on_comment is None  # the hot path
                              else (parser.feed_with_comments, events_.parsed))
            on_bytes, stats, turns, size = request.on_bytes, self.stats, HubTurns(), READ_SIZE
            while self._interrupt is None:
                try:
                    turns.check()
                    chunk = read(size)
                except (Urllib3Error, OSError, ChunkedError) as error:
                    raise NetworkError(f"stream broke: {error}", connection_id=self.id, url=self.url) from error
                except BaseException as error:
                    if not self.lent:
                        raise
                    yield error  # the iterator's own (a Timeout): raised there; this read goes on after
                    continue
                if chunk is None:
                    return False
                if not chunk:
                    continue
                stats.bytes_total += len(chunk)
                if on_bytes is not None:
                    self._on_bytes(on_bytes, chunk)
                parser.decode_data = events_.hooks().decode_data
                events = self._feed(feed, parser, chunk)
                if parser.retry is not None and parser.retry != self.backoff.retry_ms:
                    self.backoff = self.backoff.with_retry(parser.retry)
                size = read_size(parser.pending_size, len(chunk), len(events))
                if events:
                    if dispatch(events, parser.last_event_id):
                        reason = "end event"
                        return True
                elif parser.last_event_id != self.last_event_id:
                    events_.checkpoint(parser.last_event_id)  # an id-only block
                del chunk, events  # not held while the next read waits (they can be megabytes)
                yield None  # after the read, not before: the first events go straight to the iterator
            return False
        except SSEError as error:
            reason = self._interrupt.value if self._interrupt is not None else f"{type(error).__name__}: {error.message}"
            raise
        finally:
            self._close_response(response, body, reason)

    def _open_body(self, response: urllib3.BaseHTTPResponse) -> Body | None:
        """The body to read, once the response is checked and announced; ``None`` for a 204."""
        if response.status == 204:
            return None
        _http.check_response(response, connection_id=self.id, url=self.url)
        self._events.call("sseplug_connection_opened", connection=self, status=response.status,
                          headers=HTTPHeaderDict(response.headers))  # a copy; names case-insensitive
        self._enter(ConnectionState.OPEN)
        self._opened_at = time.monotonic()
        return Body(response, self.request.read_timeout)

    def _close_response(self, response: urllib3.BaseHTTPResponse, body: Body | None, reason: str) -> None:
        """Close the response and tell the plugins why: ``reason``, or the interrupt that ended the read."""
        if reason == "eof" and self._interrupt is not None:
            reason = self._interrupt.value
        if body is not None:
            body.close()
            if time.monotonic() - self._opened_at >= HEALTHY_AFTER:
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

    def _on_bytes(self, on_bytes: Callable[[bytes], Any], chunk: bytes | memoryview) -> None:
        """The request's ``on_bytes`` callback; one that raises is a ``PluginError``."""
        try:
            on_bytes(bytes(chunk))  # the same bytes, or a copy of a view of a reused buffer
        except Exception as error:
            raise self._events.plugin_error("on_bytes callback", "on_bytes", error, self.last_event_id) from error

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
