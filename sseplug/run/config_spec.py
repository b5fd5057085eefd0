"""One spec per runner config key: how its TOML value is read and checked (its kind), what it means,
an example. The parser (``config``), its error messages and the config reference
(``reference``) all come from ``SPEC``; defaults come from the config classes, and the request keys'
types, defaults and value rules from ``SSERequest``, which checks them once the TOML types are read.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from ..models import RECONNECT_MODES
from ..route import ERROR_ACTIONS, ErrorPolicy
from .config_kinds import (
    BODY,
    BOOLEAN,
    CERT,
    DIRECTORY,
    HEADERS,
    IDENTIFIER,
    LISTEN,
    NUMBER,
    SINKS,
    STRINGS,
    TEXT,
    VERIFY,
    WHERE,
    Context,
    Key,
    Kind,
    choice,
    integer,
    names,
    seconds,
)
from .config_reader import TableReader, table
from .environment import join_key

__all__ = ["PLUGIN_TABLE", "POLICY", "SPEC", "key", "keys_of", "names_of", "read_errors", "read_keys"]


def _policy(read: TableReader, key: Key, default: Any, context: Context) -> ErrorPolicy:
    """An errors table: each key given overrides the runner's (``[runner.errors]``)."""
    if key.name not in read.table:
        return context.errors
    return read_errors(read.table[key.name], join_key(read.prefix, key.name), context.errors)


POLICY = Kind("a table: retries, backoff, action", _policy)
PLUGIN_TABLE = Kind("a table, which the plugin reads (Config.plugin_settings)", lambda *_: None)


# -- the keys ----------------------------------------------------------------------------------------

_URL = '"https://example.test/stream"'

SPEC: tuple[Key, ...] = (
    Key("runner.pool_size", integer(minimum=1),
        "Streams consumed at once; a config with more connections is an error, not a wait."),
    Key("runner.plugins.disable", names("plugin name", plugins=True),
        "Plugin names to leave out (built-in or installed).", '["stdout"]'),
    Key("runner.plugins.modules", names("module name", re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")),
        "Local hookimpl modules, imported with the config file's directory on the path.", '["handlers"]'),
    Key("runner.state_dir", DIRECTORY, "Where checkpoints and dead letters are kept; relative to the config file."),
    Key("runner.shutdown_timeout", seconds(),
        "Seconds handlers get to finish on SIGTERM or a reload before a stream is killed."),
    Key("runner.http_listen", LISTEN,
        "host:port of the /metrics, /health, /ready and /status endpoint (off when absent).", '"127.0.0.1:9100"'),
    Key("runner.errors.retries", integer(minimum=0), "Redeliveries of an event to a handler that raised on it."),
    Key("runner.errors.backoff", seconds(minimum=0),
        "Seconds before the first redelivery; doubled before each next one.", "0.5"),
    Key("runner.errors.action", choice(ERROR_ACTIONS),
        'What follows the last failed redelivery: "stop", "skip" or "dead_letter".'),
    Key("connections[].id", IDENTIFIER, "The stream's unique name: its checkpoint key, label and log name.",
        '"orders"'),
    # the request keys: their types, defaults and value rules are SSERequest's
    Key("connections[].url", TEXT, "The http:// or https:// URL of the event stream.", _URL),
    Key("connections[].method", TEXT, "The HTTP method (any method name; upper-cased)."),
    Key("connections[].headers", HEADERS,
        "Request headers; ${VAR} values come from the environment and are redacted.",
        '{ Authorization = "Bearer ${TOKEN}" }'),
    Key("connections[].body", BODY, "The request body: a table or array is sent as JSON, a string as it is.",
        '{ topic = "orders" }'),
    Key("connections[].retry", BOOLEAN, "false: never reconnect (the same as reconnect = \"never\")."),
    Key("connections[].max_retries", integer(), "Consecutive failures before the stream fails for good."),
    Key("connections[].read_timeout", NUMBER,
        "Seconds without a byte before the stream counts as stalled (reconnect)."),
    Key("connections[].head_timeout", NUMBER, "Seconds from connecting to a complete response head (reconnect)."),
    Key("connections[].max_event_size", integer(), "Largest line or event, in bytes; a larger one fails the stream."),
    Key("connections[].reconnect", choice(tuple(mode for mode in RECONNECT_MODES if mode)),
        '"always", "on_error" or "never"; default: always for GET, on_error otherwise.'),
    Key("connections[].resume_url", TEXT,
        "Where reconnects go once events were delivered: a GET with Last-Event-ID.", _URL),
    Key("connections[].end_events", STRINGS, "Event types that end the stream cleanly, after being handled.",
        '["end"]'),
    Key("connections[].end_data", STRINGS, 'Data texts that end the stream cleanly, e.g. ["[DONE]"].', '["[DONE]"]'),
    Key("connections[].error_events", STRINGS, "Event types that fail the stream with ServerEventError.",
        '["error"]'),
    Key("connections[].retry_delay", NUMBER, "Seconds before the first reconnect until the server sends retry:."),
    Key("connections[].verify", VERIFY, "true, false, or a CA bundle path (relative to the config file).",
        '"ca.pem"'),
    Key("connections[].cert", CERT, "A client certificate path, or [certificate, key] paths.",
        '["c.pem", "k.pem"]'),
    # the route keys
    Key("connections[].sinks", SINKS, "The plugins that handle this connection's events (default: every sink).",
        '["jsonl"]'),
    Key("connections[].events", STRINGS, "The event types handled; the others are checkpointed past and counted.",
        '["trade", "quote"]'),
    Key("connections[].where", WHERE, "A JMESPath filter over {data, event, id}; false drops the event.",
        "\"data.meta.domain != 'canary'\""),
    Key("connections[].errors", POLICY,
        "This connection's error policy: retries, backoff, action, overriding [runner.errors].",
        '{ retries = 3, action = "skip" }'),
    Key("plugins.NAME", PLUGIN_TABLE, "Each plugin's own table; an installed plugin acts only when its table is present."),
)

_BY_PATH = {spec.path: spec for spec in SPEC}


def key(path: str) -> Key:
    """The spec of the key at ``path`` (``runner.pool_size``)."""
    return _BY_PATH[path]


@functools.cache
def keys_of(table: str) -> tuple[Key, ...]:
    """The keys of ``table`` (``runner``, ``runner.errors``, ``connections[]``) that hold values, in order."""
    return tuple(spec for spec in SPEC if spec.table == table)


@functools.cache
def names_of(table: str) -> tuple[str, ...]:
    """The names ``table`` accepts, in order: its keys and its tables (``runner``: ``plugins``, ``errors``)."""
    prefix = f"{table}." if table else ""
    names = (spec.path[len(prefix):].partition(".")[0] for spec in SPEC if spec.path.startswith(prefix))
    return tuple(dict.fromkeys(name.removesuffix("[]") for name in names))


def read_keys(read: TableReader, keys: tuple[Key, ...], defaults: Mapping[str, Any], context: Context) -> dict[str, Any]:
    """The values of ``keys`` in ``read``'s table, each else its default in ``defaults``, in order."""
    return {spec.name: spec.kind.read(read, spec, defaults[spec.name], context) for spec in keys}


def read_errors(value: Any, path: str, defaults: ErrorPolicy) -> ErrorPolicy:
    """An errors table (``[runner.errors]``, a connection's ``errors``): each key given overrides the
    one of ``defaults``."""
    read = TableReader(table(value, path, 'a table, e.g. errors = { retries = 3, action = "skip" }'), path)
    read.check_keys(names_of("runner.errors"))
    keys = keys_of("runner.errors")
    return ErrorPolicy(**read_keys(read, keys, {spec.name: getattr(defaults, spec.name) for spec in keys}, Context()))
