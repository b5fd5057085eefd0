"""The fleet-wide reconnect budget: every connect of every runner takes a token from one bucket
in Redis (``reconnect_rate`` per second), so an upstream that restarts is not hit by every stream
of the fleet at once, and neither is it when the fleet starts."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
from redis.exceptions import RedisError

from .scripts import BUDGET_KEY

if TYPE_CHECKING:
    import redis

__all__ = ["ReconnectBudget"]

TICK = 0.05  # seconds between two asks for tokens
BURST = 0.05  # tokens the bucket holds, in seconds of the rate: any 1 s window gets <= 1.05 x rate
WAIT = 1.0  # seconds a connection waits for a token before its claim is asked again


class ReconnectBudget:
    """Tokens for the connections of this runner, in the order they asked, from the shared bucket."""

    def __init__(self, rate: float, script: Any, client: redis.Redis) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate * BURST)
        self._script = script
        self._client = client
        self._queue: deque[str] = deque()  # connection ids waiting, in order
        self._waiters: dict[str, gevent.event.Event] = {}

    def take(self, connection_id: str) -> bool:
        """Wait up to ``WAIT`` seconds for a token; False when none came (ask again)."""
        waiter = self._waiters.get(connection_id)
        if waiter is None:
            waiter = self._waiters[connection_id] = gevent.event.Event()
            self._queue.append(connection_id)
        if not waiter.wait(WAIT):
            return False
        del self._waiters[connection_id]
        return True

    def forget(self, connection_id: str) -> None:
        """The connection stopped: it waits no more (a token granted to it is not used)."""
        self._waiters.pop(connection_id, None)

    def dispense(self, stop: gevent.event.Event) -> None:
        """Until ``stop``: every ``TICK``, ask the bucket for as many tokens as connections wait
        (a Redis that does not answer grants none) and hand them out in order."""
        while not stop.wait(TICK):
            queue = self._queue
            while queue and queue[0] not in self._waiters:
                queue.popleft()
            if not queue:
                continue
            try:
                granted = int(self._script(keys=[BUDGET_KEY], args=[self.rate, self.capacity, len(queue)],
                                           client=self._client))
            except RedisError:
                continue  # the coordinator reports Redis's state
            for _ in range(min(granted, len(queue))):
                waiter = self._waiters.get(queue.popleft())
                if waiter is not None:
                    waiter.set()
