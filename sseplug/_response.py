"""One response of a connection, read as steps: the request, the body's reads, the parser and
the dispatcher, one step per read (``ResponseSteps._steps``); driven by the connection's greenlet,
or lent to the greenlet iterating the stream (``lent_step``) while nothing but the parser runs per
batch. The rules are docs/design.rst's "Delivery" section, step 7."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any, NamedTuple

import urllib3
from urllib3 import HTTPHeaderDict
from urllib3.exceptions import HTTPError as Urllib3Error

from . import _http
from ._body import READ_SIZE, Body, HubTurns, read_size
from ._chunked import ChunkedError
from ._dispatch import ConnectionStats, Dispatcher
from ._http import HttpFor
from ._lifecycle import ConnectionState, Interrupt
from ._reconnect import HEALTHY_AFTER, Backoff
from .errors import EventTooLargeError, NetworkError, SSEError
from .models import SSERequest
from .parser import DataDecodeError, EventParser
from .plugins import PluginManager

__all__ = ["GIVE_BACK", "Lent", "Outcome", "ResponseSteps", "Steps"]

Steps = Generator[Any, None, bool]
"""A response being read (``Connection._steps``): one step per read, the value True when the
stream is over (204, an end event)."""


class Outcome(NamedTuple):
    """How a response's steps ended: ``ended`` (the server asked to stop), or ``error``."""

    ended: bool
    error: BaseException | None


GIVE_BACK = "give back"
"""``Connection.lent_step``: a plugin now runs per batch; the steps go back to a greenlet of their own."""


class Lent(BaseException):
    """Unwinds ``run()`` once the response's steps were lent to the iterator."""


class ResponseSteps:
    """The part of a ``Connection`` that reads one response (a base class, as ``Lifecycle`` is)."""

    id: str
    url: str
    request: SSERequest
    last_event_id: str
    backoff: Backoff
    stats: ConnectionStats
    lent: bool
    _events: Dispatcher
    _plugins: PluginManager
    _http_for: HttpFor
    _lend: Callable[[Steps], bool] | None
    _interrupt: Interrupt | None
    _response: urllib3.BaseHTTPResponse | None
    _opened_at: float
    _enter: Callable[[ConnectionState], None]  # Lifecycle's

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
        (raises ``Lent``) at a step where it waits for them."""
        lend = self._lend
        try:
            while True:
                next(steps)
                if lend is not None and self.lendable() and lend(steps):
                    raise Lent
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
        two: a greenlet waiting in it (the iterator's, when lent) keeps one C frame less.
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
