"""The fleet-wide reconnect budget: every connect of every runner takes a token from one bucket
in Redis (``reconnect_rate`` per second), so an upstream that restarts is not hit by every stream
of the fleet at once, and neither is it when the fleet starts."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import time

import gevent
import gevent.event
from redis.exceptions import RedisError

from .scripts import BUDGET_KEY

if TYPE_CHECKING:
    import redis

__all__ = ["ReconnectBudget"]

TICK = 0.05  # seconds between two asks for tokens; the bucket holds one tick's worth of the rate
FRESH = 0.04  # seconds a token is good for beyond this runner's usual delay in using one
USUAL = 32  # the usual delay: the least of the last USUAL delays from an ask to the first use
WAIT = 1.0  # seconds a connection waits for a token before its claim is asked again
# Connects in any 1 s window use tokens granted within 1 + FRESH seconds of one another (a runner's
# usual delay shifts all of its connects alike): at most (1 + FRESH + TICK) x rate, even when a
# stalled runner wakes up holding tokens of the past. A runner always that slow still connects.


class ReconnectBudget:
    """Tokens for the connections of this runner, in the order they asked, from the shared bucket."""

    def __init__(self, rate: float, script: Any, client: redis.Redis) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate * TICK)
        self._script = script
        self._client = client
        self._queue: deque[str] = deque()  # connection ids waiting, in order
        self._waiters: dict[str, gevent.event.Event] = {}
        self._batch_of: dict[str, list[float]] = {}  # id -> [asked, first used] of the tokens granted with its own
        self._delays: deque[float] = deque([0.0], maxlen=USUAL)  # from the ask to the use, recent tokens

    def take(self, connection_id: str) -> bool:
        """Wait up to ``WAIT`` seconds for a token; False when none came or it came too late to
        be used now (ask again)."""
        waiter = self._waiters.get(connection_id)
        if waiter is None:
            waiter = self._waiters[connection_id] = gevent.event.Event()
            self._queue.append(connection_id)
        if not waiter.wait(WAIT):
            return False
        del self._waiters[connection_id]
        # a runner that stalled before it could use a batch of tokens must not add its late connects
        # to the others' of this second; going through the batch after a prompt start is no stall
        batch = self._batch_of.pop(connection_id, None)
        if batch is None:  # forgotten meanwhile
            return False
        if len(batch) == 1:
            batch.append(time.monotonic())
        delay = batch[1] - batch[0]
        usual = min(self._delays)
        self._delays.append(delay)
        return delay <= usual + FRESH

    def forget(self, connection_id: str) -> None:
        """The connection stopped: it waits no more (a token granted to it is not used)."""
        self._waiters.pop(connection_id, None)
        self._batch_of.pop(connection_id, None)

    def dispense(self, stop: gevent.event.Event) -> None:
        """Until ``stop``: hand out tokens every ``TICK``."""
        while not stop.wait(TICK):
            self.grant()

    def grant(self) -> int:
        """Ask the bucket for as many tokens as connections wait and hand them out in order; the
        number handed out (none when Redis does not answer: the coordinator reports its state)."""
        queue = self._queue
        while queue and queue[0] not in self._waiters:
            queue.popleft()
        if not queue:
            return 0
        batch = [time.monotonic()]  # when asked; then when the first of these tokens was used
        try:
            granted = min(len(queue), int(self._script(keys=[BUDGET_KEY], args=[self.rate, self.capacity, len(queue)],
                                                       client=self._client)))
        except RedisError:
            return 0
        for _ in range(granted):
            connection_id = queue.popleft()
            waiter = self._waiters.get(connection_id)
            if waiter is not None:
                self._batch_of[connection_id] = batch
                waiter.set()
        return granted
