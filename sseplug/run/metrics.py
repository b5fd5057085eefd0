"""The runner's HTTP endpoint: Prometheus ``/metrics``, ``/health`` and ``/ready`` (extra ``metrics``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

from gevent.pywsgi import WSGIServer

from ..connection import Connection, ConnectionState
from ..errors import ConfigError

__all__ = ["MetricsServer"]


class MetricsServer:
    """Serves the counters of ``connections()`` on ``(host, port)`` in a gevent WSGI server."""

    def __init__(self, listen: tuple[str, int], connections: Callable[[], Iterable[Connection]]) -> None:
        try:
            from prometheus_client import CollectorRegistry, generate_latest
            from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        except ImportError as error:
            raise ConfigError(
                "http_listen needs prometheus-client; install it with: pip install 'sseplug[metrics]'",
                key="runner.http_listen",
            ) from error
        self._connections = connections
        self._generate = generate_latest
        self._counter, self._gauge = CounterMetricFamily, GaugeMetricFamily
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

    def collect(self) -> Iterator[Any]:
        """The metric families, read from the connections at scrape time."""
        connections = list(self._connections())
        families = {
            "events": self._counter("sseplug_events", "Events delivered to the handlers", labels=["connection"]),
            "reconnects": self._counter("sseplug_reconnects", "Reconnections made", labels=["connection"]),
            "bytes": self._counter("sseplug_bytes", "Bytes read from the stream", labels=["connection"]),
        }
        for connection in connections:
            families["events"].add_metric([connection.id], connection.events_total)
            families["reconnects"].add_metric([connection.id], connection.reconnects_total)
            families["bytes"].add_metric([connection.id], connection.bytes_total)
        yield from families.values()
        states = Counter(connection.state for connection in connections)
        gauge = self._gauge("sseplug_connections", "Connections per state", labels=["state"])
        for state in ConnectionState:
            gauge.add_metric([state.value], states[state])
        yield gauge

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            body, status, kind = self._generate(self._registry), "200 OK", "text/plain; version=0.0.4"
        elif path == "/health":
            body, status, kind = b"ok\n", "200 OK", "text/plain"
        elif path == "/ready":
            ready = any(connection.state is ConnectionState.OPEN for connection in self._connections())
            body, status, kind = (b"ready\n", "200 OK", "text/plain") if ready else (
                b"no stream open\n", "503 Service Unavailable", "text/plain")
        else:
            body, status, kind = b"not found\n", "404 Not Found", "text/plain"
        start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body)))])
        return [body]
