"""Built-in plugin ``retry``: the default reconnection policy (docs/design.rst, "Reconnection")."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from ..errors import HTTPStatusError, SSEError
from ..hookspecs import hookimpl
from ..models import MAX_WAIT

__all__ = ["POLICY", "RetryPolicy", "retry_after", "sseplug_retry_decision"]

if TYPE_CHECKING:
    from ..connection import Connection

log = logging.getLogger("sseplug.retry")

_MAX_DOUBLINGS = 64  # 2**64 times any base is past every cap: no need to compute larger powers


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Wait the server's ``retry:`` (else ``initial``) doubled per reconnect step, capped.

    The base wait is at least ``minimum``, so that ``retry: 0`` cannot make a reconnect loop
    spin; every step doubles it up to ``cap``. With ``jitter`` the wait is drawn uniformly from
    ``[minimum, that]`` ("full jitter"), so that many clients dropped at once do not come back
    at once. A ``Retry-After`` the server sent is a floor.
    """

    initial: float = 1.0
    multiplier: float = 2.0
    cap: float = 30.0
    minimum: float = 0.01
    jitter: bool = True

    def delay(self, step: int, retry_ms: int | None = None, retry_after: float | None = None) -> float:
        """Seconds to wait before the reconnect of backoff ``step`` (1 for the first)."""
        base = max(self.minimum, self.initial if retry_ms is None else min(retry_ms, self.cap * 1000) / 1000)
        ceiling = min(self.cap, base * self.multiplier ** min(max(step - 1, 0), _MAX_DOUBLINGS))
        wait = random.uniform(self.minimum, ceiling) if self.jitter and ceiling > self.minimum else ceiling
        return max(wait, retry_after) if retry_after is not None else wait


def retry_after(error: SSEError | None, now: datetime | None = None) -> float | None:
    """Seconds asked for by the ``Retry-After`` header (delta seconds or HTTP date) of ``error``,
    uncapped (``inf`` for absurd values)."""
    if not isinstance(error, HTTPStatusError):
        return None
    value = _header(error)
    if value.isascii() and value.isdigit():
        return float(value)  # floats take any number of digits (inf past 1e308), unlike int()
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


POLICY = RetryPolicy()


@hookimpl(trylast=True)
def sseplug_retry_decision(connection: Connection, error: SSEError | None) -> float:
    """Reconnect after the policy's wait for the connection's backoff step, from the server's
    ``retry:`` else the request's ``retry_delay``; a ``Retry-After``
    longer than ``MAX_WAIT`` is capped to it (and logged)."""
    asked = retry_after(error)
    if asked is not None and asked > MAX_WAIT:
        shown = _header(error)
        log.warning("connection %r: the server's Retry-After %r asks for %s s; waiting %g s instead",
                    connection.id, shown if len(shown) <= 40 else shown[:40] + "...",
                    "inf" if math.isinf(asked) else f"{asked:.0f}", MAX_WAIT)
        asked = MAX_WAIT
    retry_ms = connection.retry_ms  # the server's, else the request's retry_delay
    if retry_ms is None:
        retry_ms = round(connection.request.retry_delay * 1000)
    return POLICY.delay(connection.backoff_step, retry_ms, asked)


def _header(error: SSEError | None) -> str:
    """The ``Retry-After`` header of ``error`` (whatever its case), stripped; ``""`` without one."""
    headers = getattr(error, "headers", {})
    return str(next((v for k, v in headers.items() if k.lower() == "retry-after"), "")).strip()
