"""SSEError and its leaves: one per thing that can go wrong, carrying its facts as attributes."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar

from .redaction import FromEnvironment, public_url, secret_headers

__all__ = [
    "SSEError",
    "HTTPStatusError",
    "TemporaryHTTPError",
    "ContentTypeError",
    "RedirectError",
    "NetworkError",
    "RetriesExhaustedError",
    "EventTooLargeError",
    "ServerEventError",
    "ConfigError",
    "PluginError",
    "TemporaryPluginError",
]


class SSEError(Exception):
    """Root of every error sseplug raises; ``retryable`` says whether a reconnect may cure it."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, connection_id: str | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.connection_id = connection_id
        self.url = url

    def __str__(self) -> str:
        where = ", ".join(
            f"{name} {value!r}"
            for name, value in (("connection", self.connection_id), ("url", self.url and public_url(self.url)))
            if value is not None
        )
        text = f"{self.message} ({where})" if where else self.message
        return self.url.hide(text) if isinstance(self.url, FromEnvironment) else text


class HTTPStatusError(SSEError):
    """The server answered with a status that ends the stream for good (4xx other than 429)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        connection_id: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message, connection_id=connection_id, url=url)
        self.status = status
        self.headers = secret_headers(headers or {})  # Set-Cookie: never shown in a repr
        self.body = body

    @staticmethod
    def for_status(status: int, **facts: Any) -> HTTPStatusError:
        """The error for an unexpected ``status``: temporary for 5xx and 429, fatal otherwise."""
        body: bytes = facts.get("body", b"")
        excerpt = body[:200].decode("utf-8", "replace")
        if status >= 500 or status == 429:
            return TemporaryHTTPError(
                f"server answered HTTP {status}, a temporary failure (body starts {excerpt!r})", status=status, **facts
            )
        return HTTPStatusError(
            f"server answered HTTP {status}, which ends the stream; check the URL, method and "
            f"credentials (body starts {excerpt!r})",
            status=status,
            **facts,
        )


class TemporaryHTTPError(HTTPStatusError):
    """The server is failing or busy (5xx, 429); reconnecting later may succeed."""

    retryable = True


class ContentTypeError(SSEError):
    """A 200 response whose Content-Type is not ``text/event-stream``: not an event stream."""

    def __init__(
        self,
        message: str,
        *,
        content_type: str | None,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        connection_id: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message, connection_id=connection_id, url=url)
        self.content_type = content_type
        self.headers = secret_headers(headers or {})  # Set-Cookie: never shown in a repr
        self.body = body


class RedirectError(SSEError):
    """A redirect that cannot be followed: no Location, or too many hops."""


class NetworkError(SSEError):
    """The connection failed, closed or stalled; a reconnect may cure it."""

    retryable = True


class CertificateError(SSEError):
    """The server's TLS certificate failed verification (unknown CA, wrong host, expired): a
    reconnect cannot cure it, so the stream fails at once."""


class RetriesExhaustedError(SSEError):
    """``max_retries`` consecutive attempts failed; the last failure is the ``__cause__``."""

    def __init__(
        self, message: str, *, attempts: int, connection_id: str | None = None, url: str | None = None
    ) -> None:
        super().__init__(message, connection_id=connection_id, url=url)
        self.attempts = attempts


class EventTooLargeError(SSEError):
    """A line or event grew past ``max_event_size``; ``events`` holds those parsed before it."""

    def __init__(
        self,
        message: str,
        *,
        limit: int,
        size: int,
        events: Sequence[Any] = (),
        connection_id: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message, connection_id=connection_id, url=url)
        self.limit = limit
        self.size = size
        self.events = list(events)


class ServerEventError(SSEError):
    """The server sent an event of a type in the request's ``error_events``; ``event`` is it."""

    def __init__(self, message: str, *, event: Any, connection_id: str | None = None, url: str | None = None) -> None:
        super().__init__(message, connection_id=connection_id, url=url)
        self.event = event


class ConfigError(SSEError):
    """A configuration value is missing, unknown or invalid; ``key`` names it."""

    def __init__(self, message: str, *, key: str | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.path = path

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.path, self.key) if part)
        return f"{where}: {self.message}" if where else self.message


class PluginError(SSEError):
    """A plugin failed to load or one of its hook implementations raised."""

    def __init__(
        self,
        message: str,
        *,
        plugin: str | None = None,
        hook: str | None = None,
        event_id: str | None = None,
        connection_id: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message, connection_id=connection_id, url=url)
        self.plugin = plugin
        self.hook = hook
        self.event_id = event_id


class TemporaryPluginError(PluginError):
    """A hook implementation failed with an exception marked ``retryable = True`` (a sink whose
    backend is briefly down): the connection reconnects and resumes from its last checkpoint."""

    retryable = True


def did_you_mean(name: str, known: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` when a name of ``known`` is close to ``name``, else ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_plugin(name: str, known: Collection[str]) -> str:
    """The message for a plugin name that is not one of ``known``: the near miss, the known names
    (the config's sinks, plugin tables and ``disable``, and ``create_plugin_manager`` say it alike)."""
    return f"unknown plugin {name!r}{did_you_mean(name, known)}; known plugins: {', '.join(sorted(known)) or '(none)'}"
