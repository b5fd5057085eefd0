"""The redis plugin's state, in one place: what a runner of the fleet knows and holds. The parts
that act on it by job (``ownership.py``, ``faults.py``, ``sink.py``) derive from ``FleetState``,
and the plugin (``RedisLeases``) is all of them."""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import redis

from sseplug.redaction import public_url

from .budget import ReconnectBudget
from .settings import DEFAULT_LEASE_TTL

if TYPE_CHECKING:
    from sseplug.connection import Connection
    from sseplug.run.streams import StreamControl

__all__ = ["FleetState", "log", "MAX_REDIS_CONNECTIONS", "BATCH", "START_BATCH", "START_PAUSE", "GUARD"]

MAX_REDIS_CONNECTIONS = 64  # for the streams' saves and loads (the coordinator has two of its own)
BATCH = 500  # keys per claim or release script: a few milliseconds of Redis time each
START_BATCH = 50  # streams started at once, then a pause for the hub (1,000 a second at most)
START_PAUSE = 0.05
GUARD = 0.8  # streams stop this share of lease_ttl after the last confirmed heartbeat was sent


log = logging.getLogger("sseplug.redis")  # every part of the plugin logs here

class FleetState:
    """Settings, Redis clients, the session, the leases held and each stream's checkpoint facts."""

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

    @property
    def _ttl_ms(self) -> int:
        return int(self.lease_ttl * 1000)
