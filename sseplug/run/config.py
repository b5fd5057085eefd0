"""Runner config from TOML: ${ENV} expansion, validation, errors keyed 0-based (``connections[0].url``)."""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from ..errors import ConfigError
from ..models import (
    DEFAULT_HEAD_TIMEOUT,
    DEFAULT_MAX_EVENT_SIZE,
    DEFAULT_READ_TIMEOUT,
    OnData,
    OnDone,
    OnError,
    SSERequest,
)
from ..redaction import Secret, secret_headers

__all__ = ["Config", "ConnectionConfig", "RunnerConfig", "load_config", "parse_config"]

_TOP_KEYS = ("runner", "connections", "plugins")
_RUNNER_KEYS = ("pool_size", "plugins", "state_dir", "shutdown_timeout", "http_listen")
_RUNNER_PLUGINS_KEYS = ("disable", "modules")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_CONNECTION_KEYS = (
    "id", "url", "method", "headers", "body", "retry", "max_retries", "read_timeout", "head_timeout",
    "max_event_size",
)
_ID = re.compile(r"[A-Za-z0-9_.:-]+")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_REFERENCE = re.compile(r"\$(?:(\$)|\{([^}]*)(\}?))")
_REFERENCE_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:[-?])(.*))?", re.DOTALL)
_HEADERS_KEY = re.compile(r"connections\[[0-9]+\]\.headers(?![A-Za-z0-9_-])")  # the table and its values
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")
_TOML_TYPES = {bool: "boolean", int: "integer", float: "float", str: "string"}
_REFERENCE_FORMS = "write ${NAME}, ${NAME:-default} or ${NAME:?message}, and $$ for a literal $"


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """One validated ``[[connections]]`` table."""

    id: str
    url: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    retry: bool = True
    max_retries: int = 5
    read_timeout: float | None = DEFAULT_READ_TIMEOUT
    head_timeout: float | None = DEFAULT_HEAD_TIMEOUT
    max_event_size: int = DEFAULT_MAX_EVENT_SIZE

    def request(
        self, *, on_data: OnData | None = None, on_error: OnError | None = None, on_done: OnDone | None = None
    ) -> SSERequest:
        """The ``SSERequest`` this connection makes, with the given callbacks (no last event id)."""
        return SSERequest(
            url=self.url,
            method=self.method,
            headers=self.headers,
            body=self.body,
            on_data=on_data,
            on_error=on_error,
            on_done=on_done,
            retry=self.retry,
            max_retries=self.max_retries,
            read_timeout=self.read_timeout,
            head_timeout=self.head_timeout,
            max_event_size=self.max_event_size,
        )


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    """The validated ``[runner]`` table; ``state_dir`` is absolute when loaded from a file."""

    pool_size: int = 1000
    disable: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()  # local hookimpl modules, importable from the config's directory
    state_dir: Path = Path(".sseplug")
    shutdown_timeout: float = 10.0
    http_listen: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class Config:
    """A whole validated config file; ``plugins`` maps each ``[plugins.NAME]`` table to its content."""

    path: Path
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    connections: tuple[ConnectionConfig, ...] = ()
    plugins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def plugin_config(self, name: str) -> Mapping[str, Any]:
        """The ``[plugins.NAME]`` table of plugin ``name``, or ``{}`` when the file has none."""
        return self.plugins.get(name, {})

    def plugin_error(self, name: str, key: str, message: str) -> ConfigError:
        """The error for ``key`` of ``[plugins.NAME]`` in this file, for plugins checking their table."""
        return ConfigError(message, key=f"plugins.{name}.{key}", path=str(self.path))

    def check_plugin_keys(self, name: str, known: Collection[str]) -> None:
        """Raise ``plugin_error`` for the first key of ``[plugins.NAME]`` that is not in ``known``."""
        for key in self.plugin_config(name):
            if key not in known:
                raise self.plugin_error(
                    name, key, f"unknown key {key!r} in [plugins.{name}]; known keys: {', '.join(known)}"
                )


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
        document = _expand_tree(document, "", os.environ if environ is None else environ)
        return _config(document, Path(path), known_plugins)
    except _Invalid as exc:
        raise ConfigError(exc.message, key=exc.key, path=os.fspath(path)) from None


class _Invalid(Exception):
    """A problem at ``key``; ``parse_config`` turns it into a ``ConfigError`` naming the file."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(key, message)
        self.key = key
        self.message = message


def _fail(key: str, message: str) -> NoReturn:
    raise _Invalid(key, message)


# -- ${ENV} expansion ---------------------------------------------------------------------------


def _expand_tree(value: Any, key: str, environ: Mapping[str, str]) -> Any:
    """``value`` with every string inside it expanded; keys are left alone."""
    if isinstance(value, str):
        return _expand(value, key, environ)
    if isinstance(value, dict):
        return {name: _expand_tree(item, _join(key, name), environ) for name, item in value.items()}
    if isinstance(value, list):
        return [_expand_tree(item, f"{key}[{index}]", environ) for index, item in enumerate(value)]
    return value


def _expand(text: str, key: str, environ: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        inner, closed = match.group(2), match.group(3)
        reference = _REFERENCE_BODY.fullmatch(inner)
        if not closed or reference is None:
            shown = f"${{{inner}}}" if closed else f"${{{inner}"
            _fail(key, f"malformed environment reference {shown!r}; {_REFERENCE_FORMS}")
        name, operator, argument = reference.groups()
        value = environ.get(name)
        if operator == ":-":
            return value or argument
        if operator == ":?":
            if not value:
                _fail(key, f"environment variable {name} is unset or empty: {argument or 'it is required'}")
            return value
        if value is None:
            _fail(
                key,
                f"environment variable {name} is not set; set it, "
                f"or write ${{{name}:-default}} to fall back to a default",
            )
        return value

    if "$" not in text:
        return text
    expanded = _REFERENCE.sub(replace, text)
    if _HEADERS_KEY.match(key) and any(match.group(2) is not None for match in _REFERENCE.finditer(text)):
        return Secret(expanded)  # a header taken from the environment is a credential, as a rule
    return expanded


# -- the document -------------------------------------------------------------------------------


def _config(document: dict[str, Any], path: Path, known_plugins: Collection[str] | None) -> Config:
    _check_keys(document, _TOP_KEYS, "", "at the top level")
    runner = _runner(_table(document.get("runner", {}), "runner", "a [runner] table"), path, known_plugins)
    connections = _connections(document.get("connections"))
    tables = _table(document.get("plugins", {}), "plugins", "[plugins.NAME] tables")
    known = None if known_plugins is None else {*known_plugins, *runner.modules}
    plugins = _plugin_tables(tables, known)
    return Config(path=path, runner=runner, connections=connections, plugins=plugins)


def _runner(table: dict[str, Any], path: Path, known_plugins: Collection[str] | None) -> RunnerConfig:
    _check_keys(table, _RUNNER_KEYS, "runner", "in [runner]")
    defaults = RunnerConfig()
    pool_size = _integer(table, "pool_size", "runner", defaults.pool_size, minimum=1)
    plugins = _table(table.get("plugins", {}), "runner.plugins", "plugins = { disable = [...] }")
    _check_keys(plugins, _RUNNER_PLUGINS_KEYS, "runner.plugins", "in runner.plugins")
    modules = _module_names(plugins.get("modules", []), "runner.plugins.modules")
    known = None if known_plugins is None else {*known_plugins, *modules}
    disable = _plugin_names(plugins.get("disable", []), "runner.plugins.disable", known)
    state_dir = Path(_string(table, "state_dir", "runner", str(defaults.state_dir), example='".sseplug"'))
    if not state_dir.is_absolute():
        state_dir = path.absolute().parent / state_dir
    timeout = table.get("shutdown_timeout", defaults.shutdown_timeout)
    shutdown_timeout = _seconds(timeout, "runner.shutdown_timeout")
    http_listen = None
    if "http_listen" in table:
        http_listen = _listen(_string(table, "http_listen", "runner", "", example='"127.0.0.1:9100"'))
    return RunnerConfig(
        pool_size=pool_size,
        disable=disable,
        modules=modules,
        state_dir=state_dir,
        shutdown_timeout=shutdown_timeout,
        http_listen=http_listen,
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
        key = _join("plugins", name)
        if name == "disable":
            _fail(key, "disabling plugins belongs under [runner]: write plugins = { disable = [...] } there")
        _check_plugin(name, key, known_plugins)
        _table(table, key, f"a [plugins.{name}] table")
    return tables


def _check_plugin(name: str, key: str, known_plugins: Collection[str] | None) -> None:
    if known_plugins is not None and name not in known_plugins:
        known = ", ".join(sorted(known_plugins)) or "(none)"
        _fail(key, f"unknown plugin {name!r}{_did_you_mean(name, known_plugins)}; known plugins: {known}")


def _connections(value: Any) -> tuple[ConnectionConfig, ...]:
    if value is None or value == []:
        _fail("connections", "no connections configured; add a [[connections]] table with an id and a url")
    if not isinstance(value, list):
        _fail("connections", f"expected an array of tables, got {_show(value)}; write [[connections]] tables")
    seen: dict[str, int] = {}
    connections = []
    for index, table in enumerate(value):
        key = f"connections[{index}]"
        connection = _connection(_table(table, key, "a [[connections]] table"), key)
        if connection.id in seen:
            _fail(
                f"{key}.id",
                f"duplicate id {connection.id!r}: connections[{seen[connection.id]}] and {key} both use it; "
                "give every connection its own id",
            )
        seen[connection.id] = index
        connections.append(connection)
    return tuple(connections)


def _connection(table: dict[str, Any], key: str) -> ConnectionConfig:
    _check_keys(table, _CONNECTION_KEYS, key, f"in {key}")
    defaults = ConnectionConfig(id="", url="")
    for required in ("id", "url"):
        if required not in table:
            _fail(f"{key}.{required}", f"missing key {required!r}; every connection needs an id and a url")
    connection_id = _string(table, "id", key, "", example='"orders"')
    if not _ID.fullmatch(connection_id):
        _fail(
            f"{key}.id",
            f"invalid id {connection_id!r}: use letters, digits, '_', '.', ':' or '-' only; e.g. \"orders\"",
        )
    url = _string(table, "url", key, "", example='"https://example.test/stream"')
    method = _method(_string(table, "method", key, defaults.method, example='"POST"'), f"{key}.method")
    headers = _headers(table.get("headers", {}), f"{key}.headers")
    body = _body(table.get("body"), method, f"{key}.body")
    retry = table.get("retry", defaults.retry)
    if not isinstance(retry, bool):
        _fail(f"{key}.retry", f"expected true or false, got {_show(retry)}")
    timeouts = {
        name: _seconds(table[name], f"{key}.{name}") if name in table else getattr(defaults, name)
        for name in ("read_timeout", "head_timeout")
    }
    connection = ConnectionConfig(
        id=connection_id,
        url=url,
        method=method,
        headers=headers,
        body=body,
        retry=retry,
        max_retries=_integer(table, "max_retries", key, defaults.max_retries, minimum=0),
        **timeouts,
        max_event_size=_integer(table, "max_event_size", key, defaults.max_event_size, minimum=1),
    )
    try:
        connection.request()  # the final word, so config and library never disagree
    except ValueError as exc:
        name, _, message = str(exc).partition(": ")
        _fail(f"{key}.{name}" if name in _CONNECTION_KEYS else key, message or str(exc))
    return connection


def _method(value: str, key: str) -> str:
    method = value.upper()
    if method not in ("GET", "POST"):
        _fail(key, f"unsupported method {value!r}; use \"GET\" or \"POST\"")
    return method


def _headers(value: Any, key: str) -> dict[str, str]:
    table = _table(value, key, 'a table of strings, e.g. headers = { Authorization = "Bearer ${TOKEN}" }')
    for name, item in table.items():
        if not isinstance(item, str):
            _fail(_join(key, name), f"expected a string header value, got {_show(item)}; quote it")
    return secret_headers(table)


def _body(value: Any, method: str, key: str) -> Any:
    if value is None:
        return None
    if method == "GET":
        _fail(key, 'a GET request carries no body; set method = "POST" to send it, or remove body')
    if not isinstance(value, (dict, list, str)):
        _fail(key, f"expected a table or array (sent as JSON) or a string (sent as text), got {_show(value)}")
    _check_json(value, key)
    return value


def _check_json(value: Any, key: str) -> None:
    if isinstance(value, dict):
        for name, item in value.items():
            _check_json(item, _join(key, name))
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


# -- small typed readers -------------------------------------------------------------------------


def _check_keys(table: Mapping[str, Any], known: tuple[str, ...], prefix: str, where: str) -> None:
    for name in table:
        if name not in known:
            _fail(
                _join(prefix, name),
                f"unknown key {name!r} {where}{_did_you_mean(name, known)}; known keys: {', '.join(known)}",
            )


def _table(value: Any, key: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(key, f"expected a table, got {_show(value)}; write {what}")
    return value


def _string(table: Mapping[str, Any], name: str, prefix: str, default: str, *, example: str) -> str:
    value = table.get(name, default)
    if not isinstance(value, str):
        _fail(f"{prefix}.{name}", f"expected a string, got {_show(value)}; e.g. {name} = {example}")
    return value


def _integer(table: Mapping[str, Any], name: str, prefix: str, default: int, *, minimum: int) -> int:
    value = table.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        message = f"expected an integer >= {minimum}, got {_show(value)}; e.g. {name} = {default}"
        _fail(f"{prefix}.{name}", message)
    return value


def _seconds(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        name = key.rpartition(".")[2]
        _fail(key, f"expected a number of seconds > 0, got {_show(value)}; e.g. {name} = 10")
    return float(value)


def _join(prefix: str, name: str) -> str:
    shown = name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)
    return f"{prefix}.{shown}" if prefix else shown


def _show(value: Any) -> str:
    if isinstance(value, Secret):
        return f"{value!r} (string)"  # a header value from the environment: not in error messages
    if isinstance(value, (dict, list)):
        return "a table" if isinstance(value, dict) else "an array"
    kind = _TOML_TYPES.get(type(value), type(value).__name__)
    shown = json.dumps(value) if isinstance(value, (bool, str)) else str(value)
    return f"{shown} ({kind})"


def _did_you_mean(name: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
