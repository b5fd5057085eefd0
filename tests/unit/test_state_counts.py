"""Connections per state (``StateCounts``): the one tally behind the runner's stats line,
``/metrics`` and ``/ready``, taken from anything with a ``state`` (no socket, no connection)."""

from __future__ import annotations

import dataclasses
import json
from typing import cast

from sseplug._dispatch import ConnectionStats
from sseplug.connection import Connection
from sseplug.connection import ConnectionState as S
from sseplug.run.metrics import MetricsServer
from sseplug.run.states import READY_STATES, StateCounts


@dataclasses.dataclass(frozen=True)
class Stub:
    id: str
    state: S


class Moving:
    """A connection whose state moves on at every read (it runs in another greenlet)."""

    def __init__(self) -> None:
        self.reads = 0

    @property
    def state(self) -> S:
        self.reads += 1
        return (S.CONNECTING, S.OPEN, S.WAITING)[min(self.reads - 1, 2)]


MIXED = [Stub("a", S.OPEN), Stub("b", S.WAITING), Stub("c", S.OPEN), Stub("d", S.ENDED), Stub("e", S.FAILED),
         Stub("f", S.CONNECTING), Stub("g", S.STANDBY), Stub("h", S.NEW)]


def test_every_state_is_counted_zeros_included_in_declaration_order() -> None:
    tally = StateCounts(MIXED[:3])
    assert tally.per_state() == {S.NEW: 0, S.STANDBY: 0, S.CONNECTING: 0, S.OPEN: 2, S.WAITING: 1, S.ENDED: 0,
                                 S.FAILED: 0}
    assert list(tally.per_state()) == list(S)
    assert len(tally) == 3 and tally.count(S.OPEN, S.WAITING) == 3 and tally.count() == 0


def test_the_stats_line_counts_connecting_as_connected_and_waiting_as_reconnecting() -> None:
    assert StateCounts(MIXED).summary() == "3 connected, 1 reconnecting, 1 standby, 1 failed, 1 ended"
    assert StateCounts([]).summary() == "0 connected, 0 reconnecting, 0 standby, 0 failed, 0 ended"


def test_ready_waits_for_every_connection_not_open_and_not_ended_in_order() -> None:
    assert READY_STATES == {S.OPEN, S.ENDED}
    waiting = StateCounts(MIXED).not_ready()
    assert [(stub.id, state) for stub, state in waiting] == [
        ("b", S.WAITING), ("e", S.FAILED), ("f", S.CONNECTING), ("g", S.STANDBY), ("h", S.NEW)]
    assert StateCounts([Stub("a", S.OPEN), Stub("d", S.ENDED)]).not_ready() == []


def test_each_state_is_read_once_so_every_answer_agrees() -> None:
    moving = Moving()
    tally = StateCounts([moving])
    assert tally.per_state()[S.CONNECTING] == 1 and tally.not_ready() == [(moving, S.CONNECTING)]
    assert tally.summary().startswith("1 connected") and tally.entries == ((moving, S.CONNECTING),)
    assert moving.reads == 1


@dataclasses.dataclass
class Scraped:
    """What ``/metrics`` and ``/ready`` read of a connection."""

    id: str
    state: S
    error: BaseException | None = None
    stats: ConnectionStats = dataclasses.field(default_factory=ConnectionStats)


def test_metrics_and_ready_answer_from_the_tally_without_a_socket() -> None:
    connections = [Scraped("a", S.OPEN), Scraped("b", S.FAILED, error=ValueError("gone")), Scraped("c", S.OPEN)]
    server = MetricsServer(("127.0.0.1", 0), lambda: cast(list[Connection], connections))  # never started
    totals = next(family for family in server.collect() if family.name == "sseplug_connections")
    assert {sample.labels["state"]: sample.value for sample in totals.samples} == {
        str(state): count for state, count in StateCounts(connections).per_state().items()}
    answered: list[str] = []
    body = server._app({"PATH_INFO": "/ready"}, lambda status, headers: answered.append(status))
    assert answered == ["503 Service Unavailable"]
    assert json.loads(body[0]) == {"ready": False, "waiting": [{"id": "b", "state": "failed", "error": "gone"}]}
