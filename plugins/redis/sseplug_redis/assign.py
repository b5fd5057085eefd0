"""Which runner should hold which stream: rendezvous hashing with bounded loads (pure, no I/O).

Every runner computes the same answer from the same inputs (the config's stream ids and the
tokens of the live runners, read from Redis), so ownership is assigned, not polled for: a runner
claims only its own share. Each stream ranks the runners by a hash of (runner, stream); streams
are taken in a fixed order (their own hash) and each goes to the best-ranked runner that still has
room, room being ``ceil(streams / runners)``. So the spread is even (no runner over its fair
share), and when a runner joins or leaves, mostly only the streams it must take or give move.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence

__all__ = ["assign", "share_of"]


def _rank(key: str) -> bytes:
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def assign(stream_ids: Iterable[str], runners: Sequence[str]) -> dict[str, str]:
    """Stream id -> the token of the runner that should hold it (``{}`` without runners)."""
    ids = list(dict.fromkeys(stream_ids))
    tokens = sorted(set(runners))
    if not tokens:
        return {}
    room = math.ceil(len(ids) / len(tokens))
    load = dict.fromkeys(tokens, 0)
    owner: dict[str, str] = {}
    for stream in sorted(ids, key=_rank):
        suffix = "\0" + stream
        for token in sorted(tokens, key=lambda t: _rank(t + suffix), reverse=True):
            if load[token] < room:
                load[token] += 1
                owner[stream] = token
                break
    return owner


def share_of(token: str, stream_ids: Iterable[str], runners: Sequence[str]) -> list[str]:
    """The streams ``token`` should hold, in config order."""
    ids = list(stream_ids)
    owner = assign(ids, runners)
    return [stream for stream in ids if owner.get(stream) == token]
