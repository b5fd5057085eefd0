"""Credentials in headers and URLs: sent as they are, shown nowhere (reprs, log lines, error messages).

A header value is a credential when its name is in ``CREDENTIAL_HEADERS``, or when the runner's
config built it from ``${ENV}``. It travels as a ``Secret``, so every repr holding it (a dict, a
dataclass, a hook trace) shows ``REDACTED``; ``redacted()`` makes a showable copy of values
that were never wrapped, such as response headers and what plugins return.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["CREDENTIAL_HEADERS", "REDACTED", "Secret", "public_error", "public_url", "redacted", "secret_headers"]

REDACTED = "<redacted>"
"""What is shown instead of a credential."""

CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
"""Lowercase names of the headers whose values are credentials."""


class Secret(str):
    """A str whose ``repr()`` is ``REDACTED``, and so is its place in the repr of anything holding
    it; compared, encoded and sent as its value. ``str()``, ``%s`` and f-strings give the value:
    never log one that way. Operations on it (``+``, slicing) return a plain str."""

    __slots__ = ()

    def __repr__(self) -> str:
        return REDACTED


_HIDDEN = Secret(REDACTED)  # shown in place of a value redacted() hides, whatever its type


def secret_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` with the value of every credential header wrapped in ``Secret``."""
    return {
        name: Secret(value) if name.lower() in CREDENTIAL_HEADERS else value for name, value in headers.items()
    }


def redacted(value: Any, *, secret: bool = False) -> Any:
    """A copy of ``value`` safe to show: in every mapping (also inside lists and tuples) the value
    of a credential header is hidden; with ``secret``, every value inside ``value`` is hidden.
    Other objects are returned as they are: their reprs keep their own secrets."""
    if isinstance(value, Mapping):
        return {
            key: redacted(item, secret=secret or (isinstance(key, str) and key.lower() in CREDENTIAL_HEADERS))
            for key, item in value.items()
        }
    if type(value) in (list, tuple):  # exactly: a named tuple (an event) keeps its own repr
        return type(value)(redacted(item, secret=secret) for item in value)
    return _HIDDEN if secret else value


_CREDENTIAL_PARAMETER = re.compile(r"(?i)token|key|secret|password|passwd|auth|sig|session|credential")


def public_url(url: str) -> str:
    """``url`` fit to show: without user and password, and with the value of every query
    parameter whose name suggests a credential (``token``, ``api_key``, ``sig``...) hidden."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    query = urlencode(
        [(name, REDACTED if _CREDENTIAL_PARAMETER.search(name) else value)
         for name, value in parse_qsl(parts.query, keep_blank_values=True)],
        safe="<>",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def public_error(error: BaseException) -> str:
    """``str(error)`` fit to show: each URL its chain carries (an error's message names it) as
    ``public_url`` shows it, without user, password or credential query values."""
    urls: set[str] = set()
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        url = getattr(cause, "url", None)  # SSEError's, and urllib3's (a path and query) in a cause
        if isinstance(url, str) and url:
            urls.add(url)
        cause = cause.__cause__ or cause.__context__
    text = str(error)
    for url in sorted(urls, key=len, reverse=True):  # a whole URL before the path it contains
        try:
            shown = public_url(url)
        except ValueError:  # not a URL one can parse: show none of it
            shown = REDACTED
        text = text.replace(url, shown)
    return text
