"""sseplug plugin ``redis``: stream leases, fenced checkpoints and a Redis Streams sink, shared by many runners.

Theory of operation
-------------------
Every runner process gets a random ``token``. It may consume stream ``ID`` only while the key
``sseplug:lease:ID`` holds that token (set as ``SET NX PX lease_ttl`` would, by a script that
also takes back a lease still holding our own token). One greenlet per runner, the
renewer, wakes every ``lease_ttl / 3``: it refreshes the runner's heartbeat in the sorted set
``sseplug:runners`` (score: Redis server time in ms; members older than ``lease_ttl`` are dropped,
so the set's size is the number of live runners) and extends every held lease with a
compare-and-extend script. A lease that could not be extended (expired, taken, Redis unreachable)
stops its stream at once with ``Connection.release()``: the connection goes back to
``sseplug_claim``, in standby, and reloads its checkpoint once it holds the lease again.

A runner takes a free lease only while it holds fewer than ``ceil(streams / live runners)``,
and hands leases over (after the stream stopped reading) when it holds more, so the streams
spread over the runners and move when runners come and go. A refused claim waits
``uniform(lease_ttl / 6, lease_ttl / 3)`` seconds, and the first claim of each stream
``uniform(0, lease_ttl / 3)``, so that runners started together do not race in lockstep.

Checkpoints are fenced: the events of a batch (buffered by ``sseplug_handle_event``) are XADDed
to the connection's Redis stream and ``sseplug:checkpoint:ID`` is set by one Lua script that
first checks that the lease still holds our token. A runner that lost its lease therefore writes
nothing, neither events nor a checkpoint, and can never rewind a stream; the new owner resumes
with ``Last-Event-ID`` from the checkpoint, which always names the last event XADDed for it.
"""

from __future__ import annotations

import json
import logging
import math
import random
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import gevent
import gevent.event
import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from sseplug.builtin.deadletter import letter
from sseplug.errors import ConfigError
from sseplug.hookspecs import hookimpl

if TYPE_CHECKING:
    from sseplug.run.config import Config, TableReader
    from sseplug.connection import Connection
    from sseplug.models import SSEResponse

__all__ = ["NAME", "RedisLeases", "lease_key", "checkpoint_key", "RUNNERS_KEY", "plugin"]

__version__ = "0.1.0"

NAME = "redis"
"""The plugin's name: entry point, ``[plugins.redis]`` table, ``runner.plugins.disable`` entry."""

KEYS = ("url", "lease_ttl", "stream", "maxlen", "dead_letter_stream")
DEFAULT_LEASE_TTL = 10.0
MIN_LEASE_TTL = 1.0
MAX_REDIS_CONNECTIONS = 64
RUNNERS_KEY = "sseplug:runners"
# States of a connection whose claim was granted that may still lead to reading (between the
# grant and the request it is still "new" or "standby"): a lease handed over in one of them is
# deleted only once the response ended (sseplug_connection_closed) or the connection asks again.
_MAY_READ = frozenset({"new", "standby", "connecting", "open"})

log = logging.getLogger("sseplug.redis")


def lease_key(connection_id: str) -> str:
    """The key holding the token of the runner that owns stream ``connection_id``."""
    return f"sseplug:lease:{connection_id}"


def checkpoint_key(connection_id: str) -> str:
    """The key holding the last event id saved for stream ``connection_id``."""
    return f"sseplug:checkpoint:{connection_id}"


# KEYS[1] lease, KEYS[2] runners zset; ARGV[1] token, ARGV[2] ttl ms, ARGV[3] leases we hold,
# ARGV[4] streams in the config. Returns {1, live runners} when the lease is ours now: a free one
# taken (as SET NX PX) while we hold less than our fair share, or one still holding our token
# (not renewed while Redis was away) taken back; {0, live runners} otherwise. Counting the live
# runners here, at the moment of the decision, lets a dead runner's share be taken as soon as
# its heartbeat is older than the lease time, which is also when its leases have expired.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = math.max(1, redis.call('ZCOUNT', KEYS[2], now - tonumber(ARGV[2]), '+inf'))
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, live}
end
if owner or tonumber(ARGV[3]) >= math.ceil(tonumber(ARGV[4]) / live) then return {0, live} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, live}
"""

# KEYS[1] lease; ARGV[1] token, ARGV[2] ttl ms. 1 when extended, 0 when not ours any more.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# KEYS[1] lease; ARGV[1] token. 1 when deleted, 0 when not ours (left alone).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS[1] runners zset; ARGV[1] token, ARGV[2] ttl ms. The number of live runners, us included.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl * 3)
return redis.call('ZCARD', KEYS[1])
"""

# KEYS[1] lease, KEYS[2] checkpoint, KEYS[3] Redis stream (ignored without events);
# ARGV[1] token, ARGV[2] last event id, ARGV[3] maxlen ('' for none), ARGV[4] connection id,
# then (id, event, data) per event. 1 when written, 0 (nothing written) when the lease is not ours.
_SAVE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local maxlen = ARGV[3]
for i = 5, #ARGV, 3 do
  if maxlen == '' then
    redis.call('XADD', KEYS[3], '*', 'connection', ARGV[4], 'id', ARGV[i], 'event', ARGV[i + 1], 'data', ARGV[i + 2])
  else
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*',
               'connection', ARGV[4], 'id', ARGV[i], 'event', ARGV[i + 1], 'data', ARGV[i + 2])
  end
end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""


class RedisLeases:
    """The plugin: one instance per plugin manager, inert until configured with a ``[plugins.redis]`` table."""

    def __init__(self) -> None:
        self.url: str | None = None  # None: inert
        self.lease_ttl = DEFAULT_LEASE_TTL
        self.stream: str | None = None
        self.maxlen: int | None = None
        self.dead_letter_stream: str | None = None
        self.token = uuid.uuid4().hex
        self.total = 1  # streams in the config, shared by every runner
        self.live = 1  # live runners, from the last heartbeat
        self.held: dict[str, Connection] = {}  # leases we hold: their connections, to release them
        self.redis: redis.Redis | None = None
        self._handing_over: set[str] = set()  # held, asked to release, lease deleted once it stopped
        self._granted: set[str] = set()  # claim granted, connection may be reading
        self._claimed_once: set[str] = set()
        self._acquiring = 0  # SET NX calls in flight, counted against the share
        self._pending: dict[str, list[bytes]] = {}  # connection id -> (id, event, data) of the batch
        self._saved: dict[str, str] = {}  # connection id -> last checkpoint written
        self._renewer: gevent.Greenlet | None = None
        self._stop = gevent.event.Event()
        self._down = False  # Redis unreachable: logged once, until it answers again
        self._scripts: dict[str, Any] = {}

    def __repr__(self) -> str:
        where = _redacted(self.url) if self.url else "inactive"
        return f"<RedisLeases {where} holding {len(self.held)}>"

    @property
    def sseplug_sink(self) -> bool:
        """An event sink (the runner then drops its stdout sink) only when ``stream`` is set."""
        return self.url is not None and self.stream is not None

    @property
    def interval(self) -> float:
        """Seconds between renewals: a third of the lease time."""
        return self.lease_ttl / 3

    def _db(self) -> redis.Redis:  # a method: pluggy reads every attribute at registration
        if self.redis is None:
            raise RuntimeError("the redis plugin is not configured")
        return self.redis

    @property
    def share(self) -> int:
        """The most streams this runner takes while the live runners share them fairly."""
        return math.ceil(self.total / max(1, self.live))

    # -- configure -------------------------------------------------------------------------------

    @hookimpl
    def sseplug_configure(self, config: Config | None) -> None:
        """Validate ``[plugins.redis]`` and prepare the pool; connect only once a stream claims.
        Under ``sseplug check`` (``config.dry_run``) validate only: the plugin stays inert."""
        self.sseplug_unconfigure()
        if config is None or NAME not in config.plugins:
            return
        url, lease_ttl, stream, maxlen, dead_letter_stream = _settings(config)
        timeout = max(0.5, min(5.0, lease_ttl / 3))
        try:
            pool = redis.BlockingConnectionPool.from_url(  # parses the URL; connects nothing yet
                url,
                max_connections=MAX_REDIS_CONNECTIONS,
                timeout=timeout,  # waiting for a free pool connection
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),  # a failure must surface now, not after backoffs
            )
        except ValueError as error:
            raise ConfigError(
                f"invalid Redis URL: {error}; e.g. url = \"redis://127.0.0.1:6379/0\"",
                key=f"plugins.{NAME}.url", path=str(config.path),
            ) from error
        if getattr(config, "dry_run", False):  # sseplug check: validated, and the plugin stays inert
            pool.disconnect()
            return
        self.url, self.lease_ttl, self.stream, self.maxlen = url, lease_ttl, stream, maxlen
        self.dead_letter_stream = dead_letter_stream
        self.total = max(1, len(config.connections))
        self.token = uuid.uuid4().hex
        self.redis = redis.Redis(connection_pool=pool)
        self._scripts = {name: self.redis.register_script(source) for name, source in (
            ("acquire", _ACQUIRE), ("extend", _EXTEND), ("release", _RELEASE), ("heartbeat", _HEARTBEAT),
            ("save", _SAVE))}

    @hookimpl
    def sseplug_unconfigure(self) -> None:
        """Stop renewing, delete our leases and our heartbeat so others take over at once; go inert."""
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            self._stop.set()  # a round in progress finishes its Redis calls first
            renewer.join(timeout=self.interval)
            renewer.kill(block=True, timeout=self.interval)
            try:
                ids = list(self.held)
                pipe = self._db().pipeline(transaction=False)
                for connection_id in ids:
                    self._scripts["release"](keys=[lease_key(connection_id)], args=[self.token], client=pipe)
                pipe.zrem(RUNNERS_KEY, self.token)
                pipe.execute()
                if ids:
                    log.info("redis: released the leases of %d streams at %s", len(ids), _redacted(self.url))
            except RedisError as error:
                log.warning("redis: could not release %d leases at %s (%s: %s); they expire within %.1fs",
                            len(self.held), _redacted(self.url), type(error).__name__, error, self.lease_ttl)
        if self.redis is not None:
            self.redis.connection_pool.disconnect()
        self.url = self.redis = None
        self.held.clear()
        self._handing_over.clear()
        self._granted.clear()
        self._claimed_once.clear()
        self._pending.clear()
        self._saved.clear()
        self._acquiring = 0
        self._down = False

    # -- leases ----------------------------------------------------------------------------------

    @hookimpl
    def sseplug_claim(self, connection: Connection) -> bool | float | None:
        """True while this runner holds (or just took) the stream's lease, else seconds to wait."""
        if self.url is None:
            return None
        connection_id = connection.id
        self._granted.discard(connection_id)  # asking again: it is not reading now
        if self._renewer is None:
            self._start()
        if connection_id in self._handing_over:
            self._drop(connection_id)
        if connection_id not in self._claimed_once:
            self._claimed_once.add(connection_id)
            return random.uniform(0, self.interval)  # runners started together spread out
        try:
            if connection_id in self.held:  # a reconnect: check that the lease is still ours
                if self._scripts["extend"](keys=[lease_key(connection_id)], args=[self.token, self._ttl_ms]) == 1:
                    self._granted.add(connection_id)
                    return True
                self._lost(connection_id, "its lease expired or another runner took it")
            holding = len(self.held) + self._acquiring  # claims in flight count against the share
            self._acquiring += 1
            try:
                acquired, live = self._scripts["acquire"](
                    keys=[lease_key(connection_id), RUNNERS_KEY], args=[self.token, self._ttl_ms, holding, self.total]
                )
            finally:
                self._acquiring -= 1
        except RedisError as error:
            self._redis_failed(error)
            return self._wait()
        self._redis_ok()
        self.live = int(live)
        if acquired != 1:
            return self._wait()
        self.held[connection_id] = connection
        self._granted.add(connection_id)
        log.info("redis: took the lease of %r (holding %d, fair share %d of %d streams over %d runners)",
                 connection_id, len(self.held), self.share, self.total, self.live)
        return True

    @hookimpl
    def sseplug_connection_closed(self, connection: Connection) -> None:
        """A response ended: finish a hand-over waiting for it; forget the unsaved batch."""
        if self.url is None:
            return
        self._granted.discard(connection.id)
        self._pending.pop(connection.id, None)
        if connection.id in self._handing_over:
            self._drop(connection.id)

    @hookimpl
    def sseplug_connection_finished(self, connection: Connection) -> None:
        """The stream ended for good here: let another runner have it (and find its end) at once."""
        if self.url is None:
            return
        self._drop(connection.id)
        self._granted.discard(connection.id)

    def _start(self) -> None:
        """First claim: join the runners (heartbeat) and start renewing."""
        log.info("redis: runner token %s, leases in %s (lease_ttl %.1fs, %d streams)",
                 self.token, _redacted(self.url), self.lease_ttl, self.total)
        self._stop.clear()
        self._renewer = gevent.spawn(self._renew_forever)  # set before yielding to Redis: started once
        self._renewer.link_exception(_renewer_died)
        try:
            self.live = self._heartbeat()
        except RedisError as error:
            self._redis_failed(error)

    def _renew_forever(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.renew()
            except Exception:  # a bug must not end renewals: the leases would expire under running streams
                log.exception("redis: a renewal round failed")

    def renew(self) -> None:
        """One renewal round: heartbeat, extend every held lease, stop the streams whose lease
        could not be extended, hand over what exceeds the fair share."""
        ids = list(self.held)
        try:
            self.live = self._heartbeat()
            pipe = self._db().pipeline(transaction=False)
            for connection_id in ids:
                self._scripts["extend"](keys=[lease_key(connection_id)], args=[self.token, self._ttl_ms], client=pipe)
            results = pipe.execute(raise_on_error=False) if ids else []
        except RedisError as error:
            self._redis_failed(error)
            return
        self._redis_ok()
        for connection_id, result in zip(ids, results):
            if result != 1:
                why = f"{type(result).__name__}: {result}" if isinstance(result, Exception) else \
                    "its lease expired or another runner took it"
                self._lost(connection_id, why)
        self._rebalance()

    def _rebalance(self) -> None:
        keep = [cid for cid in self.held if cid not in self._handing_over]
        extra = len(keep) - self.share
        for connection_id in keep[len(keep) - extra:] if extra > 0 else ():
            log.info("redis: handing %r over (holding %d, fair share %d of %d streams over %d runners)",
                     connection_id, len(keep), self.share, self.total, self.live)
            self._handing_over.add(connection_id)
            connection = self.held[connection_id]
            connection.release()
            if connection_id not in self._granted or connection.state not in _MAY_READ:
                self._drop(connection_id)  # not reading, and it claims again before it reads

    def _drop(self, connection_id: str) -> None:
        """Give a lease back: delete it if it is still ours, forget it."""
        self._handing_over.discard(connection_id)
        self._pending.pop(connection_id, None)
        if self.held.pop(connection_id, None) is None:
            return
        try:
            self._scripts["release"](keys=[lease_key(connection_id)], args=[self.token])
        except RedisError as error:  # it expires by itself
            self._redis_failed(error)

    def _lost(self, connection_id: str, why: str) -> None:
        """The lease is gone (or cannot be checked): stop the stream now, without touching the key."""
        connection = self.held.pop(connection_id, None)
        self._handing_over.discard(connection_id)
        self._pending.pop(connection_id, None)
        if connection is None:
            return
        if not self._down:
            log.warning("redis: stopping %r: %s", connection_id, why)
        connection.release()

    def _redis_failed(self, error: Exception) -> None:
        """Redis did not answer: every held stream stops (no renewal, no save), once logged."""
        if not self._down:
            self._down = True
            log.error("redis: cannot reach Redis at %s (%s: %s); stopping %d streams, standing by until it answers",
                      _redacted(self.url), type(error).__name__, error, len(self.held))
        for connection_id in list(self.held):
            self._lost(connection_id, "Redis is unreachable")

    def _redis_ok(self) -> None:
        if self._down:
            self._down = False
            log.info("redis: Redis at %s answers again; claiming streams", _redacted(self.url))

    def _heartbeat(self) -> int:
        """Say this runner is alive; the number of live runners."""
        return max(1, int(self._scripts["heartbeat"](keys=[RUNNERS_KEY], args=[self.token, self._ttl_ms])))

    def _wait(self) -> float:
        return random.uniform(self.lease_ttl / 6, self.lease_ttl / 3)

    @property
    def _ttl_ms(self) -> int:
        return int(self.lease_ttl * 1000)

    # -- checkpoints and sink --------------------------------------------------------------------

    @hookimpl
    def sseplug_checkpoint_load(self, connection: Connection) -> str | None:
        """The checkpoint in Redis, else the request's own start: Redis is the only authority
        (a local store or the connection's memory may be past what the Redis stream holds)."""
        if self.url is None:
            return None
        self._pending.pop(connection.id, None)
        start = connection.request.last_event_id or ""
        try:
            value = self._db().get(checkpoint_key(connection.id))
        except RedisError as error:
            self._redis_failed(error)  # released: the connection goes back to standby unread
            self._saved.pop(connection.id, None)
            return start
        self._redis_ok()
        loaded = start if value is None else value.decode("utf-8", "surrogateescape")
        self._saved[connection.id] = loaded
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
        """One script: if the lease still holds our token, XADD the batch and save the
        checkpoint; if not, write nothing and stop the stream (another runner owns it)."""
        if self.url is None:
            return
        connection_id = connection.id
        pending = self._pending.pop(connection_id, None)
        if not pending and self._saved.get(connection_id) == last_event_id:
            return  # nothing new to write
        stream = self.stream.format(connection=connection_id) if self.stream is not None else ""
        try:
            written = self._scripts["save"](
                keys=[lease_key(connection_id), checkpoint_key(connection_id), stream or lease_key(connection_id)],
                args=[self.token, _utf8(last_event_id), "" if self.maxlen is None else self.maxlen,
                      connection_id, *(pending or ())],
            )
        except RedisError as error:
            self._saved.pop(connection_id, None)
            self._redis_failed(error)  # stops every held stream
            connection.release()
            return
        self._redis_ok()
        if written == 1:
            self._saved[connection_id] = last_event_id
            return
        self._saved.pop(connection_id, None)
        if connection_id in self.held:
            self._lost(connection_id, f"not saving event id {last_event_id!r}: another runner holds its lease")
        else:
            log.warning("redis: not saving %r at event id %r: this runner does not hold its lease",
                        connection_id, last_event_id)
            connection.release()


plugin = RedisLeases()
"""The instance the ``redis`` entry point registers (``sseplug_redis:plugin``)."""


def _renewer_died(greenlet: gevent.Greenlet) -> None:
    log.error("redis: the lease renewer died: %r; leases expire and streams stop", greenlet.exception)


def _settings(config: Config) -> tuple[str, float, str | None, int | None, str | None]:
    """``(url, lease_ttl, stream, maxlen, dead_letter_stream)`` from ``[plugins.redis]``, or a
    ``ConfigError`` naming the key."""
    read = config.plugin_settings(NAME, known=KEYS)
    url = read.string("url", example='"redis://127.0.0.1:6379/0"')
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise read.error("url", f"expected a redis://, rediss:// or unix:// URL, got {url!r}; "
                                'e.g. url = "redis://127.0.0.1:6379/0"')
    lease_ttl = read.seconds("lease_ttl", DEFAULT_LEASE_TTL, minimum=MIN_LEASE_TTL)
    stream = _key_pattern(read, "stream", '"sseplug:{connection}"')
    maxlen = read.integer("maxlen", None, minimum=1, example="100000")
    if maxlen is not None and stream is None:
        raise read.error("maxlen", "maxlen trims the Redis streams: set stream too, or remove maxlen")
    return url, lease_ttl, stream, maxlen, _key_pattern(read, "dead_letter_stream", '"sseplug:dead:{connection}"')


def _key_pattern(read: TableReader, key: str, example: str) -> str | None:
    """A Redis key with an optional ``{connection}`` placeholder, or ``None`` when not given."""
    pattern = read.template(key, None, example=example)
    if pattern == "":
        raise read.error(key, f'expected a key pattern, got ""; e.g. {key} = {example}')
    return pattern


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (e.g. from JSON "\ud800"): keep them visible
        return text.encode("utf-8", "backslashreplace")


def _redacted(url: str | None) -> str:
    """The URL without its password, for logs."""
    if not url:
        return "(no url)"
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))

