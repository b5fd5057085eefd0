"""Credentials in headers and URLs: sent as they are, shown nowhere (reprs, log lines, error messages).

A header value is a credential when its name is in ``CREDENTIAL_HEADERS``, or when the runner's
config built it from ``${ENV}``. It travels as a ``Secret``, so every repr holding it (a dict, a
dataclass, a hook trace) shows ``REDACTED``; ``redacted()`` makes a showable copy of values
that were never wrapped, such as response headers and what plugins return. Any other config
value built from ``${ENV}`` (a URL with a token, a plugin's password) is a ``FromEnvironment``:
its repr, and ``public_url``, show ``${NAME}`` where the environment's values went.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

__all__ = [
    "CREDENTIAL_HEADERS", "REDACTED", "FromEnvironment", "Secret", "hide_credentials", "protect_settings",
    "public_error", "public_url", "redacted", "secret_headers",
]

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


class FromEnvironment(str):
    """A str built from ``${NAME}`` references, used as its value. ``repr()`` shows ``template``,
    the text as written; ``hide()`` replaces the environment's values in a text (a message, a
    URL) by their ``${NAME}``."""

    HIDDEN_FROM = 4
    """Values shorter than this are left in texts: a port or a shard number, which replacing
    would garble the text (and no credential is that short)."""

    template: str
    values: dict[str, str]

    def __new__(cls, text: str, template: str, values: Mapping[str, str]) -> FromEnvironment:
        made = super().__new__(cls, text)
        made.template = template
        made.values = {name: value for name, value in values.items() if len(value) >= cls.HIDDEN_FROM}
        return made

    def hide(self, text: str) -> str:
        """``text`` with each of the environment's values, as is or percent-encoded, shown as
        ``${NAME}`` (the longest first)."""
        for name, value in sorted(self.values.items(), key=lambda item: len(item[1]), reverse=True):
            for form in {value, quote(value, safe=""), quote_plus(value, safe="")}:
                text = text.replace(form, f"${{{name}}}")
        return text

    def __repr__(self) -> str:
        return repr(self.template)

    def __reduce__(self) -> tuple[Any, ...]:
        return FromEnvironment, (str.__str__(self), self.template, self.values)


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
    """``url`` fit to show: without user and password, with the value of every query parameter
    whose name suggests a credential (``token``, ``api_key``, ``sig``...) hidden, and ``${NAME}``
    where a ``FromEnvironment`` URL holds a value from the environment."""
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
    shown = urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    return url.hide(shown) if isinstance(url, FromEnvironment) else shown


def public_error(error: BaseException) -> str:
    """``str(error)`` fit to show: each URL its chain carries (an error's message names it) as
    ``public_url`` shows it, without user, password or credential query values, and without the
    values a ``FromEnvironment`` URL took from the environment."""
    urls: dict[str, str] = {}  # a FromEnvironment kept over an equal plain str
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        url = getattr(cause, "url", None)  # SSEError's, and urllib3's (a path and query) in a cause
        if isinstance(url, str) and url and not isinstance(urls.get(url), FromEnvironment):
            urls[url] = url
        cause = cause.__cause__ or cause.__context__
    text = str(error)
    for url in sorted(urls.values(), key=len, reverse=True):  # a whole URL before the path it contains
        try:
            shown = public_url(url)
        except ValueError:  # not a URL one can parse: show none of it
            shown = REDACTED
        text = text.replace(url, shown)
    for url in urls.values():
        if isinstance(url, FromEnvironment):
            text = url.hide(text)  # also in what a cause says of the URL's parts
    return text


# A password in a URL's user information (``scheme://user:PASSWORD@host``): the user stays shown.
_URL_PASSWORD = re.compile(  # up to the last "@" before the host: a password may hold "@" written as is
    r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)[^\s]*?(?=@[^@\s/?#]*(?:[/?#\s]|$))")
# A credential written as ``name=value`` (libpq's ``password=...``, a query's ``token=...``).
_NAMED_CREDENTIAL = re.compile(
    r"(?i)(?P<head>\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|client[_-]?secret)\s*=\s*)"
    r"(?:'(?:[^'\\]|\\.)*'|[^\s&;]+)"
)
_REFERENCES = re.compile(r"(?:\$\{[^}]*\})+")  # a config value as written: environment references only
_SECRET_KEY = re.compile(r"(?i)password|passwd|secret|token|credential|api[_-]?key|private[_-]?key|access[_-]?key")


def hide_credentials(text: str) -> str:
    """``text`` with the passwords it spells out shown as ``REDACTED``: the one in a URL's user
    information (``postgresql://user:PASSWORD@host``) and every ``password=...``, ``token=...``
    (a libpq connection string, a URL query), the names and the rest kept; a password written
    as a ``${NAME}`` reference (a config value as written) stays."""
    def hidden(match: re.Match[str]) -> str:
        """The match with its password replaced, unless it is written as a reference."""
        written = match[0][len(match["head"]):]
        return match[0] if _REFERENCES.fullmatch(written) else match["head"] + REDACTED  # ${VAR} tells nothing

    return _NAMED_CREDENTIAL.sub(hidden, _URL_PASSWORD.sub(hidden, text))


def protect_settings(value: Any, *, secret: bool = False) -> Any:
    """A plugin's settings (a ``[plugins.NAME]`` table) with the same values, whose reprs show no
    credential written in them: the value of a key named like a credential (``password``,
    ``token``, ``api_key``...) and every value of a ``headers`` table becomes a ``Secret``; a
    string holding a password (a DSN, a URL with ``user:password@``) becomes a
    ``FromEnvironment`` that shows itself with the password replaced (``hide_credentials``)."""
    if isinstance(value, Mapping):
        return {
            key: protect_settings(item, secret=secret or (isinstance(key, str) and (
                key.lower() == "headers" or _SECRET_KEY.search(key) is not None)))
            for key, item in value.items()
        }
    if type(value) in (list, tuple):
        return type(value)(protect_settings(item, secret=secret) for item in value)
    if not isinstance(value, str) or isinstance(value, Secret):
        return value
    if secret:
        return Secret(value)
    written = value.template if isinstance(value, FromEnvironment) else str.__str__(value)
    shown = hide_credentials(written)
    if shown == written:
        return value
    values = value.values if isinstance(value, FromEnvironment) else {}
    return FromEnvironment(str.__str__(value), shown, values)
