"""The kinds of config value: how a key's TOML value is read and checked, and what it must be (the
words of its errors and of the config reference). ``config_spec.SPEC`` gives each key its kind."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import unknown_plugin
from ..models import integer_range, seconds_range
from ..route import ErrorPolicy
from .config_reader import TableReader, fail, one_of, show, table
from .environment import join_key
from .where import compile_where

__all__ = [
    "BODY", "BOOLEAN", "DIRECTORY", "HEADERS", "IDENTIFIER", "LISTEN", "NUMBER", "SINKS", "STRINGS", "TEXT", "VERIFY",
    "CERT", "WHERE", "Context", "Key", "Kind", "choice", "integer", "names", "seconds", "unknown_plugin",
]


@dataclass(frozen=True, slots=True)
class Context:
    """What some kinds need beyond the table: ``base``, the config file's directory (relative paths
    start there); ``plugins``, the names a key may name (``None``: any); ``disabled``, the plugins
    ``runner.plugins.disable`` names; ``errors``, the defaults of an errors table."""

    base: Path = Path()
    plugins: Collection[str] | None = None
    disabled: Collection[str] = ()
    errors: ErrorPolicy = field(default_factory=ErrorPolicy)


@dataclass(frozen=True, slots=True)
class Kind:
    """How a key's TOML value is read and checked. ``what`` says what it must be (in errors and in
    the reference); ``read(reader, key, default, context)`` returns the value of ``key`` in the
    reader's table, else ``default``, and raises ``ConfigError`` for a problem."""

    what: str
    read: Callable[[TableReader, Key, Any, Context], Any]


@dataclass(frozen=True, slots=True)
class Key:
    """One config key: ``path`` as the reference names it (``runner.pool_size``, ``connections[].url``),
    its ``kind``, what it means, and an example of a value (else errors show the default)."""

    path: str
    kind: Kind
    meaning: str
    example: str | None = None
    table: str = field(init=False)  # the table holding the key: runner, runner.errors, connections[]
    name: str = field(init=False)  # the key's name in its table

    def __post_init__(self) -> None:
        table, _, name = self.path.rpartition(".")
        object.__setattr__(self, "table", table)  # derived once: read for every key of every connection
        object.__setattr__(self, "name", name)


# -- TOML's types, read by TableReader (the library checks the values of the request keys) ------------

TEXT = Kind("a string", lambda read, key, default, _: read.string(key.name, default, example=key.example))
BOOLEAN = Kind("true or false", lambda read, key, default, _: read.boolean(key.name, default))
NUMBER = Kind("a number", lambda read, key, default, _: read.number(key.name, default, example=key.example))
STRINGS = Kind("an array of strings", lambda read, key, default, _: read.strings(key.name, default, example=key.example))


def integer(minimum: int | None = None, maximum: int | None = None) -> Kind:
    """An integer from ``minimum`` to ``maximum`` (each when given)."""
    return Kind(
        integer_range(minimum, maximum),
        lambda read, key, default, _: read.integer(
            key.name, default, minimum=minimum, maximum=maximum, example=key.example
        ),
    )


def seconds(minimum: float | None = None) -> Kind:
    """A finite number of seconds > 0, or >= ``minimum`` when given (``models.expected_seconds``)."""
    return Kind(
        seconds_range(minimum),
        lambda read, key, default, _: read.seconds(key.name, default, minimum=minimum, example=key.example),
    )


def choice(choices: tuple[Any, ...]) -> Kind:
    """One of ``choices``, of its TOML type too."""
    return Kind(one_of(choices), lambda read, key, default, _: read.one_of(key.name, choices, default, example=key.example))


# -- paths -------------------------------------------------------------------------------------------


def _directory(read: TableReader, key: Key, default: Any, context: Context) -> Path:
    path = Path(read.string(key.name, str(default), example=key.example))
    return path if path.is_absolute() else context.base / path


DIRECTORY = Kind("a path (relative to the config file)", _directory)


def _tls_paths(read: TableReader, key: Key, default: Any, context: Context) -> Any:
    """A string, or an array of them, is a path taken from the config file's directory; ``SSERequest``
    checks the rest (the one rule of ``verify`` and ``cert``: values, shapes, files that exist)."""
    value = read.table.get(key.name, default)
    if isinstance(value, str):
        return _anchored(value, context.base)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(_anchored(item, context.base) for item in value)
    return value


def _anchored(path: str, base: Path) -> str:
    """``path`` (``~`` expanded) as an absolute path, a relative one taken from ``base``."""
    return str(base / Path(path).expanduser())


VERIFY = Kind("true, false or a path", _tls_paths)
CERT = Kind("a path, or [certificate, key] paths", _tls_paths)


# -- the runner's listening address -------------------------------------------------------------------


def _listen_key(read: TableReader, key: Key, default: Any, context: Context) -> tuple[str, int] | None:
    text = read.string(key.name, default, example=key.example)
    return None if text is None else _listen(text, join_key(read.prefix, key.name))


LISTEN = Kind('a string, "HOST:PORT"', _listen_key)


_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")


def _listen(text: str, key: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
        fail(key, f"expected HOST:PORT with a port from 1 to 65535, got {text!r}; e.g. \"127.0.0.1:9100\"")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not _is_ip(host, version=6):
            fail(key, f"{host!r} in brackets is not an IPv6 address; e.g. \"[::1]:9100\"")
    elif ":" in host:
        fail(key, f"put an IPv6 address in brackets, e.g. \"[{host}]:{port}\"")
    elif not (_is_ip(host, version=4) or (_HOSTNAME.fullmatch(host) and not re.fullmatch(r"[0-9.]+", host))):
        fail(key, f"{host!r} is not an IP address or host name; e.g. \"127.0.0.1:{port}\", or \"0.0.0.0:{port}\"")
    return host, int(port)


def _is_ip(text: str, *, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


# -- names --------------------------------------------------------------------------------------------


def names(noun: str, pattern: re.Pattern[str] | None = None, *, plugins: bool = False) -> Kind:
    """An array of names (a ``noun`` each) matching ``pattern``; with ``plugins``, names of the
    plugins the context knows."""
    what = f"an array of {noun}s"

    def read_names(read: TableReader, key: Key, default: Any, context: Context) -> tuple[str, ...]:
        path = join_key(read.prefix, key.name)
        if key.name not in read.table:
            return tuple(default)
        value = read.table[key.name]
        if not isinstance(value, list):
            fail(path, f"expected {what}, got {show(value)}; e.g. {key.name} = {key.example}")
        for index, name in enumerate(value):
            item = f"{path}[{index}]"
            if not isinstance(name, str) or not name or (pattern and not pattern.fullmatch(name)):
                if plugins:
                    fail(item, f"expected a plugin name, got {show(name)}; run `sseplug plugins` to list them")
                fail(item, f"expected a Python {noun} such as {(key.example or '')[1:-1]}, got {show(name)}")
            if plugins and context.plugins is not None and name not in context.plugins:
                fail(item, unknown_plugin(name, context.plugins))
        return tuple(value)

    return Kind(what, read_names)


def _sinks(read: TableReader, key: Key, default: Any, context: Context) -> tuple[str, ...] | None:
    sinks: tuple[str, ...] | None = read.strings(key.name, default, example=key.example)
    for index, name in enumerate(sinks or ()):
        item = f"{join_key(read.prefix, key.name)}[{index}]"
        if name in context.disabled:
            fail(item, f"plugin {name!r} is disabled in runner.plugins.disable; enable it or route to another sink")
        if context.plugins is not None and name not in context.plugins:
            fail(item, unknown_plugin(name, context.plugins))
    return sinks


SINKS = Kind("an array of plugin names", _sinks)

_ID = re.compile(r"[A-Za-z0-9_.:-]+")


def _identifier(read: TableReader, key: Key, default: Any, context: Context) -> str:
    value: str = read.string(key.name, default, example=key.example)
    if not _ID.fullmatch(value):
        raise read.error(
            key.name, f"invalid id {value!r}: use letters, digits, '_', '.', ':' or '-' only; e.g. {key.example}"
        )
    return value


IDENTIFIER = Kind("a string of letters, digits, '_', '.', ':' or '-'", _identifier)


# -- expressions and request content --------------------------------------------------------------------


def _where(read: TableReader, key: Key, default: Any, context: Context) -> str | None:
    """A JMESPath expression, checked by ``compile_where`` (the rule ``sseplug tail --where`` uses)."""
    expression: str | None = read.string(key.name, default, example=key.example)
    if expression is not None:
        try:
            compile_where(expression)
        except ValueError as exc:
            raise read.error(key.name, f"{exc}; see https://jmespath.org for the syntax") from None
    return expression


WHERE = Kind("a JMESPath expression", _where)


def _headers(read: TableReader, key: Key, default: Any, context: Context) -> dict[str, Any]:
    path = join_key(read.prefix, key.name)
    headers = table(read.table.get(key.name, default), path, f"a table of strings, e.g. {key.name} = {key.example}")
    for name, item in headers.items():
        if not isinstance(item, str):
            fail(join_key(path, name), f"expected a string header value, got {show(item)}; quote it")
    return headers


HEADERS = Kind("a table of strings", _headers)


def _body(read: TableReader, key: Key, default: Any, context: Context) -> Any:
    path, value = join_key(read.prefix, key.name), read.table.get(key.name, default)
    if value is not None:
        if not isinstance(value, (dict, list, str)):
            fail(path, f"expected {BODY.what}, got {show(value)}; e.g. {key.name} = {key.example}")
        _check_json(value, path)  # TOML has dates and nan, JSON has not
    return value


BODY = Kind("a table or array (sent as JSON) or a string (sent as text)", _body)


def _check_json(value: Any, key: str) -> None:
    if isinstance(value, dict):
        for name, item in value.items():
            _check_json(item, join_key(key, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{key}[{index}]")
    elif isinstance(value, float) and not math.isfinite(value):
        fail(key, f"{value} cannot be sent as JSON; use a finite number or a string")
    elif not isinstance(value, (str, int, float)):
        fail(key, f"{show(value)} cannot be sent as JSON; write it as a string")
