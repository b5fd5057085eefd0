"""Redis faults: the guard (every stream to standby before the session could have expired unseen),
Redis unreachable and back, restarted (with or without its data: ``on_lost_state``)."""

from __future__ import annotations

import time
import uuid

from redis.exceptions import RedisError

from .scripts import MARKER_KEY, SESSION_PREFIX, checkpoint_key, lease_key, session_key
from .state import GUARD, FleetState, log

__all__ = ["Faults"]



class Faults(FleetState):
    """What a runner does when Redis cannot confirm its session, fails a call, or lost its state."""

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
