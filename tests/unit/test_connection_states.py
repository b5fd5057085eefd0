"""sseplug.connection without a socket: the state table, the one interrupt value, and the names
plugins and metrics read (kept where they were)."""

from __future__ import annotations

from typing import Any

import pytest

from sseplug import hookimpl
from sseplug.connection import TRANSITIONS, Connection, ConnectionState, ConnectionStats, HttpFor, Interrupt
from sseplug.models import SSERequest
from sseplug.plugins import PluginManager

S = ConnectionState


def connection(**request: Any) -> Connection:
    def no_http(url: str) -> Any:
        raise AssertionError("no request in these tests")

    http_for: HttpFor = no_http
    return Connection("c", SSERequest("http://127.0.0.1:1/", **request), http_for=http_for, plugins=PluginManager())


def test_every_state_has_its_row_and_final_states_lead_nowhere() -> None:
    assert set(TRANSITIONS) == set(ConnectionState)
    assert all(not TRANSITIONS[state] for state in ConnectionState if state.final)
    assert all({S.ENDED, S.FAILED} <= TRANSITIONS[state] for state in ConnectionState if not state.final)
    assert S.NEW not in set().union(*TRANSITIONS.values())


@pytest.mark.parametrize(("start", "to"), [
    (S.NEW, S.OPEN), (S.NEW, S.WAITING), (S.STANDBY, S.OPEN), (S.WAITING, S.OPEN), (S.WAITING, S.WAITING),
    (S.ENDED, S.CONNECTING), (S.FAILED, S.ENDED), (S.OPEN, S.NEW),
])
def test_an_impossible_transition_is_refused(start: ConnectionState, to: ConnectionState) -> None:
    c = connection()
    c._state = start
    with pytest.raises(RuntimeError, match=f"no transition from {start} to {to}"):
        c._enter(to)
    assert c.state is start


def test_a_life_follows_the_table() -> None:
    c = connection()
    for state in (S.STANDBY, S.CONNECTING, S.OPEN, S.WAITING, S.CONNECTING, S.OPEN, S.ENDED):
        c._enter(state)
    assert c.state == "ended" and c.state.final


def pending(c: Connection) -> Interrupt | None:
    return c._interrupt


def test_stop_outranks_release_which_outranks_restart() -> None:
    c = connection()
    c.restart()
    assert pending(c) is Interrupt.RESTART and c._wakeup.is_set()
    c.release()
    c.restart()  # a release pending already reconnects
    assert pending(c) is Interrupt.RELEASE
    c.stop()
    c.release()
    assert pending(c) is Interrupt.STOP and c.stopping


def test_an_interrupt_is_taken_once_but_a_stop_stays() -> None:
    c = connection()
    c.restart()
    assert c._take(Interrupt.RELEASE) is None  # not the one asked about: still pending
    assert c._take(Interrupt.RESTART) is Interrupt.RESTART
    assert pending(c) is None and not c._wakeup.is_set()
    c.stop()
    assert c._take(Interrupt.STOP) is Interrupt.STOP and c._take(Interrupt.STOP) is Interrupt.STOP


def test_the_interrupt_names_the_close_reason() -> None:
    assert [i.value for i in Interrupt] == ["restarted", "released", "stopped"]


def test_a_connection_stopped_before_it_ran_ends_cleanly_without_a_request() -> None:
    done: list[bool] = []
    c = connection(on_done=lambda: done.append(True))
    c.stop()
    c.run()
    assert c.state is S.ENDED and done == [True] and c.error is None


def test_the_counters_read_one_stats_value_under_their_old_names() -> None:
    c = connection()
    assert c.stats == ConnectionStats()
    c.stats.bytes_total, c.stats.dead_letters = 10, 2
    c.events_total = 7  # metrics tests set it
    assert (c.events_total, c.bytes_total, c.dead_letters, c.reconnects_total) == (7, 10, 2, 0)
    assert (c.events_filtered, c.handler_errors, c.events_skipped, c.last_event_at) == (0, 0, 0, None)
    assert (c.attempt, c.backoff_step, c.retry_ms) == (0, 0, None)


class Handles:
    @hookimpl
    def sseplug_handle_event(self, event: Any) -> None: ...


class Saves:
    @hookimpl
    def sseplug_checkpoint_save(self, last_event_id: str) -> None: ...


class Deserializes:
    @hookimpl
    def sseplug_deserialize(self, event: Any) -> Any: ...


def test_a_read_is_lendable_while_nothing_but_the_parser_runs_per_batch() -> None:
    c = connection()
    assert c.lendable()
    for plugin in (Handles(), Saves(), Deserializes()):
        c._plugins.register(plugin)
        assert not c.lendable()  # a plugin could yield to the hub: an iterator's Timeout must not land in it
        c._plugins.unregister(plugin)
        assert c.lendable()


@pytest.mark.parametrize("callback", ["on_data", "on_comment", "on_bytes"])
def test_a_request_callback_per_batch_keeps_the_read_in_its_own_greenlet(callback: str) -> None:
    assert not connection(**{callback: lambda value: None}).lendable()
