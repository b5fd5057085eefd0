"""sseplug plugin ``redis``: a fleet of runners sharing the streams of one config through Redis.

Theory of operation
-------------------
Ownership is assigned, not polled for. Every runner has a *session* in Redis (a hash that expires
``lease_ttl`` after its last heartbeat) and a random token. One greenlet per runner, the
coordinator, ticks every ``lease_ttl / 3``: one script renews the session and returns the tokens
of the live runners; from them and the config's stream ids, every runner derives the same
assignment (``assign.py``: rendezvous hashing with bounded loads). The runner claims the leases
of its share that it does not hold yet (one script for many keys: a lease is taken when it is
free or its holder's session is gone), starts those streams (``sseplug_schedule``: the runner
starts nothing by itself), and stops the streams it holds beyond its share, deleting their
leases once they stopped reading. A lease has no expiry of its own: it is valid while its
holder's session lives, so renewing every lease a runner holds is one command per tick.

Safety: a runner stops every stream it holds before its session could have expired unseen: the
guard stops them ``GUARD`` x ``lease_ttl`` after the last heartbeat Redis confirmed (measured
from when that heartbeat was sent). Checkpoints are fenced: a batch's events are XADDed and its
checkpoint set by one script that first checks that the lease holds our token and our session
still exists; a runner that lost a stream (frozen, cut off) writes nothing, and the new holder
resumes with ``Last-Event-ID`` from the checkpoint, which always names the last event XADDed.

Redis losing its data is detected by the marker key ``sseplug:fleet`` (a random epoch written by
the first runner): a runner that saw one epoch and finds none or another applies
``on_lost_state``. See docs/fleet.rst for the guarantees and their costs.

The parts: ``state.py`` (what a runner knows and holds), ``ownership.py`` (the coordinator),
``faults.py`` (the guard and Redis faults), ``sink.py`` (checkpoints and the Redis Streams sink),
``assign.py`` (the assignment), ``budget.py`` (the reconnect budget), ``scripts.py`` (the Lua).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent
import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from sseplug.errors import ConfigError
from sseplug.hookspecs import hookimpl

from .budget import ReconnectBudget
from .faults import Faults
from .ownership import Ownership, died
from .scripts import MARKER_KEY, RUNNERS_KEY, SCRIPTS, checkpoint_key, lease_key, session_key
from .settings import KEYS, NAME, SETTINGS, settings as _settings
from .sink import Sink
from .state import MAX_REDIS_CONNECTIONS, log

if TYPE_CHECKING:
    from sseplug.connection import Connection
    from sseplug.run.config import Config
    from sseplug.run.streams import StreamControl

__all__ = ["NAME", "SETTINGS", "KEYS", "RedisLeases", "lease_key", "checkpoint_key", "session_key", "RUNNERS_KEY", "MARKER_KEY",
           "plugin"]

__version__ = "0.2.0"



class RedisLeases(Ownership, Faults, Sink):
    """The plugin: one instance per plugin manager, inert until configured with a ``[plugins.redis]`` table.
    Its state is ``FleetState``'s; ownership, faults and the sink are its parts by job."""

    def __repr__(self) -> str:
        where = self._shown_url if self.url else "inactive"
        return f"<RedisLeases {where} holding {len(self.held)}>"

    @property
    def sseplug_sink(self) -> bool:
        """An event sink (the runner then drops its stdout sink) only when ``stream`` is set."""
        return self.url is not None and self.stream is not None

    @property
    def sseplug_checkpoint_store(self) -> bool:
        """Checkpoints live in Redis while configured: the runner's local store steps aside."""
        return self.url is not None

    # -- configure -------------------------------------------------------------------------------

    @hookimpl
    def sseplug_configure(self, config: Config | None) -> None:
        """Validate ``[plugins.redis]`` and prepare the pool; connect only once the runner
        schedules. Under ``sseplug check`` (``config.dry_run``) validate only: stays inert."""
        self.sseplug_unconfigure()
        if config is None or NAME not in config.plugins:
            return
        settings = _settings(config)
        timeout = max(0.5, min(10.0, settings["lease_ttl"] / 2))  # the guard, not this, bounds the wait
        try:  # two pools: the heartbeats never wait behind the streams' saves for a connection
            pool, coordination = (redis.BlockingConnectionPool.from_url(  # parses the URL; connects nothing yet
                settings["url"],
                max_connections=size,
                timeout=wait,  # for a free pool connection: a save waits its turn (backpressure) up to lease_ttl
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),  # a failure must surface now, not after backoffs
            ) for size, wait in ((MAX_REDIS_CONNECTIONS, settings["lease_ttl"]), (2, timeout)))
        except ValueError as error:
            raise ConfigError(
                f"invalid Redis URL: {error}; e.g. url = \"redis://127.0.0.1:6379/0\"",
                key=f"plugins.{NAME}.url", path=str(config.path),
            ) from error
        if getattr(config, "dry_run", False):  # sseplug check: validated, and the plugin stays inert
            pool.disconnect()
            coordination.disconnect()
            return
        for key, value in settings.items():
            setattr(self, key, value)
        self.token = uuid.uuid4().hex
        self._ids = [connection.id for connection in config.connections]
        self.redis = redis.Redis(connection_pool=pool)
        self._coordination = redis.Redis(connection_pool=coordination)
        self._scripts = {name: self.redis.register_script(source) for name, source in SCRIPTS.items()}

    @hookimpl
    def sseplug_schedule(self, streams: StreamControl) -> bool | None:
        """Take over which streams this runner runs: start the coordinator (and the guard, and
        the reconnect budget when ``reconnect_rate`` is set)."""
        if self.url is None:
            return None
        self.control = streams
        streams.report(lease=self.held.__contains__, unready=lambda: self._down)
        self._stop.clear()
        log.info("redis: runner token %s, leases in %s (lease_ttl %.1fs, %d streams, on_lost_state %s%s)",
                 self.token, self._shown_url, self.lease_ttl, len(self._ids), self.on_lost_state,
                 "" if self.reconnect_rate is None else f", reconnect_rate {self.reconnect_rate:g}/s")
        loops: list[Callable[[], None]] = [self._coordinate, self._guard]
        if self.reconnect_rate is not None:
            self._budget = ReconnectBudget(self.reconnect_rate, self._scripts["budget"], self._ctl())
            loops.append(lambda: self._budget.dispense(self._stop) if self._budget is not None else None)
        for loop in loops:
            greenlet = gevent.spawn(loop)
            greenlet.link_exception(died)
            self._greenlets.append(greenlet)
        return True

    @hookimpl
    def sseplug_unconfigure(self) -> None:
        """Stop the coordinator, delete our leases and our session so others take over at once; go inert."""
        self._stop.set()
        greenlets, self._greenlets = [*self._greenlets, *([self._starter] if self._starter else [])], []
        gevent.joinall(greenlets, timeout=self.interval)  # a round in progress ends: the leases it took are held
        gevent.killall(greenlets, block=True, timeout=self.interval)
        if self.redis is not None and self.control is not None:
            ids = sorted(self.held | self._handing)  # a stream still stopping is released too
            try:
                self._release(ids)
                pipe = self._ctl().pipeline(transaction=False)
                pipe.zrem(RUNNERS_KEY, self.token)
                pipe.delete(session_key(self.token))
                pipe.execute()
                if ids:
                    log.info("redis: released the leases of %d streams at %s", len(ids), self._shown_url)
            except RedisError as error:
                log.warning("redis: could not release %d leases at %s (%s: %s); others take them once this "
                            "runner's session expires, within %.1fs", len(ids), self._shown_url,
                            type(error).__name__, error, self.lease_ttl)
        for client in (self.redis, self._coordination):
            if client is not None:
                client.connection_pool.disconnect()
        self.__init__()  # type: ignore[misc]  # back to inert, nothing of the last run kept

    # -- claims: the connection's side -----------------------------------------------------------

    @hookimpl
    def sseplug_claim(self, connection: Connection) -> bool | float | None:
        """True while this runner holds the stream's lease and Redis confirms it (and, with
        ``reconnect_rate``, once the fleet's reconnect budget grants this connect), else seconds to wait."""
        if self.url is None or self.control is None:
            return None
        connection_id = connection.id
        self._connections[connection_id] = connection
        if connection_id not in self.held or self._down is not None or time.monotonic() >= self.confirmed_until:
            return self.interval / 2
        if self._budget is not None and not (self._budget.take(connection_id) and not connection.stopping):
            return 0.0  # no token within a second: the connection asks again (and sees a stop)
        return True

    @hookimpl
    def sseplug_connection_closed(self, connection: Connection) -> None:
        """A response ended: forget its unsaved batch."""
        if self.url is not None:
            self._pending.pop(connection.id, None)

    @hookimpl
    def sseplug_connection_finished(self, connection: Connection) -> None:
        """The connection ended here (stopped, handed over, done): it waits for no reconnect token."""
        if self._budget is not None:
            self._budget.forget(connection.id)


plugin = RedisLeases()
"""The instance the ``redis`` entry point registers (``sseplug_redis:plugin``)."""
