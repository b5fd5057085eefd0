"""The hook specifications of sseplug (pluggy project "sseplug") and the markers plugins use.

Calling convention (pluggy's): hooks are called with keyword arguments only, and an
implementation may accept any subset of a hook's arguments. Implementations run last-registered
first; built-in plugins are marked ``trylast`` so that installed plugins run before them.
``firstresult`` hooks stop at the first implementation returning something other than ``None``.
An exception in an implementation stops the hook and fails the connection with a ``PluginError``
naming the plugin; it is never swallowed.

``connection`` is the ``sseplug.connection.Connection`` of one stream: it has at least ``id``,
``request`` (the ``SSERequest``), ``url``, ``last_event_id``, ``attempt`` (consecutive failures
so far; reset once a response delivered events), ``backoff_step`` (reconnects since the stream
was last healthy, i.e. open for 60 s: what a backoff doubles on) and ``retry_ms`` (the server's
last ``retry:`` value, or ``None``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .connection import Connection
    from .errors import SSEError
    from .models import SSERequest, SSEResponse

PROJECT = "sseplug"

hookspec = pluggy.HookspecMarker(PROJECT)
"""Marks a function in this module as a hook specification."""

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin function as the implementation of the hook of the same name."""


# -- configure ---------------------------------------------------------------------------------


@hookspec(historic=True)
def sseplug_configure(config: Any) -> None:
    """Called once, when a client or runner starts, before any connection opens; a plugin
    registered later gets the call at registration (a historic hook, as pytest's configure).

    ``config`` is the runner's ``sseplug.run.config.Config`` (read your own ``[plugins.NAME]`` table
    with ``config.plugin_config(NAME)``), or ``None`` in plain library use. Results are ignored.
    """


# -- connect -----------------------------------------------------------------------------------


@hookspec
def sseplug_auth_headers(connection: Connection, request: SSERequest) -> Mapping[str, str] | None:
    """Called before every connect and reconnect, so tokens can be refreshed.

    Return headers to add to the request, or ``None``. The results of every plugin are merged
    (the first-run plugin wins a conflict) over the request's own headers.
    """


@hookspec(firstresult=True)
def sseplug_claim(connection: Connection) -> bool | float | None:
    """Called before every connect and reconnect: may this process consume the stream now?

    Return ``True`` (or nothing) to go ahead, ``False`` to ask again in a second, or a number of
    seconds to wait before asking again (the connection is in state ``"standby"`` meanwhile).
    First non-``None`` result wins; when no plugin answers, the claim is granted. Lease plugins
    implement it, and call ``connection.release()`` when they lose a stream they held.
    """


@hookspec(firstresult=True)
def sseplug_checkpoint_load(connection: Connection) -> str | None:
    """Called before the first connect, and again after a released stream was claimed back.

    Return the last event id saved for ``connection.id`` to resume with ``Last-Event-ID``.
    First non-``None`` result wins; when no plugin answers, the request's ``last_event_id`` is
    used (empty by default: no ``Last-Event-ID`` header).
    """


@hookspec
def sseplug_connection_opened(connection: Connection, status: int, headers: Mapping[str, str]) -> None:
    """Called when a response was accepted as an event stream (status 200, right Content-Type).

    Results are ignored.
    """


# -- event -------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def sseplug_deserialize(event: SSEResponse, connection: Connection) -> Any:
    """Called for each event; return the value ``event.data`` should hold instead of its text.

    First non-``None`` result wins; when no plugin answers, ``data`` stays the text. Not called
    at all when no plugin implements it.
    """


@hookspec
def sseplug_handle_event(event: SSEResponse, connection: Connection) -> None:
    """Called for each event, in stream order, by every plugin (sinks, user handlers).

    Runs after ``sseplug_deserialize`` and before the event's id is checkpointed; an exception
    stops the connection and the event is not checkpointed past. Results are ignored.
    """


@hookspec
def sseplug_checkpoint_save(connection: Connection, last_event_id: str) -> None:
    """Called once per batch of events, after every handler returned for all of them (also when
    the id did not change, so sinks can flush here first), and after an id-only block.

    ``last_event_id`` is the id to resume from after a restart. Results are ignored.
    """


# -- failure -----------------------------------------------------------------------------------


@hookspec(firstresult=True)
def sseplug_retry_decision(
    connection: Connection, attempt: int, error: SSEError | None, status: int | None
) -> float | bool | None:
    """Called after a response ended (``error`` is ``None``) or failed with a retryable error.

    ``attempt`` counts consecutive failures, from 1; ``status`` is the HTTP status, if any.
    Base a backoff on ``connection.backoff_step``, not on ``attempt``: a server that closes
    after every event resets ``attempt`` each time. Return the seconds to wait before
    reconnecting (capped at 6 hours), or ``False`` to stop. First non-``None``
    result wins; when no plugin answers, the stream stops. Not called when the request has
    ``retry=False``, for fatal errors, or once ``max_retries`` is exceeded.
    """


@hookspec
def sseplug_connection_closed(connection: Connection, reason: str) -> None:
    """Called whenever a response ends, or a connect fails: ``reason`` says why (``"eof"``,
    ``"204"``, ``"stopped"`` (``stop()``), ``"released"``, or the error).

    Results are ignored.
    """


@hookspec
def sseplug_connection_finished(connection: Connection, error: SSEError | None) -> None:
    """Called once per connection, when it ended for good: ``error`` is ``None`` after a clean
    end (204, ``retry=False``, a retry decision to stop, ``stop()``), else what failed it.

    Results are ignored.
    """


# -- shutdown ----------------------------------------------------------------------------------


@hookspec
def sseplug_unconfigure() -> None:
    """Called once, when the client or runner shuts down, after every connection ended.

    Results are ignored.
    """
