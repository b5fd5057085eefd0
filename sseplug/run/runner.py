"""``sseplug run``: every configured stream in one pool, signals, stats, exit codes."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.lock

from ..client import EventStream, SSEClient
from ..errors import ConfigError
from ..plugins import PluginManager, known_plugin_names
from ..redaction import public_error
from .assembly import EventSinks, default_sinks, keep_one_checkpoint_store, runner_plugins
from .assembly import check_routes, inactive_plugins, keep_stdout_only_without_other_sinks
from .config import Config, ConnectionConfig, load_config
from .metrics import MetricsServer
from .reload import DEFERRED_WARNING, reload_diff
from .statelock import lock_state_dir
from .states import StateCounts
from .streams import StreamControl

# the assembly names that ``sseplug check``, tests and the hookspecs' texts look for here stay importable
__all__ = ["EXIT_FAILED", "EXIT_OK", "Runner", "check_routes", "inactive_plugins", "keep_one_checkpoint_store",
           "keep_stdout_only_without_other_sinks", "runner_plugins"]

log = logging.getLogger("sseplug.run.runner")

EXIT_OK = 0
EXIT_FAILED = 1
STATS_INTERVAL = 10.0


class Runner:
    """Consumes every stream of ``config`` until all ended, or until ``stop()`` (SIGINT/SIGTERM).

    ``run()`` returns 0 when every stream ended cleanly or the runner was stopped, and 1 when a
    stream failed for good (the others keep running until they end).
    """

    def __init__(self, config: Config, *, plugin_manager: PluginManager | None = None) -> None:
        self.config = config
        self.plugins = plugin_manager if plugin_manager is not None else runner_plugins(config)
        self.streams: dict[str, EventStream] = {}
        self.retired: list[EventStream] = []  # streams a reload removed or replaced
        self._client: SSEClient | None = None
        self._reloading = gevent.lock.RLock()  # the set of streams is changing: not over yet
        self._stopped = gevent.event.Event()
        self._crashed: list[BaseException] = []  # what a runner greenlet died of, unexpectedly
        self._events_seen = 0
        self._stats_at = time.monotonic()
        self.control = StreamControl(self)
        self.scheduled = False  # a plugin (sseplug_schedule) decides which streams run here
        self._aborted = False
        self._winding_down: set[str] = set()  # scheduled streams being stopped: not started again yet
        self._by_id: tuple[object, dict[str, ConnectionConfig]] = ((), {})  # (connections, id -> one of them)

    def run(self) -> int:
        """Run until every stream ended or a stop; returns the exit status."""
        runner = self.config.runner
        metrics = None
        handlers = [gevent.signal_handler(sig, self.stop) for sig in (signal.SIGINT, signal.SIGTERM)]
        handlers.append(gevent.signal_handler(signal.SIGHUP, self.reload))
        self.plugins.configure(self.config)  # the client unconfigures it when it shuts down
        keep_one_checkpoint_store(self.plugins)
        lock = None
        if self.plugins.get_plugin("sqlite") is not None and not self.config.dry_run:  # local checkpoints
            lock = lock_state_dir(Path(runner.state_dir), str(self.config.path))
        with SSEClient(plugin_manager=self.plugins, pool_size=runner.pool_size) as client:
            self._client = client
            keep_stdout_only_without_other_sinks(self.plugins, self.config)
            check_routes(self.plugins, self.config)
            if runner.http_listen is not None:
                metrics = MetricsServer(runner.http_listen, lambda: [s.connection for s in self.streams.values()],
                                        control=self.control)
                metrics.start()
                log.info("metrics on http://%s:%d/metrics", *metrics.address)
            self.scheduled = self.plugins.hook.sseplug_schedule(streams=self.control) is True
            if not self.scheduled:
                for connection in self.config.connections:
                    self._start(connection)
            log.info("running %s streams (pool of %d), pid %d; reload the config with: kill -HUP %d",
                     "the scheduled share of %d" % len(self.config.connections) if self.scheduled else len(self.streams),
                     runner.pool_size, os.getpid(), os.getpid())
            stats = self._spawn(self._report_every, STATS_INTERVAL)
            try:
                waiter = self._spawn(self._wait_all if not self.scheduled else self._wait_stopped)
                gevent.wait([waiter, self._stopped], count=1)  # type: ignore[type-var]  # both are waitable
                if self.stopping:
                    self._shutdown(client, runner.shutdown_timeout)
                waiter.kill()
            finally:
                stats.kill()
                for handler in handlers:
                    handler.cancel()
                if metrics is not None:
                    metrics.stop()
                self._report()
        if lock is not None:
            lock.close()
        failed = [stream.connection.id for stream in [*self.retired, *self.streams.values()] if stream.error is not None]
        if failed:
            log.error("exit status %d: %d connection(s) failed for good: %s", EXIT_FAILED, len(failed), failed)
        failed_plugins = [name for name, _ in self.plugins.shutdown_errors]
        if failed_plugins:
            log.error("exit status %d: plugin(s) failed while shutting down: %s", EXIT_FAILED, failed_plugins)
        status = EXIT_FAILED if failed or self._crashed or self._aborted or failed_plugins else EXIT_OK
        log.info("done: exit status %d", status)
        return status

    def _spawn(self, function: Callable[..., None], *args: Any) -> gevent.Greenlet[..., None]:
        """``function`` in a greenlet whose unexpected death is logged and fails the run."""
        greenlet = gevent.spawn(function, *args)
        greenlet.link_exception(self._greenlet_crashed)
        return greenlet

    def _greenlet_crashed(self, greenlet: gevent.Greenlet[..., None]) -> None:
        error = greenlet.exception or RuntimeError("no exception recorded")
        log.error("runner greenlet %s crashed; stopping with a failure", greenlet.name, exc_info=error)
        self._crashed.append(error)
        self.stop()

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for."""
        return bool(self._stopped.is_set())

    def stop(self) -> None:
        """Ask for a graceful stop: reading stops, handlers finish, checkpoints are saved."""
        if not self.stopping:
            log.info("stopping: letting handlers finish and checkpoints save")
            self._stopped.set()

    def abort(self, message: str) -> None:
        """Stop every stream gracefully and exit 1: a plugin found that the runner must not go on."""
        if not self._aborted:
            log.error("%s", message)
            self._aborted = True
        self.stop()

    def start_scheduled(self, connection_id: str) -> bool:
        """Start one stream for the scheduling plugin; False when stopping, unknown or already started."""
        if self.stopping or connection_id in self.streams or connection_id in self._winding_down:
            return False
        with self._reloading:
            if self._by_id[0] is not self.config.connections:  # indexed once per config (thousands of ids)
                self._by_id = (self.config.connections, {c.id: c for c in self.config.connections})
            connection = self._by_id[1].get(connection_id)
            if connection is None:
                return False
            self._start(connection)
            return True

    def stop_scheduled(self, connection_id: str, then: Callable[[], None] | None) -> None:
        """Stop one stream for the scheduling plugin, in the background; then ``then()``."""
        stream = self.streams.pop(connection_id, None)
        if stream is not None:
            self._winding_down.add(connection_id)
            stream.connection.stop()

        def stop() -> None:
            try:
                if stream is not None:
                    if not stream.wait(self.config.runner.shutdown_timeout):
                        log.warning("connection %r did not stop within %.1fs; killing it", connection_id,
                                    self.config.runner.shutdown_timeout)
                        stream.close()
            finally:
                self._winding_down.discard(connection_id)
            if then is not None:
                then()

        self._spawn(stop)

    def _start(self, connection: ConnectionConfig) -> None:
        assert self._client is not None
        request = connection.request_with(on_error=lambda error: self._failed(connection.id, error))
        route = connection.route()
        if route.sinks is None:
            route = dataclasses.replace(route, sinks=default_sinks(self.plugins))
        self.streams[connection.id] = self._client.connect(connection.id, request, iterate=False, route=route)

    def _failed(self, connection_id: str, error: BaseException) -> None:
        """A stream failed for good: say so now, not at shutdown (the message says what to do)."""
        log.error("connection %r failed for good and stopped: %s", connection_id, public_error(error))

    def _wait_all(self) -> None:
        """Until every stream ended, those a reload starts too."""
        while True:
            for stream in list(self.streams.values()):
                stream.wait()
            with self._reloading:
                if all(stream.wait(0) for stream in self.streams.values()):
                    return

    def _wait_stopped(self) -> None:
        """Until a stop: a scheduled runner's share may change at any time, it never is over by itself."""
        self._stopped.wait()

    def reload(self) -> None:
        """Re-read the config file (SIGHUP) and apply its ``[[connections]]`` in the background."""
        if not self.stopping:
            self._spawn(self._reload)

    def _reload(self) -> None:
        """Start the added connections, stop the removed ones gracefully (handlers finish,
        checkpoints saved), restart the changed ones from their checkpoint, and leave the others
        alone (their responses stay open). An invalid file changes nothing."""
        with self._reloading:
            path = self.config.path
            try:
                new = load_config(path, known_plugins={*known_plugin_names(), *self.config.runner.modules})
            except ConfigError as error:
                log.error("reload refused, the running config stays: %s", error)
                return
            diff = reload_diff(self.config, new, EventSinks.of(self.plugins))
            if diff.refused is not None:
                log.error("reload refused, the running config stays: %s", diff.refused)
                return
            if diff.deferred:
                log.warning("%s", DEFERRED_WARNING)
            for cid in diff.to_stop():
                if cid in self.streams:  # a scheduled runner runs only its share
                    self._retire(cid)
            self.config = dataclasses.replace(self.config, connections=new.connections)
            fresh = {connection.id: connection for connection in new.connections}
            for cid in diff.to_start(scheduled=self.scheduled):
                self._start(fresh[cid])
            log.info("reloaded %s: %s", path, diff.summary())

    def _retire(self, connection_id: str) -> None:
        """Stop one stream gracefully, within the shutdown timeout, and keep it for the exit status."""
        assert self._client is not None
        stream = self.streams.pop(connection_id)
        stream.connection.stop()
        if not stream.wait(self.config.runner.shutdown_timeout):
            log.warning("connection %r did not stop within %.1fs; killing it", connection_id,
                        self.config.runner.shutdown_timeout)
        self._client.close(connection_id)
        self.retired.append(stream)

    def _shutdown(self, client: SSEClient, timeout: float) -> None:
        """Two phases: ask every connection to stop, wait up to ``timeout``, then kill the rest."""
        streams = list(self.streams.values())  # a scheduling plugin may hand streams over meanwhile
        for stream in streams:
            stream.connection.stop()
        deadline = time.monotonic() + timeout
        for stream in streams:
            if not stream.wait(max(0.0, deadline - time.monotonic())):
                log.warning("connection %r did not stop within %.1fs; killing it", stream.connection.id, timeout)
        client.close()

    def _report_every(self, interval: float) -> None:
        while True:
            gevent.sleep(interval)
            self._report()

    def _report(self) -> None:
        """One stats line: connections per state and the event rate since the last line."""
        connections = [stream.connection for stream in self.streams.values()]
        seen = sum(connection.events_total for connection in connections)
        now = time.monotonic()
        rate = (seen - self._events_seen) / max(now - self._stats_at, 1e-9)
        self._events_seen, self._stats_at = seen, now
        log.info("stats: %s, %d events, %.1f events/s", StateCounts(connections).summary(), seen, rate)
