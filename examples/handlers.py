"""Local hook implementations for the runner: count events per connection, print a summary at exit.

A module like this one is not an installed distribution, so it has no entry point: name it in
the runner's config, and the runner imports it (the config file's directory is on the path) and
registers it under that name, its handle as an entry point name is for installed plugins::

    [runner]
    plugins = { modules = ["handlers"] }

In library use, register it yourself::

    import handlers
    from sseplug import SSEClient
    from sseplug.plugins import create_plugin_manager

    pm = create_plugin_manager(extra=[("handlers", handlers)])  # or pm.register(handlers, "handlers")
    with SSEClient(plugin_manager=pm) as client:
        ...                                  # the summary is printed when the client shuts down

It only counts, so it says it is not an event sink (``sseplug_sink = False``): the runner keeps
printing events with its stdout sink.
``sseplug_handle_event`` runs for every event before it is checkpointed, and an exception there
stops the connection (the event is redelivered after a restart), so these handlers never raise.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import TYPE_CHECKING

from sseplug import SSEResponse, hookimpl

if TYPE_CHECKING:
    from sseplug.connection import Connection

sseplug_sink = False  # it stores no events: the runner's stdout sink stays

events_per_connection: Counter[str] = Counter()
responses_per_connection: Counter[str] = Counter()


@hookimpl
def sseplug_configure() -> None:
    """Start counting afresh for each client or runner."""
    events_per_connection.clear()
    responses_per_connection.clear()


@hookimpl
def sseplug_connection_opened(connection: Connection) -> None:
    """Count accepted event-stream responses: every one after the first is a reconnect."""
    responses_per_connection[connection.id] += 1


@hookimpl
def sseplug_handle_event(event: SSEResponse, connection: Connection) -> None:
    """Count the event; nothing here can raise."""
    events_per_connection[connection.id] += 1


@hookimpl
def sseplug_unconfigure() -> None:
    """Print one line per connection on stderr (stdout is where the stdout sink writes events)."""
    for connection_id in sorted(events_per_connection.keys() | responses_per_connection.keys()):
        events = events_per_connection[connection_id]
        reconnects = max(responses_per_connection[connection_id] - 1, 0)
        print(f"{connection_id}: {events} events, {reconnects} reconnects", file=sys.stderr)
