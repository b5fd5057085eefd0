"""One stream's life: connect, read, parse, dispatch to the hooks, reconnect like a browser."""

from __future__ import annotations

import enum
import json
import logging
import math
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import urljoin, urlsplit

import gevent
import gevent.event
import urllib3
from urllib3 import HTTPHeaderDict
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util import parse_url

from ._body import READ_SIZE, Body
from ._chunked import ChunkedError
from .errors import (
    CertificateError,
    ContentTypeError,
    EventTooLargeError,
    HTTPStatusError,
    NetworkError,
    PluginError,
    RedirectError,
    RetriesExhaustedError,
    ServerEventError,
    SSEError,
    TemporaryPluginError,
)
from .models import MAX_WAIT, SSERequest, SSEResponse, header_problem
from .parser import Comment, DataDecodeError, EventParser
from .plugins import PluginManager
from .route import DEFAULT_ROUTE, Route
from .redaction import CREDENTIAL_HEADERS, Secret, public_error, public_url

__all__ = ["Connection", "ConnectionState", "HttpFor"]

log = logging.getLogger("sseplug.connection")

HttpFor = Callable[[str], urllib3.PoolManager]
"""Gives the urllib3 pool manager (direct or proxy) to use for a URL."""

LARGE_READ_SIZE = 1024 * 1024
"""Bytes asked of the socket while a large event (``LARGE_PENDING`` bytes or more) is pending,
or after a read whose events were that large on average: fewer reads and fewer pieces to join.
An idle stream never holds a buffer this size (``recv`` allocates it once bytes are there)."""
LARGE_PENDING = 16 * 1024
CONNECT_TIMEOUT = 10.0
MAX_REDIRECTS = 10
ERROR_BODY_LIMIT = 1024
ERROR_BODY_TIMEOUT = 5.0  # an error response's body is only an excerpt for the message: never wait long for it
REDIRECTS = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}
HUB_TURN_EVERY = 0.005
"""Seconds a stream whose socket always has data reads between two polls of the hub before it
lets the hub run (timers, other streams, signals): without it a flooding server freezes the
process, as ``recv`` never blocks. A stream that waited for its bytes starts a new turn."""
HEALTHY_AFTER = 60.0
"""Seconds a response must stay open before the backoff starts again from its first step."""
_new_event = tuple.__new__
_DATA = SSEResponse._fields.index("data")


def _certificate_refused(error: BaseException) -> bool:
    """Whether ``error`` (or what it wraps) is a failed certificate verification."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLCertVerificationError) or any(
            isinstance(arg, ssl.SSLCertVerificationError) for arg in cause.args
        ):
            return True
        reason = getattr(cause, "reason", None)  # urllib3's MaxRetryError; an SSLError's is a str
        cause = reason if isinstance(reason, BaseException) else cause.__cause__ or cause.__context__
    return False


def _origin(url: str) -> tuple[str, str | None, int | None]:
    """Scheme, host and port of ``url`` (the port made explicit), as urllib3 compares them."""
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or DEFAULT_PORTS.get(parts.scheme)


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


class _EventHooks(NamedTuple):
    """The per-event hook callers that have implementations (``None`` when none has)."""

    generation: int
    decode_data: Callable[[str], Any] | None  # stands for deserialize, applied by the parser
    deserialize: Any
    handle_event: Any
    checkpoint_save: Any


class Connection:
    """One named event stream: reads it, hands each event to the plugins, reconnects on failure.

    ``run()`` returns when the stream ended cleanly (204, ``retry=False`` and EOF, a retry
    decision of ``False`` after EOF, or ``stop()``) and raises the ``SSEError`` that ended it
    otherwise. ``deliver`` receives each batch of events after the handlers and the checkpoint.
    ``route`` says which plugins handle the events, which events, and what a failing handler
    costs (``sseplug.route.Route``).
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
        self.attempt = 0  # consecutive failures; reset once a response delivered events
        self.backoff_step = 0  # reconnects since the stream was last healthy; reset after HEALTHY_AFTER open
        self.retry_ms: int | None = None  # the server's last retry: value
        self.state = ConnectionState.NEW
        self.error: SSEError | None = None  # what failed the stream, once it failed for good
        self.events_total = 0  # events that went through the handlers (filtered ones too) and were checkpointed
        self.bytes_total = 0
        self.reconnects_total = 0
        self.events_filtered = 0  # left out by the route's event-type and ``where`` filters
        self.handler_errors = 0  # exceptions raised by event handlers, each retry counted
        self.events_skipped = 0  # events a handler kept failing on, skipped for it (action "skip")
        self.dead_letters = 0  # events a handler kept failing on, stored by sseplug_dead_letter
        self.last_event_at: float | None = None  # time.time() when the last event was handled
        self.last_error: SSEError | None = None  # the latest failure, also one reconnected after
        self._http_for = http_for
        self._plugins = plugins
        self._deliver = deliver
        self._event_hooks = _EventHooks(-1, None, None, None, None)
        self._stopping = False
        self._released = False
        self._restarting = False
        self._wakeup = gevent.event.Event()
        self._response: urllib3.BaseHTTPResponse | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.id!r} {self.state} {public_url(self.url)}>"

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
            self.state = ConnectionState.FAILED
            self._finished(error)
            self._callback("on_error", error)
            raise error from error.__cause__
        self.state = ConnectionState.ENDED
        self._finished(None)
        self._callback("on_done")

    def _finished(self, error: SSEError | None) -> None:
        try:
            self._plugins.hook.sseplug_connection_finished(connection=self, error=error)
        except Exception:
            log.exception("connection %r: a sseplug_connection_finished implementation raised", self.id)

    def stop(self) -> None:
        """Stop reading and reconnecting: ``run()`` returns soon after, without an error."""
        self._stopping = True
        self._wakeup.set()
        self._close_response()

    def restart(self) -> None:
        """Drop the current response and reconnect at once, with Last-Event-ID; not a failure:
        neither the retry count nor the backoff moves. A wait to reconnect is cut short."""
        self._restarting = True
        self._wakeup.set()
        self._close_response()

    def release(self) -> None:
        """Give the stream up for now (a lease plugin lost it): the current response is closed,
        then the connection asks ``sseplug_claim`` again and, once it has the stream back,
        resumes from ``sseplug_checkpoint_load``. Not a failure: the retry count is untouched."""
        self._released = True
        self._close_response()

    def _close_response(self) -> None:
        response = self._response
        if response is not None:
            try:
                response.shutdown()  # wakes a read blocked on the socket
            except (ValueError, RuntimeError, OSError):
                pass

    @property
    def stopping(self) -> bool:
        """Whether ``stop()`` was called."""
        return self._stopping

    def _run(self) -> None:
        resume = True  # load the checkpoint before the next request
        while self._claim():
            if self._released:  # released while not streaming (waiting to reconnect)
                self._released, resume = False, True
            if resume and not self._resume():
                continue  # the load itself lost the stream: claim it again first
            resume = False
            delivered_before, error = self.events_total, None
            try:
                if self._consume_once():
                    return  # 204: the server asked us to stop
            except SSEError as failure:
                error = self._retryable(failure)
            if self._stopping:
                return
            if self._released:  # another process owns the stream now: claim it back later
                self._released, resume = False, True
                continue
            if self._restarting:  # asked for: reconnect now, nothing counted
                self._restarting = False
                self._wakeup.clear()
                continue
            wait = self._next_wait(error, delivered=self.events_total > delivered_before)
            if wait is None:
                return
            self._wait(wait, error)

    def _resume(self) -> bool:
        """Take the last event id from ``sseplug_checkpoint_load``; False if released meanwhile."""
        loaded = self._call("sseplug_checkpoint_load", connection=self)
        if self._released:
            return False
        if loaded is not None:
            self.last_event_id = self._checked_id(loaded)
        return True

    def _retryable(self, failure: SSEError) -> SSEError:
        """``failure`` when a reconnect may follow it; raised when it ends the stream."""
        self.last_error = failure
        if failure.retryable or self._stopping or self._released or self._restarting:
            return failure
        raise failure

    def _next_wait(self, error: SSEError | None, *, delivered: bool) -> float | None:
        """Count the attempt, then the seconds to wait before reconnecting, or ``None`` to end
        cleanly; raises what ends the stream (``error``, or ``RetriesExhaustedError``)."""
        if delivered:
            self.attempt = 0  # a stream that delivered resets the failure count, not the backoff
        self.attempt += 1
        self.backoff_step += 1
        request = self.request
        mode = request.reconnect_mode
        if mode == "never" or (error is None and mode == "on_error"):
            return self._end(error)
        if error is not None and self.events_total and not request.resends and request.resume_url is None:
            raise NetworkError(
                f"the response broke after {self.events_total} events ({error.message}); a "
                f"{self._method()} request with a body is not sent again, as it would start over: set "
                "resume_url to resume with a GET and Last-Event-ID, or reconnect='always' if the "
                "server resumes the request from Last-Event-ID",
                connection_id=self.id, url=self.url,
            ) from error
        if self.attempt > self.request.max_retries:
            last = "the stream ended without events" if error is None else error.message
            raise RetriesExhaustedError(
                f"gave up after {self.attempt} failed attempts in a row, max_retries = "
                f"{request.max_retries} (the last: {last}); check the server, or raise max_retries",
                attempts=self.attempt - 1,
                connection_id=self.id,
                url=self.url,
            ) from error
        wait = self._call("sseplug_retry_decision", connection=self, attempt=self.attempt, error=error,
                          status=getattr(error, "status", None))
        if wait is None or wait is False:
            return self._end(error)
        return self._seconds("sseplug_retry_decision", wait)

    @staticmethod
    def _end(error: SSEError | None) -> None:
        """End the stream: by raising ``error`` when there is one, else cleanly."""
        if error is not None:
            raise error

    def _wait(self, seconds: float, error: SSEError | None) -> None:
        """Wait before the next reconnect (``stop()`` cuts it short)."""
        self.state = ConnectionState.WAITING
        log.info("connection %r: reconnecting in %.2fs (attempt %d): %s", self.id, seconds, self.attempt,
                 "eof" if error is None else public_error(error))
        self._wakeup.wait(seconds)
        if not self._stopping:
            self.reconnects_total += 1
            if self._restarting:  # restart() cut the wait short: it is done
                self._restarting = False
                self._wakeup.clear()

    def _claim(self) -> bool:
        """Wait until the plugins let this process consume the stream; False once stopped."""
        while not self._stopping:
            if not self._plugins.implements("sseplug_claim"):
                return True
            answer = self._call("sseplug_claim", connection=self)
            if answer is None or answer is True:
                return True
            self.state = ConnectionState.STANDBY
            self._wakeup.wait(1.0 if answer is False else self._seconds("sseplug_claim", answer))
        return False

    def _seconds(self, hook: str, answer: Any) -> float:
        """A wait a plugin answered, capped at ``MAX_WAIT``; a ``PluginError`` if it is no number."""
        if isinstance(answer, bool) or not isinstance(answer, (int, float)) or math.isnan(answer):
            raise PluginError(f"a {hook} implementation answered {answer!r}; expected seconds to wait",
                              hook=hook, connection_id=self.id, url=self.url)
        return min(max(float(answer), 0.0), MAX_WAIT)

    def _checked_id(self, loaded: Any) -> str:
        """A last event id from ``sseplug_checkpoint_load``; one a request cannot carry is a ``PluginError``."""
        if isinstance(loaded, str) and not any(c in loaded for c in "\x00\r\n"):
            try:
                loaded.encode("utf-8")
                return loaded
            except UnicodeEncodeError:
                pass
        raise PluginError(
            f"a sseplug_checkpoint_load implementation loaded {loaded!r}, which is not a str a "
            "Last-Event-ID header can carry (UTF-8, without NUL, CR or LF); fix or delete that checkpoint",
            hook="sseplug_checkpoint_load", connection_id=self.id, url=self.url,
        )

    # -- one response ----------------------------------------------------------------------------

    def _consume_once(self) -> bool:
        """One request and its response; True when the server said to stop (204)."""
        self.state = ConnectionState.CONNECTING
        reason = "eof"
        try:
            response = self._open()
        except SSEError as error:
            self._call("sseplug_connection_closed", connection=self, reason=f"{type(error).__name__}: {error.message}")
            raise
        self._response = response
        opened_at = None
        try:
            if response.status == 204:
                reason = "204"
                return True
            self._check(response)
            self._call("sseplug_connection_opened", connection=self, status=response.status,
                       headers=HTTPHeaderDict(response.headers))  # a copy; names case-insensitive
            self.state = ConnectionState.OPEN
            opened_at = time.monotonic()
            if self._read(response):
                reason = "end event"
                return True
            if self._stopping or self._released or self._restarting:
                reason = "stopped" if self._stopping else "released" if self._released else "restarted"
            return False
        except SSEError as error:
            reason = "stopped" if self._stopping else "released" if self._released else "restarted" if (
                self._restarting) else f"{type(error).__name__}: {error.message}"
            raise
        finally:
            if opened_at is not None and time.monotonic() - opened_at >= HEALTHY_AFTER:
                self.backoff_step = 0  # it stayed healthy: the next reconnect starts the backoff over
            self._response = None
            response.close()
            response.release_conn()
            self._call("sseplug_connection_closed", connection=self, reason=reason)

    def _open(self) -> urllib3.BaseHTTPResponse:
        """Send the request, following redirects; the response is not read yet.

        The whole exchange up to a complete response head (every hop) must fit in
        ``head_timeout``: neither a silent server nor one dripping its head byte by byte can
        hold the connection in ``connecting``.
        """
        headers, credentials = self._request_headers()
        deadline = self.request.head_timeout
        timer = gevent.Timeout(deadline)
        timer.start()
        try:
            return self._follow(headers, credentials)
        except gevent.Timeout as error:
            if error is not timer:
                raise
            raise NetworkError(
                f"no complete response head within head_timeout ({deadline:g} s): the server accepted "
                "the connection but did not answer in time; raise head_timeout if it is slow to start",
                connection_id=self.id, url=self.url,
            ) from None
        finally:
            timer.close()

    def _request_headers(self) -> tuple[HTTPHeaderDict, set[str]]:
        """The headers of the next request (defaults, the request's, the auth plugins',
        Last-Event-ID), and the names of those that are credentials: the usual ones, those
        built from secrets (``${ENV}`` in the runner's config) and those of the auth plugins."""
        request = self.request
        headers = HTTPHeaderDict({"Accept": "text/event-stream", "Cache-Control": "no-cache"})
        credentials = set(CREDENTIAL_HEADERS)
        auth = self._call_all("sseplug_auth_headers", connection=self, request=request)
        for layer in (request.headers, *reversed(auth)):  # reversed: the first-run plugin wins a conflict
            for name, value in layer.items():
                headers[name] = value  # replaces a header of the same name whatever its case
                if layer is not request.headers or isinstance(value, Secret):
                    credentials.add(name.lower())
        if self.last_event_id:
            # the spec says UTF-8; http.client would encode a str as Latin-1 and fail on most ids
            headers["Last-Event-ID"] = self.last_event_id.encode("utf-8")  # type: ignore[assignment]
        return headers, credentials

    def _follow(self, headers: HTTPHeaderDict, credentials: set[str]) -> urllib3.BaseHTTPResponse:
        """Send the request and follow its redirects; credentials never leave their origin."""
        request = self.request
        if request.resume_url is not None and self.events_total:  # resume with a GET, never re-POST
            method, url, body = "GET", request.resume_url, None
        else:
            method, url, body = self._method(), self.url, request.encoded_body()
        if body is not None and "Content-Type" not in headers:  # one given in headers is sent as given
            headers["Content-Type"] = str(getattr(request.content_type, "value", request.content_type))
        timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT, read=request.read_timeout)
        tls = request.tls_options()
        for _ in range(MAX_REDIRECTS + 1):
            try:
                http = self._http_for(url)
                pool: urllib3.PoolManager | urllib3.HTTPConnectionPool = http
                target = url
                if tls and url.startswith("https:"):  # a pool of its own for these TLS options
                    pool, target = http.connection_from_url(url, pool_kwargs=tls), parse_url(url).request_uri
                response = pool.urlopen(
                    method, target, body=body, headers=headers, timeout=timeout, retries=False,
                    redirect=False, preload_content=False, decode_content=True,
                )
            except (Urllib3Error, OSError) as error:
                if _certificate_refused(error):
                    raise CertificateError(
                        f"the server's TLS certificate failed verification: {error}; give the CA bundle "
                        "that signed it with verify (--cacert), or verify=False for a test server",
                        connection_id=self.id, url=url,
                    ) from error
                raise NetworkError(f"cannot connect: {error}", connection_id=self.id, url=url) from error
            if response.status not in REDIRECTS:
                return response
            location = response.headers.get("Location", "").strip()
            response.close()
            response.release_conn()
            target = self._redirect_target(response.status, url, location)
            if _origin(target) != _origin(url):  # scheme, host or port: urllib3's rule
                for name in credentials:
                    headers.pop(name, None)
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method, body = "GET", None  # as browsers do
                headers.pop("Content-Type", None)
            url = target
        raise RedirectError(
            f"more than {MAX_REDIRECTS} redirects; the server is redirecting in a loop",
            connection_id=self.id, url=self.url,
        )

    def _method(self) -> str:
        return str(getattr(self.request.method, "value", self.request.method))

    def _redirect_target(self, status: int, url: str, location: str) -> str:
        """The absolute URL a redirect points to; a ``RedirectError`` unless it is http(s) with a host."""
        if not location:
            raise RedirectError(
                f"HTTP {status} redirect without a Location header; fix the server or the URL",
                connection_id=self.id, url=url,
            )
        try:
            target = urljoin(url, location)
            parts = urlsplit(target)
            parts.port  # noqa: B018  # raises ValueError for a port that is not a number in range
        except ValueError as error:
            raise RedirectError(
                f"HTTP {status} redirect to a malformed Location {location!r} ({error}); fix the server",
                connection_id=self.id, url=url,
            ) from None
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise RedirectError(
                f"HTTP {status} redirect to {target!r}, which is not an http:// or https:// URL with a "
                "host; an event stream can only be followed over HTTP",
                connection_id=self.id, url=url,
            )
        return target

    def _check(self, response: urllib3.BaseHTTPResponse) -> None:
        """Raise the error for a response that is not an event stream (status first)."""
        facts: dict[str, Any] = {"headers": dict(response.headers), "connection_id": self.id, "url": self.url}
        if response.status != 200:
            raise HTTPStatusError.for_status(response.status, body=self._error_body(response), **facts)
        content_type = response.headers.get("Content-Type")
        if (content_type or "").split(";")[0].strip().lower() != "text/event-stream":
            raise ContentTypeError(
                f"expected Content-Type text/event-stream, got {content_type!r}; "
                "is this URL an event stream?",
                content_type=content_type,
                body=self._error_body(response),
                **facts,
            )

    def _error_body(self, response: urllib3.BaseHTTPResponse) -> bytes:
        """The start of an error response's body, for the message; ``b""`` when it is slow to come."""
        timer = gevent.Timeout.start_new(ERROR_BODY_TIMEOUT)
        try:
            return response.read(ERROR_BODY_LIMIT)
        except (Urllib3Error, OSError):
            return b""
        except gevent.Timeout as error:
            if error is not timer:
                raise
            return b""
        finally:
            timer.close()

    def _read(self, response: urllib3.BaseHTTPResponse) -> bool:
        """Read the stream until EOF, dispatching every batch of events; True when an end event
        (``end_events``, ``end_data``) ended it."""
        body = Body(response, self.request.read_timeout)
        try:
            return self._read_from(body.read)
        finally:
            body.close()

    def _read_from(self, read: Callable[[int], bytes | None]) -> bool:
        parser = EventParser(self.last_event_id, self.request.max_event_size)
        if self.request.on_comment is None:  # the hot path: events only
            feed, dispatch = parser.feed, self._dispatch
        else:
            feed, dispatch = parser.feed_with_comments, self._parsed  # type: ignore[assignment]
        on_bytes = self.request.on_bytes
        clock, idle, loop = time.monotonic, gevent.idle, gevent.get_hub().loop
        polled, turn_due, size = -1, 0.0, READ_SIZE
        while not (self._stopping or self._released or self._restarting):
            if loop.iteration != polled:  # the hub polled since (this stream waited or yielded): a new turn
                polled, turn_due = loop.iteration, clock() + HUB_TURN_EVERY
            elif clock() >= turn_due:  # a socket that always has data never blocks: give the hub a turn
                idle()
                polled = -1
            try:
                chunk = read(size)
            except (Urllib3Error, OSError, ChunkedError) as error:
                raise NetworkError(
                    f"stream broke: {error}", connection_id=self.id, url=self.url
                ) from error
            if chunk is None:
                return False
            if not chunk:
                continue
            self.bytes_total += len(chunk)
            if on_bytes is not None:
                try:
                    on_bytes(chunk)
                except Exception as error:
                    raise self._plugin_error("on_bytes callback", "on_bytes", error, self.last_event_id) from error
            parser.decode_data = self._hooks().decode_data
            try:
                events = feed(chunk)
            except EventTooLargeError as error:
                self._parsed(error.events, None)
                error.connection_id, error.url = self.id, self.url
                raise
            except DataDecodeError as error:  # the deserialize plugin's decoder, run by the parser
                self._parsed(error.events, None)
                plugin = self._plugins.hook.sseplug_deserialize.get_hookimpls()[0].plugin_name
                cause = error.__cause__ if isinstance(error.__cause__, Exception) else error
                raise self._plugin_error(plugin, "sseplug_deserialize", cause, error.event_id) from cause
            if parser.retry is not None:
                self.retry_ms = parser.retry
            large = parser.pending_size >= LARGE_PENDING or (events and len(chunk) >= LARGE_PENDING * len(events))
            size = LARGE_READ_SIZE if large else READ_SIZE
            if events:
                if dispatch(events, parser.last_event_id):
                    return True
            elif parser.last_event_id != self.last_event_id:
                self._checkpoint(parser.last_event_id)  # an id-only block
            del chunk, events  # not held while the next read waits (they can be megabytes)
        return False

    def _parsed(self, items: Sequence[SSEResponse | Comment], last_event_id: str | None) -> bool:
        """Dispatch what the parser returned: runs of events, and comments to ``on_comment`` in
        between; ``last_event_id`` (``None``: the last event's) is checkpointed after the last
        run. True when an end event ended the stream."""
        on_comment = self.request.on_comment
        run: list[SSEResponse] = []
        for item in items:
            if type(item) is not Comment:
                run.append(item)  # type: ignore[arg-type]  # an SSEResponse
                continue
            if run:
                if self._dispatch(run, run[-1].id):
                    return True
                run = []
            try:
                on_comment(str(item))  # type: ignore[misc]  # set: the parser reports Comments only then
            except Exception as error:
                raise self._plugin_error("on_comment callback", "on_comment", error, self.last_event_id) from error
        if run:
            return self._dispatch(run, run[-1].id if last_event_id is None else last_event_id)
        if last_event_id is not None and last_event_id != self.last_event_id:
            self._checkpoint(last_event_id)  # an id-only block after the comments
        return False

    # -- events ----------------------------------------------------------------------------------

    def _hooks(self) -> _EventHooks:
        """The per-event hook callers, looked up again only when the plugins changed."""
        pm = self._plugins
        if self._event_hooks.generation != pm.generation:
            decode_data = pm.text_decoder()
            self._event_hooks = _EventHooks(
                pm.generation,
                decode_data,
                None if decode_data else pm.direct_caller("sseplug_deserialize", ("event", "connection")),
                pm.direct_caller("sseplug_handle_event", ("event", "connection"), self.route.sinks),
                pm.direct_caller("sseplug_checkpoint_save", ("connection", "last_event_id")),
            )
        return self._event_hooks

    def _dispatch(self, events: list[SSEResponse], last_event_id: str) -> bool:
        """Dispatch a batch up to its first end or error event, if the request names any; True
        when an end event came (the stream is over), ``ServerEventError`` for an error event."""
        request = self.request
        if request.end_events or request.end_data or request.error_events:
            for index, event in enumerate(events):
                if event.event in request.error_events:
                    if index:
                        self._handle(events[:index], events[index - 1].id)
                    deserialize = self._hooks().deserialize
                    if deserialize is not None:  # the error event's data as the handlers would see it
                        event = self._deserialize(deserialize, [event])[0]
                    data = event.data if isinstance(event.data, str) else json.dumps(event.data, default=str)
                    raise ServerEventError(
                        f"the server sent an {event.event!r} event (id {event.id!r}), one of error_events: "
                        f"{data[:200]}",
                        event=event, connection_id=self.id, url=self.url,
                    )
                if event.event in request.end_events or (type(event.data) is str and event.data in request.end_data):
                    self._handle(events[: index + 1], event.id)
                    return True
        self._handle(events, last_event_id)
        return False

    def _handle(self, events: list[SSEResponse], last_event_id: str) -> None:
        """Deserialize, filter, handle, checkpoint, deliver: in that order, for one batch."""
        hooks = self._hooks()
        if hooks.deserialize is not None:
            events = self._deserialize(hooks.deserialize, events)
        self.last_event_at = time.time()
        if self.route.filters:
            events = self._filter(events)
        handle, on_data = hooks.handle_event, self.request.on_data
        if handle is not None or on_data is not None:
            for index, event in enumerate(events):
                if handle is not None:
                    try:
                        handle(event, self)
                    except Exception as error:
                        plugin = self._plugins.plugin_that_raised("sseplug_handle_event", error)
                        self._recover(event, error, events[:index], plugin)
                        continue  # on_data too had the event, from _recover
                if on_data is not None:
                    try:
                        on_data(event)
                    except Exception as error:
                        self._recover(event, error, events[:index], "on_data callback")
        self._checkpoint(last_event_id)
        self._hand_over(events)

    def _filter(self, events: list[SSEResponse]) -> list[SSEResponse]:
        """The events the route's filters let through; the others are counted."""
        accepts = self.route.accepts
        try:
            kept = [event for event in events if accepts(event)]
        except Exception as error:
            raise PluginError(
                f"the where filter raised: {type(error).__name__}: {error}",
                plugin="where", connection_id=self.id, url=self.url,
            ) from error
        dropped = len(events) - len(kept)
        self.events_filtered += dropped
        self.events_total += dropped  # processed too: they are checkpointed past
        return kept

    def _recover(self, event: SSEResponse, error: Exception, done: list[SSEResponse], plugin: str) -> None:
        """Handler ``plugin`` raised ``error`` on ``event`` (after handling ``done``): redeliver it
        to that handler by the route's ``ErrorPolicy``, then give the handlers after it the event;
        or skip it, dead-letter it, or raise the ``PluginError`` that stops the connection (after
        checkpointing and delivering ``done``)."""
        hook = "sseplug_handle_event" if plugin != "on_data callback" else "on_data"
        while True:
            self.handler_errors += 1
            policy, attempts = self.route.errors, 1
            handler = self._handler(plugin)
            retryable = getattr(error, "retryable", False) is True  # reconnects instead
            while handler is not None and not retryable and attempts <= policy.retries:
                log.warning("connection %r: %s failed on event id %r (attempt %d of %d), retrying in %.2fs: %s: %s",
                            self.id, plugin, event.id, attempts, policy.retries + 1, policy.delay(attempts),
                            type(error).__name__, error)
                gevent.sleep(policy.delay(attempts))
                attempts += 1
                try:
                    handler(event, self)
                    break
                except Exception as again:
                    error = again
                    self.handler_errors += 1
            else:
                try:
                    if handler is None or retryable or not self._gave_up(event, plugin, error, attempts):
                        raise self._plugin_error(plugin, hook, error, event.id) from error
                except SSEError:
                    if done:  # what the handlers finished is checkpointed and delivered
                        self._checkpoint(done[-1].id)
                        self._hand_over(done)
                    raise
            following = self._following(plugin)  # the handlers after it still get the event
            try:
                if following is not None:
                    following(event, self)
                return
            except Exception as next_error:
                error, plugin = next_error, self._plugins.plugin_that_raised("sseplug_handle_event", next_error)
                hook = "sseplug_handle_event"

    def _handler(self, plugin: str) -> Callable[..., Any] | None:
        """A function redelivering an event to handler ``plugin`` alone; ``None`` when unknown."""
        if plugin == "on_data callback":
            on_data = self.request.on_data
            return None if on_data is None else lambda event, connection: on_data(event)
        if plugin not in self._plugins.call_order("sseplug_handle_event", self.route.sinks):
            return None
        return self._plugins.direct_caller("sseplug_handle_event", ("event", "connection"), (plugin,))

    def _following(self, plugin: str) -> Callable[..., Any] | None:
        """A function giving an event to the handlers after ``plugin`` (plugins, then on_data)."""
        if plugin == "on_data callback":
            return None
        order = self._plugins.call_order("sseplug_handle_event", self.route.sinks)
        after = order[order.index(plugin) + 1 :]
        plugins = self._plugins.direct_caller("sseplug_handle_event", ("event", "connection"), after) if after else None
        on_data = self.request.on_data
        if on_data is None:
            return plugins
        if plugins is None:
            return lambda event, connection: on_data(event)

        def both(event: SSEResponse, connection: Connection) -> None:
            plugins(event, connection)
            on_data(event)
        return both

    def _gave_up(self, event: SSEResponse, plugin: str, error: Exception, attempts: int) -> bool:
        """The policy's action once ``plugin`` failed ``attempts`` times: True when the event may
        be passed (skipped, or stored as a dead letter), False to stop."""
        action = self.route.errors.action
        if action == "skip":
            self.events_skipped += 1
            log.error("connection %r: %s failed %d times on event id %r; skipped (errors.action = \"skip\"): %s: %s",
                      self.id, plugin, attempts, event.id, type(error).__name__, error)
            return True
        if action != "dead_letter":
            return False
        try:
            stored = self._plugins.hook.sseplug_dead_letter(
                event=event, connection=self, plugin=plugin, error=error, attempts=attempts)
        except Exception as store_error:
            store = self._plugins.plugin_that_raised("sseplug_dead_letter", store_error)
            raise self._plugin_error(store, "sseplug_dead_letter", store_error, event.id) from store_error
        if stored is not True:
            raise PluginError(
                f"no plugin stored the dead letter of event id {event.id!r} ({plugin} failed {attempts} times: "
                f"{type(error).__name__}: {error}); enable the deadletter plugin or a sink's dead-letter setting",
                plugin=plugin, hook="sseplug_dead_letter", event_id=event.id, connection_id=self.id, url=self.url,
            ) from error
        self.dead_letters += 1
        log.error("connection %r: %s failed %d times on event id %r; stored as a dead letter: %s: %s",
                  self.id, plugin, attempts, event.id, type(error).__name__, error)
        return True

    def _deserialize(self, deserialize: Callable[..., Any], events: list[SSEResponse]) -> list[SSEResponse]:
        """The events with ``data`` replaced by what the deserialize hook answered."""
        out: list[SSEResponse] = []
        append = out.append
        event = events[0]
        try:
            for event in events:
                data = deserialize(event, self)
                # _replace(data=...) at C speed: every other field is carried over, whatever they are
                append(event if data is None else _new_event(SSEResponse, (*event[:_DATA], data, *event[_DATA + 1 :])))
        except Exception as error:
            plugin = self._plugins.plugin_that_raised("sseplug_deserialize", error)
            raise self._plugin_error(plugin, "sseplug_deserialize", error, event.id) from error
        return out

    def _checkpoint(self, last_event_id: str) -> None:
        """Record the id to resume from and tell the checkpoint plugins, once per handled batch
        (also when the id did not change: sinks flush there, before any checkpoint is stored)."""
        save = self._hooks().checkpoint_save
        if save is not None:
            try:
                save(self, last_event_id)
            except Exception as error:
                plugin = self._plugins.plugin_that_raised("sseplug_checkpoint_save", error)
                raise self._plugin_error(plugin, "sseplug_checkpoint_save", error, last_event_id) from error
        self.last_event_id = last_event_id  # only now: a reconnect resumes after this batch

    def _hand_over(self, events: list[SSEResponse]) -> None:
        self.events_total += len(events)
        if self._deliver is not None:
            self._deliver(events)

    # -- hooks and callbacks ---------------------------------------------------------------------

    def _call(self, name: str, **kwargs: Any) -> Any:
        """Call hook ``name``; an implementation that raises becomes a ``PluginError``."""
        try:
            return getattr(self._plugins.hook, name)(**kwargs)
        except Exception as error:
            plugin = self._plugins.plugin_that_raised(name, error)
            raise self._plugin_error(plugin, name, error, self.last_event_id) from error

    def _call_all(self, name: str, **kwargs: Any) -> list[Mapping[str, str]]:
        results: list[Mapping[str, str]] = self._call(name, **kwargs)
        for result in results:
            if not isinstance(result, Mapping):
                raise PluginError(f"{name} returned a {type(result).__name__}, expected a mapping of headers",
                                  hook=name, connection_id=self.id, url=self.url)
            for header, value in result.items():
                problem = header_problem(header, value)
                if problem is not None:
                    raise PluginError(f"{name} returned header {header!r}: {problem}",
                                      hook=name, connection_id=self.id, url=self.url)
        return results

    def _plugin_error(self, plugin: str, hook: str, error: Exception, event_id: str | None) -> PluginError:
        """The error for a hook implementation that raised; retryable when the exception says so
        (a ``retryable = True`` attribute): the connection then reconnects from its checkpoint."""
        log.error("plugin %r failed in %s on connection %r at event id %r: %s: %s",
                  plugin, hook, self.id, event_id, type(error).__name__, error)
        kind = TemporaryPluginError if getattr(error, "retryable", False) is True else PluginError
        return kind(
            f"plugin {plugin!r} raised in {hook} at event id {event_id!r}: {type(error).__name__}: {error}",
            plugin=plugin, hook=hook, event_id=event_id, connection_id=self.id, url=self.url,
        )

    def _callback(self, name: str, *args: Any) -> None:
        callback = getattr(self.request, name)
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("connection %r: the %s callback raised", self.id, name)
