"""What every runner config key means: the source of the documentation's config reference.

``KEYS`` maps each key, as errors name it (``runner.pool_size``, ``connections[].url``), to its
meaning; the type and default are read from the config classes, not repeated here.
``tests/unit/test_reference.py`` keeps ``KEYS`` equal to the keys the parser accepts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .config import ConnectionConfig, RunnerConfig

__all__ = ["KEYS", "default_of"]

KEYS: dict[str, str] = {
    "runner.pool_size": "Streams consumed at once; a config with more connections is an error, not a wait.",
    "runner.plugins.disable": "Plugin names to leave out (built-in or installed).",
    "runner.plugins.modules": "Local hookimpl modules, imported with the config file's directory on the path.",
    "runner.state_dir": "Where checkpoints and dead letters are kept; relative to the config file.",
    "runner.shutdown_timeout": "Seconds handlers get to finish on SIGTERM or a reload before a stream is killed.",
    "runner.http_listen": "host:port of the /metrics, /health, /ready and /status endpoint (off when absent).",
    "runner.errors.retries": "Redeliveries of an event to a handler that raised on it.",
    "runner.errors.backoff": "Seconds before the first redelivery; doubled before each next one.",
    "runner.errors.action": 'What follows the last failed redelivery: "stop", "skip" or "dead_letter".',
    "connections[].id": "The stream's unique name: its checkpoint key, label and log name.",
    "connections[].url": "The http:// or https:// URL of the event stream.",
    "connections[].method": "The HTTP method (any method name; upper-cased).",
    "connections[].headers": "Request headers; ${VAR} values come from the environment and are redacted.",
    "connections[].body": "The request body: a table or array is sent as JSON, a string as it is.",
    "connections[].retry": "false: never reconnect (the same as reconnect = \"never\").",
    "connections[].max_retries": "Consecutive failures before the stream fails for good.",
    "connections[].read_timeout": "Seconds without a byte before the stream counts as stalled (reconnect).",
    "connections[].head_timeout": "Seconds from connecting to a complete response head (reconnect).",
    "connections[].max_event_size": "Largest line or event, in bytes; a larger one fails the stream.",
    "connections[].reconnect": '"always", "on_error" or "never"; default: always for GET, on_error otherwise.',
    "connections[].resume_url": "Where reconnects go once events were delivered: a GET with Last-Event-ID.",
    "connections[].end_events": "Event types that end the stream cleanly, after being handled.",
    "connections[].end_data": 'Data texts that end the stream cleanly, e.g. ["[DONE]"].',
    "connections[].error_events": "Event types that fail the stream with ServerEventError.",
    "connections[].retry_delay": "Seconds before the first reconnect until the server sends retry:.",
    "connections[].verify": "true, false, or a CA bundle path (relative to the config file).",
    "connections[].cert": "A client certificate path, or [certificate, key] paths.",
    "connections[].sinks": "The plugins that handle this connection's events (default: every sink).",
    "connections[].events": "The event types handled; the others are checkpointed past and counted.",
    "connections[].where": "A JMESPath filter over {data, event, id}; false drops the event.",
    "connections[].errors": "This connection's error policy: retries, backoff, action, overriding [runner.errors].",
    "plugins.NAME": "Each plugin's own table; an installed plugin acts only when its table is present.",
}


def default_of(key: str) -> Any:
    """The default of ``key`` (``dataclasses.MISSING`` when it must be given), from the config classes."""
    table, _, name = key.rpartition(".")
    if table == "runner.plugins":
        return list(getattr(RunnerConfig(), name))
    if table == "runner.errors":
        return getattr(RunnerConfig().errors, name)
    if table == "runner":
        return getattr(RunnerConfig(), name)
    if table == "connections[]":
        spec = {field.name: field for field in dataclasses.fields(ConnectionConfig)}[name]
        if spec.default is not dataclasses.MISSING:
            return spec.default
        if spec.default_factory is not dataclasses.MISSING:
            return spec.default_factory()
        return dataclasses.MISSING
    return dataclasses.MISSING

