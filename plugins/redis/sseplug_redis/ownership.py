"""Ownership, assigned and not polled for: the coordinator's round (heartbeat, the share from the
live runners, claims and hand-overs in batches, paced starts) and what follows losing a lease or
the session."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable
from typing import Any

import gevent
from redis.exceptions import RedisError

from .assign import share_of
from .scripts import MARKER_KEY, RUNNERS_KEY, SESSION_PREFIX, checkpoint_key, lease_key, session_key
from .state import BATCH, GUARD, START_BATCH, START_PAUSE, FleetState, log

__all__ = ["Ownership", "died"]



class Ownership(FleetState):
    """The coordinator: one round every ``lease_ttl / 3`` (sooner when a peer's session lapses)."""

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
            self._starter.link_exception(died)

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


def died(greenlet: gevent.Greenlet[..., Any]) -> None:
    """Link to a coordination greenlet: one ERROR if it ends with an exception."""
    log.error("redis: a coordination greenlet died: %r; the guard stops the streams before their leases "
              "could expire", greenlet.exception)
