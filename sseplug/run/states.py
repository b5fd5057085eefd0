"""Connections per state: the one tally the runner's stats line, ``/metrics`` and ``/ready`` read.

Each connection's ``state`` is read once, when the tally is taken (a connection changes state
in its own greenlet; nothing here is kept up to date), so one scrape or one stats line counts
every connection in exactly one state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

from ..connection import ConnectionState

__all__ = ["READY_STATES", "HasState", "StateCounts"]

_S = ConnectionState
READY_STATES = frozenset({_S.OPEN, _S.ENDED})
"""``/ready`` holds while every connection is open or ended cleanly; any other is waited for."""


class HasState(Protocol):
    """What is tallied: a connection, or anything with its ``state``."""

    @property
    def state(self) -> ConnectionState:
        """Where the connection is in its life."""
        ...


C = TypeVar("C", bound=HasState)


class StateCounts(Generic[C]):
    """The connections given, each with the state it was in when the tally was taken, in order."""

    __slots__ = ("entries", "_counts")

    def __init__(self, connections: Iterable[C]) -> None:
        self.entries: tuple[tuple[C, ConnectionState], ...] = tuple(
            (connection, connection.state) for connection in connections
        )
        self._counts = Counter(state for _, state in self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def count(self, *states: ConnectionState) -> int:
        """How many connections are in one of ``states``."""
        return sum(self._counts[state] for state in states)

    def per_state(self) -> dict[ConnectionState, int]:
        """Every state, in declaration order, with its count (0 included)."""
        return {state: self._counts[state] for state in ConnectionState}

    def not_ready(self) -> list[tuple[C, ConnectionState]]:
        """The connections ``/ready`` waits for (not in ``READY_STATES``), in order, with their state."""
        return [(connection, state) for connection, state in self.entries if state not in READY_STATES]

    def summary(self) -> str:
        """The runner's stats line: open and connecting count as connected, waiting as reconnecting."""
        return (f"{self.count(_S.OPEN, _S.CONNECTING)} connected, {self.count(_S.WAITING)} reconnecting, "
                f"{self.count(_S.STANDBY)} standby, {self.count(_S.FAILED)} failed, {self.count(_S.ENDED)} ended")
