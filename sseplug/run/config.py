"""Runner config from TOML: the config classes and the parser, which reads every key by its spec
(``config_spec.SPEC``); errors name the file and the key, 0-based (``connections[0].url``)."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..models import DEFAULT_POOL_SIZE, OnData, OnDone, OnError, RequestFieldError, SSERequest
from ..redaction import protect_settings
from ..route import ErrorPolicy, Route
from .config_kinds import Context, unknown_plugin
from .config_reader import REQUIRED, TableReader, fail, show, table
from .config_spec import key, keys_of, names_of, read_errors, read_keys
from .environment import expand, join_key
from .where import compile_where

__all__ = ["Config", "ConnectionConfig", "RunnerConfig", "TableReader", "connection_defaults", "defaults_of", "load_config", "parse_config"]

_REQUEST_FIELDS = frozenset(spec.name for spec in dataclasses.fields(SSERequest))


DEFAULT_ERRORS = ErrorPolicy(retries=3, backoff=1.0, action="stop")
"""``[runner.errors]`` unless the file says otherwise: three redeliveries (1, 2, 4 s), then stop."""


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """One validated ``[[connections]]`` table: its id, its request (the request keys, checked and
    normalised by ``SSERequest`` itself: the method, credential headers wrapped in ``Secret``) and
    its route keys."""

    id: str
    request: SSERequest  # without callbacks: request_with() adds them
    sinks: tuple[str, ...] | None = None  # the plugins handling its events; None: every sink
    events: tuple[str, ...] | None = None  # the event types handled; None: all
    where: str | None = None  # a JMESPath filter, checked when loaded
    errors: ErrorPolicy = DEFAULT_ERRORS

    def request_with(
        self, *, on_data: OnData | None = None, on_error: OnError | None = None, on_done: OnDone | None = None
    ) -> SSERequest:
        """The ``SSERequest`` this connection makes, with the given callbacks (no last event id)."""
        return dataclasses.replace(self.request, on_data=on_data, on_error=on_error, on_done=on_done)

    def route(self) -> Route:
        """The ``Route`` of its events: sinks, filters, error policy."""
        return Route(
            sinks=self.sinks,
            events=None if self.events is None else frozenset(self.events),
            where=None if self.where is None else compile_where(self.where),
            errors=self.errors,
        )


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


def connection_defaults() -> dict[str, Any]:
    """The default of each key of a ``[[connections]]`` table: the request's are ``SSERequest``'s."""
    return dict(_CONNECTION_DEFAULTS)


def defaults_of(cls: type[Any]) -> dict[str, Any]:
    """The default of each field of the dataclass ``cls`` (a fresh one from a factory: a dict);
    ``REQUIRED`` for a field without one."""
    return {
        spec.name: spec.default_factory() if spec.default_factory is not dataclasses.MISSING
        else REQUIRED if spec.default is dataclasses.MISSING else spec.default
        for spec in dataclasses.fields(cls)
    }


_CONNECTION_DEFAULTS = {**defaults_of(SSERequest), **defaults_of(ConnectionConfig)}


# -- the document -------------------------------------------------------------------------------


def _config(document: dict[str, Any], path: Path, known_plugins: Collection[str] | None) -> Config:
    TableReader(document, "").check_keys(names_of(""))
    base = path.absolute().parent
    runner = _runner(table(document.get("runner", {}), "runner", "a [runner] table"), base, known_plugins)
    sinks = None if known_plugins is None else {*known_plugins, *runner.modules} - set(runner.disable)
    context = Context(base, plugins=sinks, disabled=runner.disable, errors=runner.errors)
    connections = _connections(document.get("connections"), context)
    tables = table(document.get("plugins", {}), "plugins", "[plugins.NAME] tables")
    known = None if known_plugins is None else {*known_plugins, *runner.modules}
    return Config(path=path, runner=runner, connections=connections, plugins=_plugin_tables(tables, known))


def _runner(values: dict[str, Any], base: Path, known_plugins: Collection[str] | None) -> RunnerConfig:
    read = TableReader(values, "runner")
    read.check_keys(names_of("runner"))
    defaults = defaults_of(RunnerConfig)
    own = read_keys(read, keys_of("runner"), defaults, Context(base))
    plugins = TableReader(
        table(values.get("plugins", {}), "runner.plugins", "plugins = { disable = [...] }"), "runner.plugins"
    )
    plugins.check_keys(names_of("runner.plugins"))
    modules = read_keys(plugins, (key("runner.plugins.modules"),), defaults, Context(base))["modules"]
    known = None if known_plugins is None else {*known_plugins, *modules}  # local modules are plugins too
    return RunnerConfig(
        **own,
        **read_keys(plugins, (key("runner.plugins.disable"),), defaults, Context(base, plugins=known)),
        modules=modules,
        errors=read_errors(values.get("errors", {}), "runner.errors", defaults["errors"]),
    )


def _plugin_tables(tables: dict[str, Any], known_plugins: Collection[str] | None) -> dict[str, dict[str, Any]]:
    for name, value in tables.items():
        path = join_key("plugins", name)
        if name == "disable":
            fail(path, "disabling plugins belongs under [runner]: write plugins = { disable = [...] } there")
        if known_plugins is not None and name not in known_plugins:
            fail(path, unknown_plugin(name, known_plugins))
        table(value, path, f"a [plugins.{name}] table")
    # the same values; a password written in one shows in no repr (a trace, an error)
    return {name: protect_settings(value) for name, value in tables.items()}


def _connections(value: Any, context: Context) -> tuple[ConnectionConfig, ...]:
    if value is None or value == []:
        fail("connections", "no connections configured; add a [[connections]] table with an id and a url")
    if not isinstance(value, list):
        fail("connections", f"expected an array of tables, got {show(value)}; write [[connections]] tables")
    seen: dict[str, int] = {}
    connections = []
    for index, item in enumerate(value):
        path = f"connections[{index}]"
        connection = _connection(table(item, path, "a [[connections]] table"), path, context)
        if connection.id in seen:
            fail(
                f"{path}.id",
                f"duplicate id {connection.id!r}: connections[{seen[connection.id]}] and {path} both use it; "
                "give every connection its own id",
            )
        seen[connection.id] = index
        connections.append(connection)
    return tuple(connections)


def _connection(values: dict[str, Any], path: str, context: Context) -> ConnectionConfig:
    """One connection: its id, then the request keys, which ``SSERequest`` checks (its messages, the
    connection's keys), then the route keys."""
    read = TableReader(values, path)
    read.check_keys(names_of("connections[]"))
    defaults = connection_defaults()
    connection_id = read_keys(read, (_ID,), defaults, context)
    try:
        request = SSERequest(**read_keys(read, _REQUEST_SPEC, defaults, context))
    except RequestFieldError as exc:
        raise read.error(exc.field, exc.message) from None
    return ConnectionConfig(**connection_id, request=request, **read_keys(read, _ROUTE_SPEC, defaults, context))


_ID = key("connections[].id")
_REQUEST_SPEC = tuple(spec for spec in keys_of("connections[]") if spec.name in _REQUEST_FIELDS)
_ROUTE_SPEC = tuple(spec for spec in keys_of("connections[]") if spec.name not in _REQUEST_FIELDS and spec is not _ID)
