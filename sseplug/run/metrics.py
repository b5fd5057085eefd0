"""The runner's HTTP endpoint: Prometheus ``/metrics``, ``/health``, ``/ready`` and ``/status``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

from gevent.pywsgi import WSGIServer
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..connection import Connection, ConnectionState
from ..redaction import public_error, public_url
from .states import StateCounts
from .streams import StreamControl

__all__ = ["MetricsServer", "status"]

# (metric name, help, ConnectionStats field): one counter per connection each
_COUNTERS = (
    ("sseplug_events", "Events through the handlers (filtered ones too)", "events_total"),
    ("sseplug_bytes", "Bytes read from the stream", "bytes_total"),
    ("sseplug_reconnects", "Reconnections made", "reconnects_total"),
    ("sseplug_handler_errors", "Exceptions raised by event handlers, each redelivery counted", "handler_errors"),
    ("sseplug_dead_letters", "Events stored as dead letters", "dead_letters"),
    ("sseplug_skipped_events", "Events a handler kept failing on, skipped", "events_skipped"),
    ("sseplug_filtered_events", "Events left out by the events and where filters", "events_filtered"),
)


def status(connection: Connection, control: StreamControl | None = None) -> dict[str, Any]:
    """What ``/status`` says about one connection (no credential: the URL is ``public_url``'s);
    ``lease`` (whether this runner holds the stream's lease) when a scheduling plugin tells."""
    error, stats = connection.last_error, connection.stats
    lease = None if control is None or control.lease is None else control.lease(connection.id)
    return {
        "id": connection.id,
        "state": str(connection.state),
        "url": public_url(connection.url),
        "last_event_id": connection.last_event_id,
        "last_event_time": stats.last_event_at,
        "events": stats.events_total,
        "bytes": stats.bytes_total,
        "reconnects": stats.reconnects_total,
        "handler_errors": stats.handler_errors,
        "dead_letters": stats.dead_letters,
        "skipped": stats.events_skipped,
        "filtered": stats.events_filtered,
        "last_error": None if error is None else f"{type(error).__name__}: {public_error(error)}",
        "lease": lease,
    }


class MetricsServer(Collector):  # a Protocol since prometheus-client 0.24, an ABC before
    """Serves the counters of ``connections()`` on ``(host, port)`` in a gevent WSGI server."""

    def __init__(self, listen: tuple[str, int], connections: Callable[[], Iterable[Connection]],
                 control: StreamControl | None = None) -> None:
        self._connections = connections
        self._control = control
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)  # a collector: has collect()
        self.server = WSGIServer(listen, self._app, log=None, error_log=None)

    def start(self) -> None:
        """Start serving in the background."""
        self.server.start()

    def stop(self) -> None:
        """Stop serving."""
        self.server.stop(timeout=1)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        return cast(tuple[str, int], self.server.address)  # bound to (host, port), never a Unix socket

    def collect(self) -> Iterator[Metric]:
        """The metric families, read from the connections at scrape time (label values are
        escaped by prometheus_client: connection ids are user text)."""
        tally = StateCounts(self._connections())
        connections = [connection for connection, _ in tally.entries]
        for name, text, attribute in _COUNTERS:
            family = CounterMetricFamily(name, text, labels=["connection"])
            for connection in connections:
                family.add_metric([connection.id], getattr(connection.stats, attribute))
            yield family
        last = GaugeMetricFamily("sseplug_last_event_timestamp_seconds", "When the last event was handled (Unix time)",
                                 labels=["connection"])
        state = GaugeMetricFamily("sseplug_connection_state", "1 for the state each connection is in",
                                  labels=["connection", "state"])
        totals = GaugeMetricFamily("sseplug_connections", "Connections per state", labels=["state"])
        for connection, current in tally.entries:
            if connection.stats.last_event_at is not None:
                last.add_metric([connection.id], connection.stats.last_event_at)
            for value in ConnectionState:
                state.add_metric([connection.id, value.value], float(current is value))
        for value, count in tally.per_state().items():
            totals.add_metric([value.value], count)
        yield from (last, state, totals)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            body, status_line, kind = generate_latest(self._registry), "200 OK", "text/plain; version=0.0.4"
        elif path == "/health":  # answering at all shows the hub turns
            body, status_line, kind = b"ok\n", "200 OK", "text/plain"
        elif path == "/ready":
            waiting = [
                {"id": c.id, "state": str(state), "error": None if c.error is None else public_error(c.error)}
                for c, state in StateCounts(self._connections()).not_ready()
            ]
            reason = None if self._control is None else self._control.unready()
            ready = not waiting and reason is None
            document: dict[str, Any] = {"ready": ready, "waiting": waiting}
            if reason is not None:
                document["reason"] = reason
            body = json.dumps(document).encode() + b"\n"
            status_line, kind = ("200 OK" if ready else "503 Service Unavailable"), "application/json"
        elif path == "/status":
            document = {"connections": [status(connection, self._control) for connection in self._connections()]}
            body, status_line, kind = json.dumps(document).encode() + b"\n", "200 OK", "application/json"
        else:
            body, status_line, kind = b"not found\n", "404 Not Found", "text/plain"
        start_response(status_line, [("Content-Type", kind), ("Content-Length", str(len(body)))])
        return [body]
