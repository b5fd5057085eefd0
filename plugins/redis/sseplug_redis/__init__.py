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
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from sseplug.builtin.deadletter import letter
from sseplug.errors import ConfigError
from sseplug.hookspecs import hookimpl
from sseplug.redaction import public_url

from .assign import share_of
from .settings import DEFAULT_LEASE_TTL, KEYS, NAME, SETTINGS, settings as _settings
from .budget import ReconnectBudget
from .scripts import (MARKER_KEY, RUNNERS_KEY, SCRIPTS, SESSION_PREFIX, checkpoint_key, lease_key,
                      session_key)

if TYPE_CHECKING:
    from sseplug.connection import Connection
    from sseplug.models import SSEResponse
    from sseplug.run.config import Config
    from sseplug.run.streams import StreamControl

__all__ = ["NAME", "SETTINGS", "KEYS", "RedisLeases", "lease_key", "checkpoint_key", "session_key", "RUNNERS_KEY", "MARKER_KEY",
           "plugin"]

__version__ = "0.2.0"


MAX_REDIS_CONNECTIONS = 64  # for the streams' saves and loads (the coordinator has two of its own)
BATCH = 500  # keys per claim or release script: a few milliseconds of Redis time each
START_BATCH = 50  # streams started at once, then a pause for the hub (1,000 a second at most)
START_PAUSE = 0.05
GUARD = 0.8  # streams stop this share of lease_ttl after the last confirmed heartbeat was sent

log = logging.getLogger("sseplug.redis")


class RedisLeases:
    """The plugin: one instance per plugin manager, inert until configured with a ``[plugins.redis]`` table."""

    def __init__(self) -> None:
        self.url: str | None = None  # None: inert
        self.lease_ttl = DEFAULT_LEASE_TTL
        self.stream: str | None = None
        self.maxlen: int | None = None
        self.dead_letter_stream: str | None = None
        self.on_lost_state = "stop"
        self.reconnect_rate: float | None = None
        self.redis: redis.Redis | None = None  # the streams' saves and loads
        self._coordination: redis.Redis | None = None  # heartbeats, claims, releases: a pool of their own
        self.token = uuid.uuid4().hex
        self.epoch = ""  # the fleet marker this runner saw ("" before the first heartbeat)
        self.live: tuple[str, ...] = ()  # tokens of the live runners at the last heartbeat
        self.share: list[str] = []  # the streams this runner should hold (assign.py)
        self.held: set[str] = set()  # leases this runner holds
        self.confirmed_until = 0.0  # monotonic time until which our session surely lives
        self.control: StreamControl | None = None
        self._ids: list[str] = []  # the config's stream ids
        self._share_for: tuple[str, tuple[str, ...], list[str]] | None = None  # (token, live, ids) of ``share``
        self._joined = False  # the first heartbeat of this process went through
        self._seen: tuple[str, ...] = ()  # the live runners at the previous heartbeat
        self._next_look = self.lease_ttl / 3  # seconds until the next heartbeat
        self._connections: dict[str, Connection] = {}  # id -> the connection that last claimed
        self._loaded: dict[str, str | None] = {}  # id -> checkpoint read when its lease was taken
        self._pending: dict[str, list[bytes]] = {}  # id -> (id, event, data) of the unsaved batch
        self._saved: dict[str, str] = {}  # id -> last checkpoint written (or read)
        self._unsure: set[str] = set()  # ids whose last save failed: Redis may hold a later checkpoint
        self._down: str | None = None  # why Redis cannot be used now (logged once), or None
        self._released_all = False  # every stream was sent to standby: reload checkpoints once back
        self._run_id = ""  # Redis's run_id at the last look: another one means it restarted
        self._state_lost = False  # Redis lost the fleet's state once: missing checkpoints are warned
        self._only: set[str] | None = None  # after a loss of state: claim only these until _only_until
        self._only_until = 0.0
        self._scripts: dict[str, Any] = {}
        self._stop = gevent.event.Event()
        self._greenlets: list[gevent.Greenlet[..., Any]] = []
        self._budget: ReconnectBudget | None = None  # with reconnect_rate
        self._to_start: deque[str] = deque()  # held streams to start, in order
        self._starting: set[str] = set()  # the same, as a set
        self._starter: gevent.Greenlet[..., Any] | None = None
        self._handing: set[str] = set()  # streams handed over, stopping: their leases go once they stopped
        self._started_at = time.time()

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

    @property
    def _shown_url(self) -> str:
        """The Redis URL for logs and errors: credentials hidden (``sseplug.redaction.public_url``)."""
        return public_url(self.url) if self.url else "(no url)"

    @property
    def interval(self) -> float:
        """Seconds between heartbeats: a third of the lease time."""
        return self.lease_ttl / 3

    def _db(self) -> redis.Redis:  # a method: pluggy reads every attribute at registration
        if self.redis is None:
            raise RuntimeError("the redis plugin is not configured")
        return self.redis

    def _ctl(self) -> redis.Redis:
        if self._coordination is None:
            raise RuntimeError("the redis plugin is not configured")
        return self._coordination

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
            greenlet.link_exception(_died)
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

    # -- the coordinator -------------------------------------------------------------------------

    def _coordinate(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # a bug must not end the coordinator: the guard would stop every stream
                log.exception("redis: a coordination round failed")
            if self._stop.wait(self._next_look):
                return

    def tick(self) -> None:
        """One round: heartbeat (join or renew), then claim the share, hand over the rest, start
        what is held and not running."""
        assert self.control is not None
        sent = time.monotonic()
        joining = not self._joined
        try:
            status, marker, live = self._heartbeat("join" if joining else "renew")
        except RedisError as error:
            self._redis_failed(error)
            return
        if status == "lost":
            self._lost_state(marker)
            if self.on_lost_state == "stop":
                return
            sent = time.monotonic()
            status, marker, live = self._heartbeat("join")
        elif status == "expired":
            self._rejoin(f"its session expired (it could not renew for over {self.lease_ttl:g}s: frozen, "
                         "or cut off from Redis); other runners may hold its streams now")
            sent = time.monotonic()
            status, marker, live = self._heartbeat("join")
        if status != "ok":
            return
        self.epoch = marker
        self.confirmed_until = sent + GUARD * self.lease_ttl
        self._redis_ok()
        self._joined = True
        # Claims wait while runners are joining: a share computed without them is too large (a
        # runner started first would take every stream, then hand most over). A runner leaving
        # only frees streams, which are claimed at once.
        joined = bool(set(live) - set(self._seen))
        self._seen = tuple(live)
        if joining:
            return
        ids = self.control.ids()
        if (self.token, tuple(live), ids) != self._share_for:
            self.live, self._ids = tuple(live), ids
            self.share = share_of(self.token, ids, self.live)
            self._share_for = (self.token, self.live, ids)
        self._balance(claim=not joined)

    def _balance(self, *, claim: bool = True) -> None:
        """Hand over what is held beyond the share, claim the share (unless ``claim`` is false),
        start what is held."""
        assert self.control is not None
        wanted = set(self.share)
        if self._only is not None:
            if time.monotonic() < self._only_until:
                wanted &= self._only
            else:
                self._only = None
        for connection_id in sorted(self.held - set(self.share)):
            self._hand_over(connection_id)
        missing = [cid for cid in self.share if cid in wanted and cid not in self.held] if claim else []
        try:
            self._claim(missing)
        except RedisError as error:
            self._redis_failed(error)
            return
        running = self.control.running()
        waiting = [cid for cid in self.share if cid in self.held and cid not in running and cid not in self._starting]
        self._starting.update(waiting)
        self._to_start.extend(waiting)
        if self._to_start and (self._starter is None or self._starter.dead):
            self._starter = gevent.spawn(self._start_paced)
            self._starter.link_exception(_died)

    def _start_paced(self) -> None:
        """Start the held streams that are not running, ``START_BATCH`` at a time: thousands of
        connections starting at once would keep the hub from the heartbeat for seconds."""
        while self._to_start and self.control is not None and not self._stop.is_set():
            for _ in range(min(START_BATCH, len(self._to_start))):
                connection_id = self._to_start.popleft()
                self._starting.discard(connection_id)
                if connection_id in self.held:
                    self.control.start(connection_id)
            gevent.sleep(START_PAUSE)

    def _heartbeat(self, mode: str) -> tuple[str, str, list[str]]:
        running = self.control.running() if self.control is not None else set()
        fields = ["host", socket.gethostname(), "pid", str(os.getpid()), "started", f"{self._started_at:.3f}",
                  "held", str(len(self.held)), "open", str(len(running & self.held))]
        reply = self._scripts["heartbeat"](client=self._ctl(),
            keys=[RUNNERS_KEY, session_key(self.token), MARKER_KEY],
            args=[self.token, self._ttl_ms, mode, self.epoch, uuid.uuid4().hex, SESSION_PREFIX, *fields],
        )
        words = [value.decode() for value in reply]
        peers = dict(zip(words[2::2], (int(float(ms)) / 1000 for ms in words[3::2])))
        # a peer that missed its heartbeats: look again right after its session expires, so that
        # its streams are taken over then and not up to a heartbeat interval later
        lapsing = [left for token, left in peers.items() if token != self.token and left < self.interval]
        self._next_look = min([self.interval, *(max(0.05, left + 0.05) for left in lapsing)])
        return words[0], words[1], list(peers)

    def _claim(self, ids: list[str]) -> None:
        """Take the leases of ``ids`` that are free (or whose holder is gone), many per script;
        read their checkpoints in the same round."""
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            taken = self._scripts["claim"](keys=[session_key(self.token), *map(lease_key, chunk)],
                                           args=[self.token, SESSION_PREFIX], client=self._ctl())
            won = [cid for cid, flag in zip(chunk, taken) if flag == 1]
            if not won:
                continue
            checkpoints = self._ctl().mget([checkpoint_key(cid) for cid in won])
            for cid, value in zip(won, checkpoints):
                self._loaded[cid] = None if value is None else value.decode("utf-8", "surrogateescape")
            self.held.update(won)
            log.debug("redis: took %d leases", len(won))
        if ids:
            log.info("redis: holding %d of %d streams (share %d, %d live runners)", len(self.held),
                     len(self._ids), len(self.share), len(self.live))

    def _release(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        for start in range(0, len(ids), BATCH):
            self._scripts["release"](keys=[lease_key(cid) for cid in ids[start:start + BATCH]], args=[self.token],
                                     client=self._ctl())

    def _hand_over(self, connection_id: str) -> None:
        """Stop the stream, then delete its lease (unless taken back meanwhile): the new holder
        cannot start before this one stopped reading."""
        assert self.control is not None
        self.held.discard(connection_id)
        self._forget(connection_id)
        self._handing.add(connection_id)

        def release() -> None:
            self._handing.discard(connection_id)
            if connection_id in self.held or self.redis is None:
                return  # taken back meanwhile, or shut down (unconfigure released it)
            try:
                self._release([connection_id])
            except RedisError as error:
                self._redis_failed(error)  # it lapses with our session or is released later

        self.control.stop(connection_id, then=release)

    def _forget(self, connection_id: str) -> None:
        self._pending.pop(connection_id, None)
        self._loaded.pop(connection_id, None)
        self._saved.pop(connection_id, None)
        self._unsure.discard(connection_id)
        self._connections.pop(connection_id, None)

    def _lost(self, connection_id: str, why: str) -> None:
        """The lease is another runner's now: stop the stream without touching the key."""
        if connection_id not in self.held:
            return
        self.held.discard(connection_id)
        self._forget(connection_id)
        log.warning("redis: stopping %r: %s", connection_id, why)
        if self.control is not None:
            self.control.stop(connection_id)

    def _rejoin(self, why: str) -> None:
        """Start a new session: every stream held under the old one stops (another runner may hold
        it now), then the share is claimed anew."""
        token = uuid.uuid4().hex
        level = logging.INFO if self._down is not None else logging.WARNING  # an outage was already reported
        log.log(level, "redis: %s; stopping its %d streams and rejoining the fleet as %s", why, len(self.held), token)
        for connection_id in sorted(self.held):
            self.held.discard(connection_id)
            self._forget(connection_id)
            if self.control is not None:
                self.control.stop(connection_id)
        self.token, self.live = token, ()

    def _lost_state(self, marker: str) -> None:
        """Redis lost the fleet's state (the marker is gone or another): checkpoints are gone too."""
        assert self.control is not None
        cause = (f"Redis at {self._shown_url} lost the fleet's state: the marker key {MARKER_KEY} "
                 f"{'is gone' if not marker else 'changed'} (restarted without persistence, or flushed), "
                 "so the checkpoints are gone too")
        if self.on_lost_state == "stop":
            self._down = cause
            for connection_id in sorted(self.held):
                self.control.stop(connection_id)
            self.held.clear()
            self.control.abort(f"redis: {cause}; stopping every stream rather than resume from 'now' "
                               '(on_lost_state = "stop"); restore Redis\'s data, or set on_lost_state = '
                               '"resume_from_memory" to resume from the ids the runners delivered last')
            return
        memory = {cid: self._saved.get(cid) or getattr(self._connections.get(cid), "last_event_id", "") or ""
                  for cid in self.held}
        log.warning("redis: %s; resuming the %d streams this runner held from the last ids it delivered "
                    '(on_lost_state = "resume_from_memory"); the others restart without Last-Event-ID',
                    cause, len(memory))
        self._state_lost = True
        self.held.clear()
        self.token, self.epoch, self.live = uuid.uuid4().hex, "", ()
        log.info("redis: rejoining the fleet as %s", self.token)
        self._heartbeat("join")  # a new session and a new marker: the other runners see the loss too
        ids = sorted(memory)
        keys = [session_key(self.token)]
        for cid in ids:
            keys += [lease_key(cid), checkpoint_key(cid)]
        taken = self._scripts["restore"](keys=keys, args=[self.token, SESSION_PREFIX, *(memory[c] for c in ids)],
                                         client=self._ctl())
        for cid, flag in zip(ids, taken):
            if flag == 1:
                self.held.add(cid)
                self._loaded[cid] = memory[cid] or None
                connection = self._connections.get(cid)
                if connection is not None:
                    connection.release()  # reloads the restored checkpoint before it reads on
            else:
                self.control.stop(cid)
        self._only, self._only_until = set(self.held), time.monotonic() + self.lease_ttl

    # -- the guard: stop before a session could have expired unseen -----------------------------

    def _guard(self) -> None:
        while not self._stop.wait(self._guard_once()):
            pass

    def _guard_once(self) -> float:
        """Send every held stream to standby once the session is not confirmed any more; the
        seconds until the next look."""
        left = self.confirmed_until - time.monotonic()
        if left <= 0 and self.held and not self._released_all:
            self._release_all(f"cannot confirm this runner's leases with Redis at {self._shown_url} "
                              f"for {GUARD * self.lease_ttl:.1f}s")
        return min(left, self.interval) if left > 0.05 else self.interval / 4

    def _release_all(self, why: str) -> None:
        """Every held stream to standby (it reads nothing until Redis answers again)."""
        if self._down is None:
            self._down = why
            log.warning("redis: %s; stopping %d streams until it answers again", why, len(self.held))
        self._released_all = True
        for connection_id in sorted(self.held):
            self._pending.pop(connection_id, None)
            connection = self._connections.get(connection_id)
            if connection is not None:
                connection.release()

    def _redis_failed(self, error: Exception) -> None:
        """A Redis call failed (refused, reset, timed out): logged once, and on ``/ready``, until
        Redis answers again. Streams go on reading until one cannot save (it then waits) or the
        guard stops them all: a slow answer under load is no reason for a reconnect storm."""
        if self._down is None:
            self._down = f"cannot reach Redis at {self._shown_url} ({type(error).__name__}: {error})"
            log.warning("redis: %s; a stream that cannot save waits, and every stream stops %.1fs after the last "
                        "heartbeat Redis confirmed, until it answers again", self._down, GUARD * self.lease_ttl)

    def _redis_ok(self) -> None:
        """A heartbeat went through: leave standby. When Redis restarted meanwhile (it may have
        lost its last second of writes), every held stream reloads its checkpoint from it."""
        restarted = False
        try:
            run_id = str(self._ctl().info("server").get("run_id", "")) if self._down or not self._run_id else None
        except RedisError:
            run_id = None
        if run_id is not None:
            restarted, self._run_id = bool(self._run_id) and run_id != self._run_id, run_id
        if self._down is not None:
            log.info("redis: Redis at %s answers again%s; resuming %d streams", self._shown_url,
                     " (restarted: every stream reloads its checkpoint)" if restarted else "", len(self.held))
            self._down = None
        if restarted and not self._released_all:
            for connection_id in sorted(self.held):
                connection = self._connections.get(connection_id)
                if connection is not None:
                    connection.release()
        if restarted or self._released_all:  # the checkpoints in Redis are the truth, not our memory
            self._released_all = False
            for connection_id in self.held:
                self._pending.pop(connection_id, None)
                self._loaded.pop(connection_id, None)
                self._saved.pop(connection_id, None)

    @property
    def _ttl_ms(self) -> int:
        return int(self.lease_ttl * 1000)

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

    # -- checkpoints and sink --------------------------------------------------------------------

    @hookimpl
    def sseplug_checkpoint_load(self, connection: Connection) -> str | None:
        """The checkpoint in Redis (read when the lease was taken, or now), else the request's own
        start: Redis is the only authority (a local store or memory may be past the Redis stream)."""
        if self.url is None:
            return None
        connection_id = connection.id
        self._connections[connection_id] = connection
        self._pending.pop(connection_id, None)
        start = connection.request.last_event_id or ""
        if connection_id in self._loaded:
            value = self._loaded.pop(connection_id)
        elif connection_id in self.held and connection_id in self._saved and connection_id not in self._unsure:
            value = self._saved[connection_id]  # held since it was read or written: what Redis holds
        else:
            try:
                raw = self._db().get(checkpoint_key(connection_id))
            except RedisError as error:
                self._redis_failed(error)
                connection.release()  # back to standby unread: it loads again once Redis answers
                return start
            value = None if raw is None else raw.decode("utf-8", "surrogateescape")
            self._unsure.discard(connection_id)
        if value is None and self._state_lost:
            log.warning("redis: %r has no checkpoint in Redis (it lost its state): it starts %s", connection_id,
                        f"from the request's last_event_id {start!r}" if start else "without Last-Event-ID")
        loaded = start if value is None else value
        self._saved[connection_id] = loaded
        return loaded

    # trylast: the event is buffered only once every other handler took it, so a handler that
    # raises leaves it out of the batch that is checkpointed before the connection fails
    @hookimpl(trylast=True)
    def sseplug_handle_event(self, event: SSEResponse, connection: Connection) -> None:
        """Buffer the event: it goes to the Redis stream with the batch's checkpoint, atomically."""
        if self.stream is None or self.url is None:
            return
        data = event.data
        if not isinstance(data, str):
            try:
                data = json.dumps(data, default=str, ensure_ascii=False, separators=(",", ":"))
            except ValueError:
                data = str(data)
        pending = self._pending.get(connection.id)
        if pending is None:
            pending = self._pending[connection.id] = []
        pending += (_utf8(event.id), _utf8(event.event), _utf8(data))

    @hookimpl
    def sseplug_dead_letter(
        self, event: SSEResponse, connection: Connection, plugin: str, error: BaseException, attempts: int
    ) -> bool | None:
        """With ``dead_letter_stream``: XADD the dead letter (fields connection, plugin, attempts,
        error, id, event, data, raw, time); a Redis failure raises. Without it, no answer."""
        if self.dead_letter_stream is None or self.url is None:
            return None
        record = letter(event, connection, plugin, error, attempts)
        data = event.data if isinstance(event.data, str) else json.dumps(event.data, default=str, ensure_ascii=False)
        fields = {**{key: str(record[key]) for key in ("connection", "plugin", "attempts", "error", "time")},
                  "id": event.id, "event": event.event, "data": data, "raw": event.raw_response}
        self._db().xadd(self.dead_letter_stream.format(connection=connection.id),
                        {name: _utf8(value) for name, value in fields.items()})
        return True

    @hookimpl
    def sseplug_checkpoint_save(self, connection: Connection, last_event_id: str) -> None:
        """One script: if the lease still holds our token and our session lives, XADD the batch
        and save the checkpoint; if not, write nothing and stop the stream."""
        if self.url is None:
            return
        connection_id = connection.id
        pending = self._pending.pop(connection_id, None)
        if not pending and self._saved.get(connection_id) == last_event_id:
            return  # nothing new to write
        stream = self.stream.format(connection=connection_id) if self.stream is not None else ""
        try:
            written = self._scripts["save"](
                keys=[lease_key(connection_id), checkpoint_key(connection_id), stream or lease_key(connection_id),
                      session_key(self.token)],
                args=[self.token, _utf8(last_event_id), "" if self.maxlen is None else self.maxlen,
                      connection_id, *(pending or ())],
            )
        except RedisError as error:  # _saved keeps the last id written: the memory on_lost_state may need
            self._unsure.add(connection_id)  # the script may have run: the resume reads Redis
            self._redis_failed(error)
            connection.release()  # unsaved: it waits, then resumes from the checkpoint in Redis
            return
        if written == 1:
            self._saved[connection_id] = last_event_id
            return
        if written == -1 and connection_id in self.held:  # lease or session gone: the next heartbeat decides
            self._down = self._down or "a lease or this runner's session is gone from Redis"
            connection.release()
            return
        self._saved.pop(connection_id, None)
        if connection_id in self.held:
            self._lost(connection_id, f"not saving event id {last_event_id!r}: its lease is not this runner's "
                                      "any more (another runner holds it)")
        else:
            log.debug("redis: not saving %r at event id %r: this runner does not hold its lease",
                      connection_id, last_event_id)
            connection.release()


plugin = RedisLeases()
"""The instance the ``redis`` entry point registers (``sseplug_redis:plugin``)."""


def _died(greenlet: gevent.Greenlet[..., Any]) -> None:
    log.error("redis: a coordination greenlet died: %r; the guard stops the streams before their leases "
              "could expire", greenlet.exception)


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (e.g. from JSON "\ud800"): keep them visible
        return text.encode("utf-8", "backslashreplace")
