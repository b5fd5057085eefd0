"""One stream's life: claim -> open -> read -> parse -> dispatch -> wait, and again, like a browser.

Theory of operation. ``Connection.run()`` loops: ask ``sseplug_claim`` for the stream (standby
until granted), load the checkpoint when resuming, open a response (``_http``), read its body
(``_body``) through the parser, hand every batch to the ``Dispatcher`` (``_dispatch``: filters,
handlers, checkpoint), then ask ``Backoff`` (``_reconnect``) what follows: end, raise, or wait
and reconnect. The state moves only through ``_enter``, by the ``TRANSITIONS`` table. ``stop()``,
``release()`` and ``restart()`` set one ``Interrupt`` (stop outranks release, release outranks
restart), which ends the read loop, names the close reason and is taken where the loop acts on it.
The rules are docs/design.rst's "Reconnection" and "Delivery" sections. The states and the
interrupt are in ``_lifecycle``; one response, read as steps (and lent to an iterator), in
``_response``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gevent

from ._dispatch import ConnectionStats, Counted, Dispatcher
from ._http import HttpFor
from ._lifecycle import TRANSITIONS, ConnectionState, Interrupt, Lifecycle
from ._reconnect import Backoff, checked_last_event_id, seconds
from ._response import GIVE_BACK, Lent, Outcome, ResponseSteps, Steps
from .errors import SSEError
from .models import SSERequest, SSEResponse
from .plugins import PluginManager
from .redaction import public_error, public_url
from .route import DEFAULT_ROUTE, Route

__all__ = ["GIVE_BACK", "TRANSITIONS", "Connection", "ConnectionState", "ConnectionStats", "HttpFor", "Interrupt", "Outcome",
           "Steps"]

log = logging.getLogger("sseplug.connection")

_START = Backoff()


class Connection(Counted, ResponseSteps, Lifecycle):
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
        except Lent:
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
