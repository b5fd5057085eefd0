"""Built-in plugin ``retry``: the default reconnection policy (DESIGN.md "Reconnection")."""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..errors import HTTPStatusError, SSEError
from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from ..connection import Connection


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Wait the server's ``retry:`` (else ``initial``) doubled per consecutive failure, capped.

    With ``jitter`` the wait is drawn uniformly from ``[0, that]`` ("full jitter"), so that many
    clients dropped at once do not come back at once. A ``Retry-After`` the server sent is a floor.
    """

    initial: float = 1.0
    multiplier: float = 2.0
    cap: float = 30.0
    jitter: bool = True

    def delay(self, attempt: int, retry_ms: int | None = None, retry_after: float | None = None) -> float:
        """Seconds to wait before reconnect number ``attempt`` (1 for the first)."""
        base = self.initial if retry_ms is None else retry_ms / 1000
        ceiling = min(self.cap, base * self.multiplier ** max(attempt - 1, 0))
        wait = random.uniform(0, ceiling) if self.jitter else ceiling
        return max(wait, retry_after) if retry_after is not None else wait


def retry_after(error: SSEError | None, now: datetime | None = None) -> float | None:
    """Seconds asked for by the ``Retry-After`` header (delta seconds or HTTP date) of ``error``."""
    if not isinstance(error, HTTPStatusError):
        return None
    value = next((v for k, v in error.headers.items() if k.lower() == "retry-after"), "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


POLICY = RetryPolicy()


@hookimpl(trylast=True)
def sseplug_retry_decision(connection: Connection, attempt: int, error: SSEError | None) -> float:
    """Reconnect after the policy's wait."""
    return POLICY.delay(attempt, connection.retry_ms, retry_after(error))
