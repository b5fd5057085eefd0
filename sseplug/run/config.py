"""Runner config from TOML: its types and config-only rules checked, errors keyed 0-based (``connections[0].url``)."""

from __future__ import annotations

import dataclasses
import difflib
import enum
import ipaddress
import json
import math
import os
import re
import string
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from ..errors import ConfigError
from ..models import (
    DEFAULT_POOL_SIZE,
    RECONNECT_MODES,
    OnData,
    OnDone,
    OnError,
    RequestFieldError,
    RequestMethodType,
    SSERequest,
)
from ..redaction import FromEnvironment, Secret, protect_settings
from ..route import ERROR_ACTIONS, ErrorPolicy, Route
from .environment import expand, join_key
from .where import compile_where

__all__ = ["Config", "ConnectionConfig", "RunnerConfig", "TableReader", "load_config", "parse_config"]

_TOP_KEYS = ("runner", "connections", "plugins")
_RUNNER_KEYS = ("pool_size", "plugins", "state_dir", "shutdown_timeout", "http_listen", "errors")
_RUNNER_PLUGINS_KEYS = ("disable", "modules")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_ID = re.compile(r"[A-Za-z0-9_.:-]+")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")
_TOML_TYPES = {bool: "boolean", int: "integer", float: "float", str: "string"}
_REQUEST_DEFAULTS: dict[str, Any] = {spec.name: spec.default for spec in dataclasses.fields(SSERequest)}


DEFAULT_ERRORS = ErrorPolicy(retries=3, backoff=1.0, action="stop")
"""``[runner.errors]`` unless the file says otherwise: three redeliveries (1, 2, 4 s), then stop."""


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """One validated ``[[connections]]`` table: its id and the values of its ``SSERequest``, whose defaults
    are these (the method normalised, credential headers wrapped in ``Secret``)."""

    id: str
    url: str
    method: RequestMethodType | str = _REQUEST_DEFAULTS["method"]
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = _REQUEST_DEFAULTS["body"]
    retry: bool = _REQUEST_DEFAULTS["retry"]
    max_retries: int = _REQUEST_DEFAULTS["max_retries"]
    read_timeout: float | None = _REQUEST_DEFAULTS["read_timeout"]
    head_timeout: float | None = _REQUEST_DEFAULTS["head_timeout"]
    max_event_size: int = _REQUEST_DEFAULTS["max_event_size"]
    reconnect: str | None = _REQUEST_DEFAULTS["reconnect"]
    resume_url: str | None = _REQUEST_DEFAULTS["resume_url"]
    end_events: tuple[str, ...] = _REQUEST_DEFAULTS["end_events"]
    end_data: tuple[str, ...] = _REQUEST_DEFAULTS["end_data"]
    error_events: tuple[str, ...] = _REQUEST_DEFAULTS["error_events"]
    retry_delay: float = _REQUEST_DEFAULTS["retry_delay"]
    verify: bool | str = _REQUEST_DEFAULTS["verify"]
    cert: str | tuple[str, str] | None = _REQUEST_DEFAULTS["cert"]
    sinks: tuple[str, ...] | None = None  # the plugins handling its events; None: every sink
    events: tuple[str, ...] | None = None  # the event types handled; None: all
    where: str | None = None  # a JMESPath filter, checked when loaded
    errors: ErrorPolicy = DEFAULT_ERRORS

    def request(
        self, *, on_data: OnData | None = None, on_error: OnError | None = None, on_done: OnDone | None = None
    ) -> SSERequest:
        """The ``SSERequest`` this connection makes, with the given callbacks (no last event id)."""
        values = {name: getattr(self, name) for name in _REQUEST_KEYS}
        return SSERequest(**values, on_data=on_data, on_error=on_error, on_done=on_done)

    def route(self) -> Route:
        """The ``Route`` of its events: sinks, filters, error policy."""
        return Route(
            sinks=self.sinks,
            events=None if self.events is None else frozenset(self.events),
            where=None if self.where is None else compile_where(self.where),
            errors=self.errors,
        )


_CONNECTION_KEYS = tuple(spec.name for spec in dataclasses.fields(ConnectionConfig))
_ROUTE_KEYS = ("sinks", "events", "where", "errors")
_REQUEST_KEYS = tuple(name for name in _CONNECTION_KEYS if name not in ("id", *_ROUTE_KEYS))
_ERRORS_KEYS = tuple(spec.name for spec in dataclasses.fields(ErrorPolicy))


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    """The validated ``[runner]`` table; ``state_dir`` is absolute when loaded from a file."""

    pool_size: int = DEFAULT_POOL_SIZE
    disable: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()  # local hookimpl modules, importable from the config's directory
    state_dir: Path = Path(".sseplug")
    shutdown_timeout: float = 10.0
    http_listen: tuple[str, int] | None = None
    errors: ErrorPolicy = DEFAULT_ERRORS  # each connection's, but for the keys it overrides


@dataclass(frozen=True, slots=True)
class Config:
    """A whole validated config file; ``plugins`` maps each ``[plugins.NAME]`` table to its content.
    ``dry_run`` is true under ``sseplug check``: plugins then validate their tables in
    ``sseplug_configure`` and create, open and connect nothing."""

    path: Path
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    connections: tuple[ConnectionConfig, ...] = ()
    plugins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    dry_run: bool = False

    def plugin_config(self, name: str) -> Mapping[str, Any]:
        """The ``[plugins.NAME]`` table of plugin ``name``, or ``{}`` when the file has none."""
        return self.plugins.get(name, {})

    def plugin_settings(self, name: str, *, known: Collection[str]) -> TableReader:
        """Typed reads of the ``[plugins.NAME]`` table (empty when the file has none); a key not in
        ``known`` raises ``ConfigError`` at once."""
        settings = TableReader(self.plugin_config(name), join_key("plugins", name), str(self.path))
        settings.check_keys(known)
        return settings


class _Required(enum.Enum):
    """The type of ``_REQUIRED``: an enum, so that type checkers tell it from any default."""

    REQUIRED = enum.auto()


_REQUIRED = _Required.REQUIRED  # the default of a key that must be given
_D = TypeVar("_D")
_C = TypeVar("_C")


class TableReader:
    """Typed reads of one table of the config file, keyed ``PREFIX.KEY``: each returns the key's value,
    else ``default``; without a default the key is required. A problem raises ``ConfigError`` saying
    what was expected, what the file holds and an example (``example``, else the default)."""

    __slots__ = ("table", "prefix", "path")

    def __init__(self, table: Mapping[str, Any], prefix: str, path: str | None = None) -> None:
        self.table = table
        self.prefix = prefix
        self.path = path

    def error(self, key: str, message: str) -> ConfigError:
        """The ``ConfigError`` for ``key`` of this table, to raise for a rule of one's own."""
        return ConfigError(message, key=join_key(self.prefix, key), path=self.path)

    def check_keys(self, known: Collection[str]) -> None:
        """Raise ``ConfigError`` for the first key of the table that is not in ``known``."""
        for key in self.table:
            if key not in known:
                if not self.prefix:
                    where = "at the top level"
                elif self.prefix.endswith("]"):
                    where = f"in {self.prefix}"  # an item of an array of tables: connections[0]
                else:
                    where = f"in [{self.prefix}]"
                raise self.error(
                    key, f"unknown key {key!r} {where}{_did_you_mean(key, known)}; known keys: {', '.join(known)}"
                )

    def string(self, key: str, default: _D | _Required = _REQUIRED, *, example: str | None = None) -> str | _D:
        """A string."""
        if key not in self.table:
            return self._default(key, default, example)
        value = self.table[key]
        if not isinstance(value, str):
            raise self._wrong(key, "a string", default, example)
        return value

    def template(self, key: str, default: _D | _Required = _REQUIRED, *, example: str | None = None) -> str | _D:
        """A string that may name ``{connection}``, which ``template.format(connection=id)`` fills
        in with a connection's id (``{{`` and ``}}`` stand for braces); any other placeholder is
        an error."""
        value = self.string(key, default, example=example)
        if not isinstance(value, str):
            return value
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as error:
            raise self.error(
                key, f"{value!r}: {error}; write {{connection}} for the connection id, {{{{ and }}}} for braces"
            ) from None
        unknown = sorted(names - {"connection"})
        if unknown:
            raise self.error(key, f"unknown placeholder {{{unknown[0]}}} in {value!r}; {{connection}} is the only placeholder")
        return value

    def strings(
        self, key: str, default: _D | _Required = _REQUIRED, *, separator: str | None = None, example: str | None = None
    ) -> tuple[str, ...] | _D:
        """An array of strings; with ``separator``, also one string of them joined by it (parts stripped)."""
        if key not in self.table:
            return self._default(key, default, example)
        value = self.table[key]
        if separator is not None and isinstance(value, str):
            return tuple(part.strip() for part in value.split(separator))
        if not isinstance(value, list):
            alone = "" if separator is None else f" (or one string of them separated by {separator!r})"
            raise self._wrong(key, f"an array of strings{alone}", default, example)
        for index, item in enumerate(value):
            if not isinstance(item, str):
                message = f"expected a string, got {_show(item)}"
                raise ConfigError(message, key=f"{join_key(self.prefix, key)}[{index}]", path=self.path)
        return tuple(value)

    def boolean(self, key: str, default: _D | _Required = _REQUIRED) -> bool | _D:
        """``true`` or ``false``."""
        if key not in self.table:
            return self._default(key, default, None)
        value = self.table[key]
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false", default, None)
        return value

    def integer(
        self,
        key: str,
        default: _D | _Required = _REQUIRED,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
        example: str | None = None,
    ) -> int | _D:
        """An integer, from ``minimum`` to ``maximum`` when given."""
        if key not in self.table:
            return self._default(key, default, example)
        value = self.table[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)
        ):
            if minimum is not None and maximum is not None:
                what = f"an integer from {minimum} to {maximum}"
            elif minimum is not None:
                what = f"an integer >= {minimum}"
            else:
                what = "an integer" if maximum is None else f"an integer <= {maximum}"
            raise self._wrong(key, what, default, example)
        return value

    def number(self, key: str, default: _D | _Required = _REQUIRED, *, example: str | None = None) -> float | _D:
        """An integer or a float, as written: of any value (its user checks the range)."""
        if key not in self.table:
            return self._default(key, default, example)
        value = self.table[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._wrong(key, "a number", default, example)
        return value

    def seconds(
        self, key: str, default: _D | _Required = _REQUIRED, *, minimum: float | None = None, example: str | None = None
    ) -> float | _D:
        """A finite number of seconds > 0, and >= ``minimum`` when given, as a float."""
        if key not in self.table:
            return self._default(key, default, example)
        value = self.table[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not 0 < value < math.inf
            or (minimum is not None and value < minimum)
        ):
            bound = "> 0" if minimum is None else f">= {minimum:g}"
            raise self._wrong(key, f"a number of seconds {bound}", default, example)
        return float(value)

    def one_of(
        self, key: str, choices: Collection[_C], default: _D | _Required = _REQUIRED, *, example: str | None = None
    ) -> _C | _D:
        """One of ``choices``, of its TOML type too (``true`` is not ``1``, nor is ``"1"``)."""
        if key not in self.table:
            return self._default(key, default, example)
        value = self.table[key]
        for choice in choices:
            if type(choice) is type(value) and choice == value:
                return choice
        raise self._wrong(key, f"one of {', '.join(map(_toml, choices))}", default, example)

    def _default(self, key: str, default: _D | _Required, example: str | None) -> _D:
        if isinstance(default, _Required):
            raise self.error(key, f"missing key {key!r}{_example(key, None, example)}")
        return default

    def _wrong(self, key: str, what: str, default: object, example: str | None) -> ConfigError:
        shown = _show(self.table[key])
        return self.error(key, f"expected {what}, got {shown}{_example(key, default, example)}")


def load_config(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    known_plugins: Collection[str] | None = None,
) -> Config:
    """Read, expand and validate the TOML config at ``path``; any problem raises ``ConfigError``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        message = "the config file does not exist; check the path, or create it from the example in the docs"
    except IsADirectoryError:
        message = "this is a directory, not a config file; pass the path of the TOML file"
    except UnicodeDecodeError as exc:
        message = f"the config file is not UTF-8 text (byte {exc.start}); save it as UTF-8"
    except OSError as exc:
        message = f"cannot read the config file ({exc.strerror}); check its permissions"
    else:
        return parse_config(text, path=path, environ=environ, known_plugins=known_plugins)
    raise ConfigError(message, path=os.fspath(path))


def parse_config(
    text: str,
    *,
    path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    known_plugins: Collection[str] | None = None,
) -> Config:
    """Like ``load_config`` for TOML ``text``; ``path`` names the file in errors and anchors ``state_dir``."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}; fix the syntax there", path=os.fspath(path)) from None
    try:
        return _config(expand(document, os.environ if environ is None else environ), Path(path), known_plugins)
    except ConfigError as exc:  # raised with the key; the file's name is known here
        raise ConfigError(exc.message, key=exc.key, path=os.fspath(path)) from None


def _fail(key: str, message: str) -> NoReturn:
    raise ConfigError(message, key=key)


# -- the document -------------------------------------------------------------------------------


def _config(document: dict[str, Any], path: Path, known_plugins: Collection[str] | None) -> Config:
    TableReader(document, "").check_keys(_TOP_KEYS)
    runner = _runner(_table(document.get("runner", {}), "runner", "a [runner] table"), path, known_plugins)
    sinks = None if known_plugins is None else {*known_plugins, *runner.modules} - set(runner.disable)
    connections = _connections(document.get("connections"), path.absolute().parent, runner, sinks)
    tables = _table(document.get("plugins", {}), "plugins", "[plugins.NAME] tables")
    known = None if known_plugins is None else {*known_plugins, *runner.modules}
    plugins = _plugin_tables(tables, known)
    return Config(path=path, runner=runner, connections=connections, plugins=plugins)


def _runner(table: dict[str, Any], path: Path, known_plugins: Collection[str] | None) -> RunnerConfig:
    read = TableReader(table, "runner")
    read.check_keys(_RUNNER_KEYS)
    defaults = RunnerConfig()
    pool_size = read.integer("pool_size", defaults.pool_size, minimum=1)
    plugins = _table(table.get("plugins", {}), "runner.plugins", "plugins = { disable = [...] }")
    TableReader(plugins, "runner.plugins").check_keys(_RUNNER_PLUGINS_KEYS)
    modules = _module_names(plugins.get("modules", []), "runner.plugins.modules")
    known = None if known_plugins is None else {*known_plugins, *modules}
    disable = _plugin_names(plugins.get("disable", []), "runner.plugins.disable", known)
    state_dir = Path(read.string("state_dir", str(defaults.state_dir)))
    listen = read.string("http_listen", None, example='"127.0.0.1:9100"')
    return RunnerConfig(
        pool_size=pool_size,
        disable=disable,
        modules=modules,
        state_dir=state_dir if state_dir.is_absolute() else path.absolute().parent / state_dir,
        shutdown_timeout=read.seconds("shutdown_timeout", defaults.shutdown_timeout),
        http_listen=None if listen is None else _listen(listen),
        errors=_errors(table.get("errors", {}), "runner.errors", defaults.errors),
    )


def _plugin_names(value: Any, key: str, known_plugins: Collection[str] | None) -> tuple[str, ...]:
    if not isinstance(value, list):
        _fail(key, f"expected an array of plugin names, got {_show(value)}; e.g. disable = [\"stdout\"]")
    for index, name in enumerate(value):
        item_key = f"{key}[{index}]"
        if not isinstance(name, str) or not name:
            _fail(item_key, f"expected a plugin name, got {_show(name)}; run `sseplug plugins` to list them")
        _check_plugin(name, item_key, known_plugins)
    return tuple(value)


def _module_names(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        _fail(key, f"expected an array of module names, got {_show(value)}; e.g. modules = [\"handlers\"]")
    for index, name in enumerate(value):
        if not isinstance(name, str) or not _MODULE.fullmatch(name):
            _fail(f"{key}[{index}]", f"expected a Python module name such as \"handlers\", got {_show(name)}")
    return tuple(value)


def _plugin_tables(
    tables: dict[str, Any], known_plugins: Collection[str] | None
) -> dict[str, dict[str, Any]]:
    for name, table in tables.items():
        key = join_key("plugins", name)
        if name == "disable":
            _fail(key, "disabling plugins belongs under [runner]: write plugins = { disable = [...] } there")
        _check_plugin(name, key, known_plugins)
        _table(table, key, f"a [plugins.{name}] table")
    # the same values; a password written in one shows in no repr (a trace, an error)
    return {name: protect_settings(table) for name, table in tables.items()}


def _check_plugin(name: str, key: str, known_plugins: Collection[str] | None) -> None:
    if known_plugins is not None and name not in known_plugins:
        known = ", ".join(sorted(known_plugins)) or "(none)"
        _fail(key, f"unknown plugin {name!r}{_did_you_mean(name, known_plugins)}; known plugins: {known}")


def _connections(
    value: Any, base: Path, runner: RunnerConfig, sinks: Collection[str] | None
) -> tuple[ConnectionConfig, ...]:
    if value is None or value == []:
        _fail("connections", "no connections configured; add a [[connections]] table with an id and a url")
    if not isinstance(value, list):
        _fail("connections", f"expected an array of tables, got {_show(value)}; write [[connections]] tables")
    seen: dict[str, int] = {}
    connections = []
    for index, table in enumerate(value):
        key = f"connections[{index}]"
        connection = _connection(_table(table, key, "a [[connections]] table"), key, base, runner, sinks)
        if connection.id in seen:
            _fail(
                f"{key}.id",
                f"duplicate id {connection.id!r}: connections[{seen[connection.id]}] and {key} both use it; "
                "give every connection its own id",
            )
        seen[connection.id] = index
        connections.append(connection)
    return tuple(connections)


def _connection(
    table: dict[str, Any], key: str, base: Path, runner: RunnerConfig, sinks: Collection[str] | None
) -> ConnectionConfig:
    """One connection; relative TLS file paths are anchored at ``base`` (the config's directory);
    ``sinks`` are the plugin names a route may name (``None``: not checked here)."""
    read = TableReader(table, key)
    read.check_keys(_CONNECTION_KEYS)
    connection_id = read.string("id", example='"orders"')
    if not _ID.fullmatch(connection_id):
        raise read.error(
            "id", f"invalid id {connection_id!r}: use letters, digits, '_', '.', ':' or '-' only; e.g. \"orders\""
        )
    # Only the TOML types are checked here: SSERequest checks the values (and holds the defaults).
    default = _REQUEST_DEFAULTS
    values = {
        "url": read.string("url", example='"https://example.test/stream"'),
        "method": read.string("method", default["method"]),
        "headers": _headers(table.get("headers", {}), f"{key}.headers"),
        "body": _body(table.get("body", default["body"]), f"{key}.body"),
        "retry": read.boolean("retry", default["retry"]),
        "max_retries": read.integer("max_retries", default["max_retries"]),
        "read_timeout": read.number("read_timeout", default["read_timeout"]),
        "head_timeout": read.number("head_timeout", default["head_timeout"]),
        "max_event_size": read.integer("max_event_size", default["max_event_size"]),
        "reconnect": read.one_of("reconnect", [mode for mode in RECONNECT_MODES if mode], default["reconnect"]),
        "resume_url": read.string("resume_url", default["resume_url"], example='"https://example.test/stream"'),
        **{name: read.strings(name, default[name], example='["end"]')
           for name in ("end_events", "end_data", "error_events")},
        "retry_delay": read.number("retry_delay", default["retry_delay"]),
        "verify": _verify(table.get("verify", default["verify"]), f"{key}.verify", base),
        "cert": _cert(table.get("cert", default["cert"]), f"{key}.cert", base),
    }
    try:
        request = SSERequest(**values)
    except RequestFieldError as exc:
        raise read.error(exc.field, exc.message) from None
    route: dict[str, Any] = {
        "sinks": _sinks(read, sinks, runner.disable),
        "events": read.strings("events", None, example='["trade", "quote"]'),
        "where": read.string("where", None, example="\"data.meta.domain != 'canary'\""),
        "errors": _errors(table.get("errors", {}), f"{key}.errors", runner.errors),
    }
    if route["where"] is not None:
        try:
            compile_where(route["where"])
        except ValueError as exc:
            raise read.error("where", f"{exc}; see https://jmespath.org for the syntax") from None
    requested = {name: getattr(request, name) for name in _REQUEST_KEYS}
    return ConnectionConfig(id=connection_id, **requested, **route)


def _sinks(read: TableReader, known: Collection[str] | None, disabled: Collection[str]) -> tuple[str, ...] | None:
    names: tuple[str, ...] | None = read.strings("sinks", None, example='["jsonl"]')
    for index, name in enumerate(names or ()):
        key = f"{join_key(read.prefix, 'sinks')}[{index}]"
        if name in disabled:
            raise ConfigError(f"plugin {name!r} is disabled in runner.plugins.disable; enable it or route to "
                              "another sink", key=key, path=read.path)
        if known is not None and name not in known:
            raise ConfigError(f"unknown plugin {name!r}{_did_you_mean(name, known)}; known plugins: "
                              f"{', '.join(sorted(known))}", key=key, path=read.path)
    return names


def _errors(value: Any, key: str, defaults: ErrorPolicy) -> ErrorPolicy:
    """An error policy table: each key given overrides the one of ``defaults``."""
    read = TableReader(_table(value, key, 'a table, e.g. errors = { retries = 3, action = "skip" }'), key)
    read.check_keys(_ERRORS_KEYS)
    retries = read.integer("retries", defaults.retries, minimum=0)
    backoff = read.number("backoff", defaults.backoff)
    if not 0 <= backoff < math.inf:
        raise read.error("backoff", f"expected a number of seconds >= 0, got {_show(backoff)}; e.g. backoff = 0.5")
    action = read.one_of("action", ERROR_ACTIONS, defaults.action)
    return ErrorPolicy(retries=retries, backoff=backoff, action=action)


def _verify(value: Any, key: str, base: Path) -> bool | str:
    if isinstance(value, str):
        return _anchored(value, base)
    if not isinstance(value, bool):
        _fail(key, f'expected true, false or the path of a CA bundle, got {_show(value)}; e.g. verify = "ca.pem"')
    return value


def _cert(value: Any, key: str, base: Path) -> str | tuple[str, str] | None:
    if value is None:
        return value
    if isinstance(value, str):
        return _anchored(value, base)
    if isinstance(value, list) and len(value) == 2 and all(isinstance(item, str) for item in value):
        return (_anchored(value[0], base), _anchored(value[1], base))
    _fail(key, f'expected a certificate path or [certificate, key] paths, got {_show(value)}; e.g. cert = ["c.pem", "k.pem"]')


def _anchored(path: str, base: Path) -> str:
    """``path`` (``~`` expanded) as an absolute path, a relative one taken from ``base``."""
    return str(base / Path(path).expanduser())


def _headers(value: Any, key: str) -> dict[str, str]:
    table = _table(value, key, 'a table of strings, e.g. headers = { Authorization = "Bearer ${TOKEN}" }')
    for name, item in table.items():
        if not isinstance(item, str):
            _fail(join_key(key, name), f"expected a string header value, got {_show(item)}; quote it")
    return table


def _body(value: Any, key: str) -> Any:
    if value is not None:
        if not isinstance(value, (dict, list, str)):
            _fail(key, f"expected a table or array (sent as JSON) or a string (sent as text), got {_show(value)}")
        _check_json(value, key)  # TOML has dates and nan, JSON has not
    return value


def _check_json(value: Any, key: str) -> None:
    if isinstance(value, dict):
        for name, item in value.items():
            _check_json(item, join_key(key, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{key}[{index}]")
    elif isinstance(value, float) and not math.isfinite(value):
        _fail(key, f"{value} cannot be sent as JSON; use a finite number or a string")
    elif not isinstance(value, (str, int, float)):
        _fail(key, f"{_show(value)} cannot be sent as JSON; write it as a string")


def _listen(text: str) -> tuple[str, int]:
    key = "runner.http_listen"
    host, _, port = text.rpartition(":")
    if not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
        _fail(key, f"expected HOST:PORT with a port from 1 to 65535, got {text!r}; e.g. \"127.0.0.1:9100\"")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not _is_ip(host, version=6):
            _fail(key, f"{host!r} in brackets is not an IPv6 address; e.g. \"[::1]:9100\"")
    elif ":" in host:
        _fail(key, f"put an IPv6 address in brackets, e.g. \"[{host}]:{port}\"")
    elif not (_is_ip(host, version=4) or (_HOSTNAME.fullmatch(host) and not re.fullmatch(r"[0-9.]+", host))):
        _fail(key, f"{host!r} is not an IP address or host name; e.g. \"127.0.0.1:{port}\", or \"0.0.0.0:{port}\"")
    return host, int(port)


def _is_ip(text: str, *, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


# -- small helpers ------------------------------------------------------------------------------


def _table(value: Any, key: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(key, f"expected a table, got {_show(value)}; write {what}")
    return value


def _example(key: str, default: object, example: str | None) -> str:
    """``; e.g. KEY = VALUE`` with ``example``, else with the default when it is worth showing."""
    if example is None and default is not None and not isinstance(default, _Required):
        example = _toml(default)
    return "" if example is None else f"; e.g. {key} = {example}"


def _toml(value: Any) -> str:
    """A string, boolean or number as TOML writes it."""
    return json.dumps(value) if isinstance(value, (bool, str)) else str(value)


def _show(value: Any) -> str:
    if isinstance(value, (Secret, FromEnvironment)):
        return f"{value!r} (string)"  # a value from the environment: shown redacted, or as written
    if isinstance(value, (dict, list)):
        return "a table" if isinstance(value, dict) else "an array"
    return f"{_toml(value)} ({_TOML_TYPES.get(type(value), type(value).__name__)})"


def _did_you_mean(name: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
