"""sseplug-skeleton: a minimal sseplug plugin to copy when starting your own.

To adapt it: rename this module and the distribution in ``setup.py``, pick the entry point name
that becomes your plugin's handle (``runner.plugins.disable``, ``[plugins.NAME]``), then keep only
the hooks you need. Every hook is documented in ``sseplug.hookspecs``; an implementation may take
any subset of the hook's arguments, and one that returns ``None`` leaves the decision to the
other plugins and the built-ins. The plugin implements four hooks:

- ``sseplug_auth_headers``: ``Authorization: Bearer $SKELETON_TOKEN``, read on every connect so a
  refreshed token is used on the next reconnect; no header while the variable is unset;
- ``sseplug_deserialize``: the data of ``csv`` events as a list of fields (other events are left
  to the built-in JSON decoding);
- ``sseplug_handle_event``: logs every event on the ``sseplug_skeleton`` logger at INFO;
- ``sseplug_retry_decision``: no reconnect after a stream whose last event was of type ``end``
  (the server said it is finished); otherwise the built-in policy decides.

In ``sseplug run`` it stays inert until the config has a ``[plugins.skeleton]`` table (it does not
set ``sseplug_always_on``): installing it changes no existing config.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from sseplug import SSEResponse, hookimpl

if TYPE_CHECKING:
    from sseplug.connection import Connection

__all__ = [
    "TOKEN_VARIABLE",
    "sseplug_sink",
    "sseplug_auth_headers",
    "sseplug_deserialize",
    "sseplug_handle_event",
    "sseplug_retry_decision",
]

TOKEN_VARIABLE = "SKELETON_TOKEN"
"""The environment variable holding the bearer token."""

sseplug_sink = False
"""It logs events without storing them: the runner keeps its stdout sink (see sseplug.hookspecs)."""

log = logging.getLogger("sseplug_skeleton")

_finished: set[str] = set()  # ids of connections whose last event was an "end" event


@hookimpl
def sseplug_auth_headers() -> dict[str, str] | None:
    """A bearer token from the environment, looked up per connect so a rotated one is picked up."""
    token = os.environ.get(TOKEN_VARIABLE)
    return {"Authorization": f"Bearer {token}"} if token else None


@hookimpl
def sseplug_deserialize(event: SSEResponse) -> list[str] | None:
    """The fields of a ``csv`` event; ``None`` for any other type, so the next plugin decides."""
    if event.event != "csv":
        return None
    return str(event.data).split(",")


@hookimpl
def sseplug_handle_event(event: SSEResponse, connection: Connection) -> None:
    """Log each event; lazy %-formatting keeps this cheap when INFO is off."""
    log.info("connection %s: event id=%r type=%r", connection.id, event.id, event.event)
    if event.event == "end":
        _finished.add(connection.id)
    else:
        _finished.discard(connection.id)


@hookimpl
def sseplug_retry_decision(connection: Connection, error: object) -> bool | None:
    """``False`` (stop) when the stream ended cleanly right after an ``end`` event, else no answer."""
    if error is None and connection.id in _finished:
        return False
    return None
