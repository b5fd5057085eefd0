"""``sseplug run``: every configured stream in one pool, signals, stats, exit codes."""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from collections import Counter
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.lock

from ..client import EventStream, SSEClient
from ..connection import ConnectionState as State
from ..errors import ConfigError, PluginError
from ..plugins import BUILTINS, PluginManager, create_plugin_manager, known_plugin_names
from .config import Config, ConnectionConfig, load_config
from ..redaction import public_error
from .metrics import MetricsServer
from .statelock import lock_state_dir
from .streams import StreamControl

__all__ = ["Runner", "EXIT_OK", "EXIT_FAILED"]

log = logging.getLogger("sseplug.run.runner")

EXIT_OK = 0
EXIT_FAILED = 1
STATS_INTERVAL = 10.0


def runner_plugins(config: Config) -> PluginManager:
    """Every built-in plugin, the installed plugins that have a ``[plugins.NAME]`` table in the
    config or set ``sseplug_always_on = True``, and the local ``runner.plugins.modules``
    (imported with the config file's directory on ``sys.path``), minus
    ``runner.plugins.disable``. An installed plugin stays inert until configured: installing a
    package never changes what an existing config does."""
    pm = create_plugin_manager(builtins=BUILTINS, disable=config.runner.disable, extra=local_modules(config))
    for name in inactive_plugins(pm, config):
        pm.unregister(name=name)
    return pm


def inactive_plugins(pm: PluginManager, config: Config) -> list[str]:
    """The installed plugins of ``pm`` the runner leaves out: no table in ``config``, not always-on."""
    return sorted(
        name for name in pm.distributions
        if name not in config.plugins and getattr(pm.get_plugin(name), "sseplug_always_on", False) is not True
    )


def local_modules(config: Config) -> list[tuple[str, object]]:
    """(name, module) of each ``runner.plugins.modules`` entry; a failed import is a ``PluginError``."""
    directory = str(config.path.absolute().parent)
    if config.runner.modules and directory not in sys.path:
        sys.path.insert(0, directory)
    modules: list[tuple[str, object]] = []
    for index, name in enumerate(config.runner.modules):
        try:
            modules.append((name, importlib.import_module(name)))
        except Exception as error:
            raise PluginError(
                f"runner.plugins.modules[{index}]: cannot import {name!r} ({type(error).__name__}: {error}"
                f"{_raised_at(error)}); the module must be importable from {directory} or the Python path",
                plugin=name,
            ) from error
    return modules


def _raised_at(error: BaseException) -> str:
    """Where ``error`` was raised, as ``", at FILE:LINE"``: the innermost frame outside the
    import machinery (the module's own line), or ``""``; a SyntaxError names its place itself."""
    if isinstance(error, SyntaxError):
        return ""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if not frame.filename.startswith("<frozen")]
    return f", at {frames[-1].filename}:{frames[-1].lineno}" if frames[1:] else ""


def keep_stdout_only_without_other_sinks(pm: PluginManager, config: Config) -> None:
    """After ``sseplug_configure``: drop the stdout sink when another event sink is enabled,
    unless a connection routes to it (``sinks = ["stdout"]``).

    A plugin implementing ``sseplug_handle_event`` is a sink unless its ``sseplug_sink``
    attribute says otherwise (it may depend on its configuration).
    """
    if pm.get_plugin("stdout") is not None and other_sinks(pm) and not any(
        "stdout" in (connection.sinks or ()) for connection in config.connections
    ):
        pm.unregister(name="stdout")


def other_sinks(pm: PluginManager) -> list[str]:
    """The event sinks of ``pm`` but stdout, in call order."""
    return [
        impl.plugin_name
        for impl in reversed(pm.hook.sseplug_handle_event.get_hookimpls())
        if impl.plugin_name != "stdout" and getattr(impl.plugin, "sseplug_sink", True)
    ]


def default_sinks(pm: PluginManager) -> tuple[str, ...] | None:
    """The handlers of a connection without ``sinks``: all (``None``), but stdout when it is
    kept only for the connections that route to it."""
    if pm.get_plugin("stdout") is None or not other_sinks(pm):
        return None
    return tuple(name for name in pm.call_order("sseplug_handle_event") if name != "stdout")


def keep_one_checkpoint_store(pm: PluginManager) -> None:
    """After ``sseplug_configure``: drop the built-in sqlite store when another plugin keeps the
    checkpoints (its ``sseplug_checkpoint_store`` is true, e.g. the redis plugin of a fleet)."""
    sqlite = pm.get_plugin("sqlite")
    if sqlite is not None and any(
        name != "sqlite" and getattr(plugin, "sseplug_checkpoint_store", False) is True
        for name, plugin in pm.list_name_plugin()
    ):
        sqlite.sseplug_unconfigure()
        pm.unregister(name="sqlite")


def check_routes(pm: PluginManager, config: Config) -> None:
    """Every plugin a connection's ``sinks`` names is registered and handles events; else a
    ``ConfigError`` naming the connection's key (after ``sseplug_configure``)."""
    handlers = set(pm.call_order("sseplug_handle_event"))
    for index, connection in enumerate(config.connections):
        for position, name in enumerate(connection.sinks or ()):
            if name in handlers:
                continue
            if pm.get_plugin(name) is None:
                reason = f"plugin {name!r} is not active; give it a [plugins.{name}] table to turn it on"
            else:
                reason = f"plugin {name!r} handles no events (it has no sseplug_handle_event)"
            choices = ", ".join(sorted(handlers)) or "none"
            raise ConfigError(f"{reason}; event sinks here: {choices}",
                              key=f"connections[{index}].sinks[{position}]", path=str(config.path))


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
        request = connection.request(on_error=lambda error: self._failed(connection.id, error))
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
                check_routes(self.plugins, new)
            except ConfigError as error:
                log.error("reload refused, the running config stays: %s", error)
                return
            old = {connection.id: connection for connection in self.config.connections}
            fresh = {connection.id: connection for connection in new.connections}
            removed = [cid for cid in old if cid not in fresh]
            changed = [cid for cid in fresh if cid in old and fresh[cid] != old[cid]]
            added = [cid for cid in fresh if cid not in old]
            if (new.runner, new.plugins) != (self.config.runner, self.config.plugins):
                log.warning("reload: changes to [runner] and [plugins] take effect at the next start; "
                            "applying the [[connections]] changes only")
            for cid in removed + changed:
                if cid in self.streams:  # a scheduled runner runs only its share
                    self._retire(cid)
            self.config = dataclasses.replace(self.config, connections=new.connections)
            for cid in added + changed if not self.scheduled else ():  # else the scheduling plugin starts them
                self._start(fresh[cid])
            log.info("reloaded %s: %d added %s, %d removed %s, %d changed %s, %d unchanged", path,
                     len(added), added, len(removed), removed, len(changed), changed,
                     len(fresh) - len(added) - len(changed))

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
        for stream in self.streams.values():
            stream.connection.stop()
        deadline = time.monotonic() + timeout
        for stream in self.streams.values():
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
        states = Counter(connection.state for connection in connections)
        seen = sum(connection.events_total for connection in connections)
        now = time.monotonic()
        rate = (seen - self._events_seen) / max(now - self._stats_at, 1e-9)
        self._events_seen, self._stats_at = seen, now
        log.info(
            "stats: %d connected, %d reconnecting, %d standby, %d failed, %d ended, %d events, %.1f events/s",
            states[State.OPEN] + states[State.CONNECTING], states[State.WAITING], states[State.STANDBY],
            states[State.FAILED], states[State.ENDED], seen, rate,
        )
