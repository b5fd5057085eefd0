"""Value objects: the request a connection makes and the events it yields."""

from __future__ import annotations

import enum
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from .redaction import secret_headers

__all__ = [
    "DEFAULT_HEAD_TIMEOUT", "DEFAULT_MAX_EVENT_SIZE", "DEFAULT_POOL_SIZE", "DEFAULT_READ_TIMEOUT", "MAX_WAIT",
    "RECONNECT_MODES",
    "OnBytes", "OnComment", "OnData", "OnDone", "OnError", "RequestContentType", "RequestFieldError", "RequestMethodType", "SSERequest",
    "SSEResponse", "expected_integer", "expected_seconds", "integer_range", "number_range", "seconds_range",
]

DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024
"""Largest event (or line), in UTF-8 bytes, a parser accepts unless told otherwise."""

DEFAULT_READ_TIMEOUT = 300.0
"""Seconds without a byte after which a stream counts as stalled (a network error: reconnect)."""

DEFAULT_HEAD_TIMEOUT = 30.0
"""Seconds from connecting to a complete response head (status line and headers)."""

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: what a method name may hold

RECONNECT_MODES = (None, "always", "on_error", "never")
"""Values of ``SSERequest.reconnect`` (``None``: the method's default)."""

DEFAULT_POOL_SIZE = 10_000
"""Greenlets of an ``SSEClient``'s pool (one per stream); also the runner's default ``pool_size``."""

MAX_WAIT = 6 * 3600.0
"""Longest wait before a reconnect, whatever a server (``Retry-After``) or a plugin asks (urllib3's cap)."""


class SSEResponse(NamedTuple):
    """One dispatched event: immutable and slotted (a named tuple, built at C speed on the hot path).

    ``id`` is the last event ID at dispatch ("" when the stream never set one); ``event`` the event
    type (``"message"`` by default); ``data`` the text, or what a deserialize plugin made of it;
    ``comment`` the comment lines of the event's block joined by LF (``""`` without any);
    ``raw_response`` the block's lines joined by LF; ``retry`` the reconnection time (ms) the
    block set, or ``None``.
    """

    id: str
    event: str
    data: Any
    comment: str = ""
    raw_response: str = ""
    retry: int | None = None


class RequestMethodType(str, enum.Enum):
    """HTTP methods an event stream can be requested with."""

    GET = "GET"
    POST = "POST"


class RequestContentType(str, enum.Enum):
    """Request body content types, with the MIME values of flutter_http_sse."""

    json = "application/json"
    text_event_stream = "text/event-stream"
    plain_text = "text/plain"
    multipart_form_data = "multipart/form-data"


class RequestFieldError(ValueError):
    """A value ``SSERequest`` rejects: ``field`` names it, ``message`` says what is wrong; ``str()`` is both."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


OnData = Callable[[SSEResponse], Any]
OnError = Callable[[BaseException], Any]
OnDone = Callable[[], Any]
OnComment = Callable[[str], Any]
OnBytes = Callable[[bytes], Any]


@dataclass(frozen=True, slots=True)
class SSERequest:
    """What to connect to and how: validated at construction, reused unchanged on every reconnect.

    A ``dict``/``list`` body is sent as JSON with ``Content-Type: application/json``; ``str`` and
    ``bytes`` bodies are sent as they are. ``last_event_id`` resumes a stream from a stored id.
    ``read_timeout``: seconds without a byte before the stream counts as stalled;
    ``head_timeout``: seconds from connecting to a complete response head (status and headers);
    both are network errors (retried), ``None`` waits for ever.

    ``reconnect`` (see ``reconnect_mode``) says when to reconnect. A request that is not a plain
    GET is never sent again once its response delivered events (an LLM generation would start
    over, and be paid again), unless ``reconnect="always"`` is given or ``resume_url`` is set:
    reconnects then GET that URL with Last-Event-ID. An event whose type is in ``end_events`` or
    whose data text is in ``end_data`` (e.g. ``"[DONE]"``) is delivered, then ends the stream
    cleanly; one whose type is in ``error_events`` ends it with ``ServerEventError``.
    ``on_comment`` gets each comment line's text in stream order with the events (``on_data``),
    as soon as the line arrives, also from blocks without data (heartbeats); ``on_bytes`` each
    piece of the body as read (after chunked and gzip decoding), before it is parsed. An invalid
    value raises ``RequestFieldError`` (a ``ValueError``) naming its field.
    """

    url: str
    method: RequestMethodType | str = RequestMethodType.GET  # GET, POST, or any method name
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    content_type: RequestContentType | str | None = None
    on_data: OnData | None = None
    on_error: OnError | None = None
    on_done: OnDone | None = None
    retry: bool = True
    max_retries: int = 5
    read_timeout: float | None = DEFAULT_READ_TIMEOUT
    head_timeout: float | None = DEFAULT_HEAD_TIMEOUT
    max_event_size: int = DEFAULT_MAX_EVENT_SIZE
    last_event_id: str = ""
    reconnect: str | None = None
    resume_url: str | None = None
    end_events: Sequence[str] = ()
    end_data: Sequence[str] = ()
    error_events: Sequence[str] = ()
    retry_delay: float = 1.0
    verify: bool | str = True
    cert: str | tuple[str, str] | None = None
    on_comment: OnComment | None = None
    on_bytes: OnBytes | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # normalising a frozen instance during construction
        if not _is_http_url(self.url):
            raise RequestFieldError(
                "url",
                f"{self.url!r} is not an http:// or https:// URL with a host; "
                "give a full URL such as 'http://127.0.0.1:8000/stream'",
            )
        set_(self, "method", _method(self.method))
        set_(self, "headers", _headers(self.headers))
        set_(self, "content_type", _content_type(self.body, self.content_type))
        if self.body is not None and self.method is RequestMethodType.GET:
            raise RequestFieldError(
                "body", 'a GET request carries no body; set method = "POST" to send one, or leave the body out'
            )
        if self.body is not None and not isinstance(self.body, (dict, list, str, bytes)):
            raise RequestFieldError("body", f"expected dict, list, str or bytes, got {type(self.body).__name__}")
        for name in ("on_data", "on_error", "on_done", "on_comment", "on_bytes"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise RequestFieldError(name, f"expected a callable or None, got {value!r}")
        if not isinstance(self.retry, bool):
            raise RequestFieldError("retry", f"expected True or False, got {self.retry!r}")
        for name in ("max_retries", "max_event_size", "read_timeout", "head_timeout"):
            _require_number(name, getattr(self, name))
        if not isinstance(self.last_event_id, str) or "\x00" in self.last_event_id or any(
            c in self.last_event_id for c in "\r\n"
        ):
            raise RequestFieldError(
                "last_event_id", f"expected a str without NUL, CR or LF, got {self.last_event_id!r}"
            )
        if self.reconnect not in RECONNECT_MODES:
            raise RequestFieldError(
                "reconnect", f"expected one of {', '.join(map(repr, RECONNECT_MODES))}, got {self.reconnect!r}"
            )
        if self.resume_url is not None and not _is_http_url(self.resume_url):
            raise RequestFieldError(
                "resume_url", f"{self.resume_url!r} is not an http:// or https:// URL with a host"
            )
        _require_number("retry_delay", self.retry_delay)
        if not (isinstance(self.verify, bool) or _is_file("verify", self.verify)):
            raise RequestFieldError("verify", f"expected true, false or the path of a CA bundle, got {self.verify!r}")
        cert: Any = self.cert  # a list too (TOML arrays), which the annotation leaves out
        if isinstance(cert, list):
            set_(self, "cert", tuple(cert))
        if self.cert is not None and not (
            _is_file("cert", self.cert)
            or (isinstance(self.cert, tuple) and len(self.cert) == 2 and all(_is_file("cert", p) for p in self.cert))
        ):
            raise RequestFieldError(
                "cert", f"expected a certificate path or [certificate, key] paths, got {self.cert!r}"
            )
        for name in ("end_events", "end_data", "error_events"):
            set_(self, name, _strings(name, getattr(self, name)))

    def tls_options(self) -> dict[str, Any]:
        """urllib3 pool options for ``verify`` and ``cert`` (empty for the defaults)."""
        options: dict[str, Any] = {}
        if self.verify is False:
            options["cert_reqs"] = "CERT_NONE"
        elif isinstance(self.verify, str):
            options["ca_cert_dir" if os.path.isdir(self.verify) else "ca_certs"] = self.verify
        if isinstance(self.cert, str):
            options["cert_file"] = self.cert
        elif self.cert is not None:
            options["cert_file"], options["key_file"] = self.cert
        return options

    @property
    def reconnect_mode(self) -> str:
        """When the connection reconnects: ``"always"`` (after EOF and failures), ``"on_error"``
        (a clean EOF ends the stream) or ``"never"``. Unless given: ``"never"`` with
        ``retry=False``, ``"always"`` for GET and ``"on_error"`` for other methods."""
        if not self.retry:
            return "never"
        if self.reconnect is not None:
            return self.reconnect
        return "always" if self.method is RequestMethodType.GET else "on_error"

    @property
    def resends(self) -> bool:
        """Whether the request may be sent again once its response delivered events: a GET
        without a body always may; any other only with ``reconnect="always"`` given explicitly
        (the server resumes from Last-Event-ID). A ``resume_url`` GET is sent instead."""
        return (self.method is RequestMethodType.GET and self.body is None) or self.reconnect == "always"

    def encoded_body(self) -> bytes | None:
        """The body as sent on the wire (JSON for dict/list, UTF-8 for str), or ``None``."""
        if self.body is None:
            return None
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body, separators=(",", ":")).encode("utf-8")


def _method(value: RequestMethodType | str) -> RequestMethodType | str:
    if isinstance(value, str) and _TOKEN.fullmatch(value):
        method = value.upper()
        try:
            return RequestMethodType(method)
        except ValueError:
            return method  # REPORT, PUT...: any HTTP method token
    raise RequestFieldError("method", f'{value!r} is not an HTTP method; use "GET", "POST" or another method name')


def header_problem(name: object, value: object) -> str | None:
    """What keeps ``name: value`` from being sent as an HTTP header, or ``None``; never shows the
    value (it may be a credential)."""
    if not isinstance(name, str) or not isinstance(value, str):
        return f"names and values must be str, got a {type(value).__name__} value"
    if not name or any(c in name for c in ": \r\n") or any(c in value for c in "\r\n\x00"):
        return "name or value holds a forbidden character"
    if not name.isascii():
        return "header names are ASCII"
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return ("the value holds characters an HTTP header cannot carry (header values are Latin-1 "
                "bytes); percent-encode or base64 it")
    return None


def _headers(value: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise RequestFieldError("headers", f"expected a mapping of str to str, got {type(value).__name__}")
    for key, item in value.items():
        problem = header_problem(key, item)
        if problem is not None:
            raise RequestFieldError("headers", f"{key!r}: {problem}")
    return secret_headers(value)  # credentials are sent, never shown in a repr


def _content_type(body: Any, value: RequestContentType | str | None) -> RequestContentType | str | None:
    if body is None:
        return None  # no request Content-Type without a body
    if isinstance(body, (dict, list)):
        if value not in (None, RequestContentType.json, RequestContentType.json.value):
            raise RequestFieldError(
                "content_type",
                f"a dict or list body is sent as JSON, not {value!r}; drop content_type or pass the body as str/bytes",
            )
        return RequestContentType.json
    if value is None:
        return RequestContentType.plain_text if isinstance(body, str) else "application/octet-stream"
    if isinstance(value, str):
        try:
            return RequestContentType(value)
        except ValueError:
            if "/" in value and not any(c in value for c in "\r\n"):
                return value
    raise RequestFieldError("content_type", f"{value!r} is not a MIME type such as 'text/plain'")


def _is_http_url(value: Any) -> bool:
    parts = urlsplit(value) if isinstance(value, str) else None
    return parts is not None and parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_file(name: str, value: Any) -> bool:
    """Whether ``value`` is a path string; one that does not exist is a ``RequestFieldError``."""
    if not isinstance(value, str):
        return False
    if not os.path.exists(value):
        raise RequestFieldError(name, f"{value!r} does not exist; give the path of the PEM file")
    return True


def _strings(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)) or not all(
        isinstance(item, str) for item in value
    ):
        raise RequestFieldError(name, f"expected a list of strings, got {value!r}")
    return tuple(value)


def integer_range(minimum: int | None = None, maximum: int | None = None) -> str:
    """What an integer from ``minimum`` to ``maximum`` is called in errors and the config reference:
    ``"an integer >= 0"``, ``"an integer from 1 to 9"``."""
    if minimum is not None and maximum is not None:
        return f"an integer from {minimum} to {maximum}"
    if minimum is not None:
        return f"an integer >= {minimum}"
    return "an integer" if maximum is None else f"an integer <= {maximum}"


def expected_integer(value: object, *, minimum: int | None = None, maximum: int | None = None) -> str | None:
    """``integer_range(minimum, maximum)`` when ``value`` is not such an integer (a bool is not one), else ``None``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        return integer_range(minimum, maximum)
    return None


def seconds_range(minimum: float | None = None) -> str:
    """What a finite number of seconds > 0 (>= ``minimum`` when given) is called in errors and the
    config reference: ``"a number of seconds > 0"``, ``"a number of seconds >= 0"``."""
    return f"a number of seconds {'> 0' if minimum is None else f'>= {minimum:g}'}"


def expected_seconds(value: object, *, minimum: float | None = None) -> str | None:
    """``seconds_range(minimum)`` when ``value`` is not a finite number of seconds > 0 (>= ``minimum``
    when given; a bool, nan and inf are none), else ``None``: the one rule of every timeout, delay
    and backoff of the library and the config."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value < math.inf
        or not (0 < value if minimum is None else minimum <= value)
    ):
        return seconds_range(minimum)
    return None


_COUNTS = {"max_retries": 0, "max_event_size": 1}  # integer fields: their minimum
_WAITS = {"read_timeout": None, "head_timeout": None, "retry_delay": 0.0}  # seconds: their minimum (None: > 0)
_NONE_WAITS_FOR_EVER = ("read_timeout", "head_timeout")
# retry_delay may be 0: every wait is floored at 10 ms by the retry policy


def number_range(name: str) -> str | None:
    """What the number field ``name`` of ``SSERequest`` must be (``"an integer >= 0"``), for the
    config reference; ``None`` for a field that is not a number."""
    if name in _COUNTS:
        return integer_range(_COUNTS[name])
    if name in _WAITS:
        return seconds_range(_WAITS[name])
    return None


def _require_number(name: str, value: Any) -> None:
    if value is None and name in _NONE_WAITS_FOR_EVER:
        return
    if name in _COUNTS:
        expected = expected_integer(value, minimum=_COUNTS[name])
    else:
        expected = expected_seconds(value, minimum=_WAITS[name])
    if expected is not None:
        raise RequestFieldError(name, f"expected {expected}, got {value!r}")
