"""sseplug plugin ``http``: POST events to a URL (a webhook), at least once, easy to deduplicate.

Theory of operation
-------------------
``sseplug_handle_event`` buffers each event as ``{connection, id, event, data, key}``; ``key`` is
stable across redeliveries (``connection:id`` for an event with its own ``id:`` field, else
``connection:id#`` and a hash of the raw block). ``sseplug_checkpoint_save`` (``tryfirst``: before
any checkpoint store records the id) POSTs them, ``batch_max`` per request, and returns only after
a 2xx: it raises otherwise, so the checkpoint never moves past events the receiver did not take.
Each request carries an ``Idempotency-Key`` header derived from its events' keys: a retried
request carries the same one.

Connection errors, timeouts, 5xx, 408 and 429 are retried in place, the wait doubling from
``BACKOFF`` up to ``max_wait`` seconds (``Retry-After`` honoured up to ``max_wait``), until a
2xx or until the connection stops. Any other 4xx is the batch's failure: one ERROR line (the
URL without credentials, the status, the start of the body), the batch's events are remembered
and the connection reads them again from its checkpoint; ``sseplug_handle_event`` then raises for
each remembered event, so the connection's errors policy (stop, skip, dead letter) decides for
them, with ``dead_letter_url`` as this plugin's own dead-letter store.

With ``linger`` > 0, batches of several connections bound for one URL share a request: the first
opens it, the others add to it until ``batch_max`` events or ``linger`` seconds, and every one
of them waits for its outcome. Requests go through one urllib3 ``PoolManager`` (a pool per
destination), cooperative under gevent: a slow destination holds only its own streams.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections import OrderedDict
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import urllib3

from sseplug.builtin.deadletter import letter
from sseplug.hookspecs import hookimpl
from sseplug.redaction import REDACTED, public_url

from .settings import FORMATS, KEYS, NAME, SETTINGS, HttpSettings, read_settings

if TYPE_CHECKING:
    from sseplug.connection import Connection
    from sseplug.models import SSEResponse
    from sseplug.run.config import Config

__all__ = [
    "KEYS", "NAME", "SETTINGS", "DeliveryError", "EventRefused", "HttpSettings", "HttpSink", "event_key", "plugin",
]

__version__ = "0.1.0"

BACKOFF = 0.25
"""Seconds before the first retry of a request; doubled (with jitter) before each next one."""
BODY_SHOWN = 200
"""Characters of a refusing response's body shown in its ERROR line."""
REMEMBERED = 10_000
RETRIED_STATUSES = frozenset({408, 429, *range(500, 600)})

log = logging.getLogger("sseplug.http")


class DeliveryError(Exception):
    """A batch was not taken (2xx) by the receiver: it is not checkpointed. ``retryable``: the
    connection reads it again from its checkpoint; else the connection stops."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class EventRefused(Exception):
    """The receiver refused the request that held this event (a 4xx): the event's failure,
    handled by the connection's errors policy (stop, skip or dead letter)."""

    retryable = False


class _Shared:
    """One request being filled by several connections' batches (``linger``)."""

    __slots__ = ("records", "done", "outcome", "sending")

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.done = gevent.event.Event()
        self.outcome: BaseException | None = None
        self.sending = False


class HttpSink:
    """The sink: one instance per plugin manager; inert until configured with a ``[plugins.http]`` table."""

    def __init__(self) -> None:
        self.settings: HttpSettings | None = None  # None: inert
        self.requests_sent = 0  # requests that got a 2xx, since configure
        self._pool: urllib3.PoolManager | None = None
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._refused: OrderedDict[str, str] = OrderedDict()  # event key -> why its request was refused
        self._open: dict[str, _Shared] = {}  # url -> the request connections are adding to (linger)
        self._failing: set[str] = set()  # urls whose last try failed (logged once, until a 2xx)

    def __repr__(self) -> str:
        if self.settings is None:
            return "<HttpSink inactive>"
        return f"<HttpSink {public_url(self.settings.url)}>"

    @property
    def sseplug_sink(self) -> bool:
        """An event sink (the runner then drops its stdout sink) once configured."""
        return self.settings is not None

    # -- configure -------------------------------------------------------------------------------

    @hookimpl
    def sseplug_configure(self, config: Config | None) -> None:
        """Validate ``[plugins.http]``; connect nowhere. Inert without config or table, and under
        ``sseplug check`` (validated only)."""
        self.sseplug_unconfigure()
        if config is None or NAME not in config.plugins:
            return
        settings = read_settings(config)
        if getattr(config, "dry_run", False):
            return
        cert, key = (settings.cert, None) if not isinstance(settings.cert, tuple) else settings.cert
        verify = settings.verify
        self._pool = urllib3.PoolManager(
            num_pools=64, maxsize=16, block=False, retries=False,
            timeout=urllib3.Timeout(connect=settings.timeout, read=settings.timeout),
            cert_reqs="CERT_NONE" if verify is False else "CERT_REQUIRED",
            ca_certs=verify if isinstance(verify, str) else None, cert_file=cert, key_file=key,
        )
        self.settings = settings

    @hookimpl
    def sseplug_unconfigure(self) -> None:
        """Drop the pool and every buffered event; inert until configured again."""
        if self._pool is not None:
            self._pool.clear()
        self.settings = self._pool = None
        self._pending.clear()
        self._refused.clear()
        self._open.clear()
        self._failing.clear()
        self.requests_sent = 0

    # -- events ----------------------------------------------------------------------------------

    @hookimpl
    def sseplug_handle_event(self, event: SSEResponse, connection: Connection) -> None:
        """Buffer the event; one whose earlier request the receiver refused raises ``EventRefused``."""
        if self.settings is None:
            return
        cid = connection.id
        key = event_key(cid, event)
        if self._refused:
            why = self._refused.get(key)
            if why is not None:
                raise EventRefused(f"the receiver refused the request holding event id {event.id!r}: {why}")
        pending = self._pending.get(cid)
        if pending is None:
            pending = self._pending[cid] = []
        pending.append({"connection": cid, "id": event.id, "event": event.event, "data": event.data, "key": key})

    # tryfirst: the checkpoint store (the built-in sqlite, redis...) must not record last_event_id
    # before the receiver took every event up to it; raising here stops the hook before they run
    @hookimpl(tryfirst=True)
    def sseplug_checkpoint_save(self, connection: Connection, last_event_id: str) -> None:
        """POST the buffered events (``batch_max`` per request); return once each got a 2xx."""
        settings = self.settings
        pending = self._pending.pop(connection.id, None)
        if settings is None or not pending:
            return
        for index in range(len(pending) - 1, -1, -1):  # events after the checkpointed one come again
            if pending[index]["id"] == last_event_id:
                del pending[index + 1:]
                break
        url = settings.url_for(connection.id)
        for start in range(0, len(pending), settings.batch_max):
            records = pending[start:start + settings.batch_max]
            if settings.linger > 0:
                self._join(url, records, connection)
            else:
                self._send(url, records, connection)

    @hookimpl
    def sseplug_connection_closed(self, connection: Connection) -> None:
        """Forget the unsent batch of a response that ended: it is read again."""
        self._pending.pop(connection.id, None)

    @hookimpl
    def sseplug_dead_letter(
        self, event: SSEResponse, connection: Connection, plugin: str, error: BaseException, attempts: int
    ) -> bool | None:
        """With ``dead_letter_url``: POST the dead letter (one JSON object, with the event's
        ``key``) and return once it got a 2xx (retried like events); without it, no answer."""
        settings = self.settings
        if settings is None or settings.dead_letter_url is None:
            return None
        record = {**letter(event, connection, plugin, error, attempts), "key": event_key(connection.id, event)}
        self._post(settings.url_for(connection.id, settings.dead_letter_url), _json(record), "application/json",
                   _idempotency_key([record["key"]]), connection, [])
        return True

    # -- requests --------------------------------------------------------------------------------

    def _join(self, url: str, records: list[dict[str, Any]], connection: Connection) -> None:
        """Add ``records`` to the request being filled for ``url`` (or open one), wait for its outcome."""
        settings = self._settings()
        shared = self._open.get(url)
        if shared is None or len(shared.records) + len(records) > settings.batch_max:
            shared = self._open[url] = _Shared()
            gevent.spawn_later(settings.linger, self._flush, url, shared, connection)
        shared.records.extend(records)
        if len(shared.records) >= settings.batch_max:
            self._flush(url, shared, connection)
        shared.done.wait()
        if shared.outcome is not None:
            raise shared.outcome

    def _flush(self, url: str, shared: _Shared, connection: Connection) -> None:
        if self._open.get(url) is shared:
            del self._open[url]
        if shared.done.is_set() or shared.sending:
            return
        shared.sending = True
        try:
            self._send(url, shared.records, connection)
        except BaseException as error:  # every waiting connection raises it
            shared.outcome = error
        finally:
            shared.done.set()

    def _send(self, url: str, records: list[dict[str, Any]], connection: Connection) -> None:
        settings = self._settings()
        keys = [record["key"] for record in records]
        if settings.format == "ndjson":
            body = b"".join(_json(record) + b"\n" for record in records)
        else:
            body = b"[" + b",".join(_json(record) for record in records) + b"]"
        self._post(url, body, FORMATS[settings.format], _idempotency_key(keys), connection, keys)

    def _post(self, url: str, body: bytes, content_type: str, idempotency_key: str, connection: Connection,
              keys: list[str]) -> None:
        """POST until a 2xx, retrying what may pass; a refusal raises ``DeliveryError``."""
        settings, pool = self._settings(), self._pool
        assert pool is not None
        headers = {**settings.headers, "Content-Type": content_type, "Idempotency-Key": idempotency_key}
        shown, attempt = public_url(url), 0
        while True:
            attempt += 1
            wait: float | None = None
            try:
                response = pool.request("POST", url, body=body, headers=headers, redirect=False,
                                        preload_content=True, retries=False)
            except urllib3.exceptions.SSLError as error:
                raise DeliveryError(f"POST {shown}: TLS failed ({self._scrub(str(error))}); check verify and cert",
                                    retryable=False) from None
            except urllib3.exceptions.HTTPError as error:
                problem = f"{type(error).__name__}: {self._scrub(str(error))}"
            else:
                status = response.status
                if 200 <= status < 300:
                    self.requests_sent += 1
                    if url in self._failing:
                        self._failing.discard(url)
                        log.info("http: POST %s answers %d again", shown, status)
                    return
                text = self._scrub(" ".join(response.data[:BODY_SHOWN * 4].decode("utf-8", "replace").split()))
                problem = f"HTTP {status}: {text[:BODY_SHOWN]!r}"
                if status not in RETRIED_STATUSES:
                    log.error("http: POST %s refused a batch of %d events (connection %r): %s", shown, len(keys) or 1,
                              connection.id, problem)
                    self._remember(keys, f"POST {shown}: {problem}")
                    raise DeliveryError(f"POST {shown}: {problem}; the connection reads these events again and its "
                                        "errors policy decides for them", retryable=bool(keys))
                wait = _retry_after(response.headers.get("Retry-After"), settings.max_wait)
            if connection.stopping:
                raise DeliveryError(f"POST {shown}: {problem}; not sent before the stop", retryable=True)
            if wait is None:
                wait = min(settings.max_wait, BACKOFF * 2 ** (attempt - 1)) * random.uniform(0.8, 1.0)
            if url not in self._failing:
                self._failing.add(url)
                log.warning("http: POST %s failed (%s); trying again until it answers 2xx", shown, problem)
            log.debug("http: POST %s attempt %d failed (%s); again in %.2fs", shown, attempt, problem, wait)
            gevent.sleep(wait)

    def _remember(self, keys: list[str], why: str) -> None:
        for key in keys:
            self._refused[key] = why
        while len(self._refused) > REMEMBERED:
            self._refused.popitem(last=False)

    def _scrub(self, text: str) -> str:
        """``text`` (an error, a response body) without the configured header values."""
        for value in (self._settings().headers.values() if self.settings is not None else ()):
            for part in {str.__str__(value), *str.__str__(value).split()}:
                if len(part) >= 4:
                    text = text.replace(part, REDACTED)
        return text

    def _settings(self) -> HttpSettings:
        if self.settings is None:
            raise RuntimeError("the http plugin is not configured")
        return self.settings


plugin = HttpSink()
"""The instance the ``http`` entry point registers (``sseplug_http:plugin``)."""


def event_key(connection_id: str, event: SSEResponse) -> str:
    """The event's stable key: ``connection:id`` when its block has its own ``id:`` field, else
    ``connection:id#`` and 16 hex digits of the SHA-256 of the raw block (``id`` being the last one
    seen before it, often ``""``)."""
    raw = event.raw_response or ""
    if any(line == "id" or line.startswith("id:") for line in raw.splitlines()):
        return f"{connection_id}:{event.id}"
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{connection_id}:{event.id}#{digest}"


def _idempotency_key(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _json(record: dict[str, Any]) -> bytes:
    try:
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")
    except (UnicodeEncodeError, ValueError):  # lone surrogates or NaN: escaped, valid JSON still
        return json.dumps(record, separators=(",", ":"), default=str).replace("NaN", "null").encode("ascii")


def _retry_after(value: str | None, cap: float) -> float | None:
    """Seconds a ``Retry-After`` asks for (seconds or an HTTP date), capped; ``None`` when absent or bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    return max(0.0, min(cap, seconds))
