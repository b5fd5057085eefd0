"""sseplug._dispatch: the handler chain and its errors policy (retries, backoff, skip, dead letter),
filters, end and error events, checkpoint and hand-over; no socket, and sleep is recorded, not slept."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from sseplug import hookimpl
from sseplug._dispatch import ON_DATA, ConnectionStats, Dispatcher
from sseplug.errors import PluginError, ServerEventError, TemporaryPluginError
from sseplug.models import SSERequest, SSEResponse
from sseplug.plugins import PluginManager
from sseplug.route import ErrorPolicy, Route

URL = "http://127.0.0.1:1/stream"


@dataclass
class Owner:
    id: str = "c"
    url: str = URL
    last_event_id: str = ""


class Flaky:
    """Fails on the event ids in ``fails`` (id -> failures left), records what it handled."""

    def __init__(self, fails: dict[str, int] | None = None, error: type[Exception] = ValueError) -> None:
        self.fails = dict(fails or {})
        self.error = error
        self.seen: list[str] = []

    @hookimpl
    def sseplug_handle_event(self, event: SSEResponse) -> None:
        if self.fails.get(event.id, 0) > 0:
            self.fails[event.id] -= 1
            raise self.error(f"cannot take {event.id}")
        self.seen.append(event.id)


class Retryable(Exception):
    retryable = True


@dataclass
class Recorder:
    """Checkpoints, dead letters (stored when ``store``) and the sleeps asked for."""

    store: bool = True
    saved: list[str] = field(default_factory=list)
    letters: list[tuple[str, str, int]] = field(default_factory=list)

    @hookimpl
    def sseplug_checkpoint_save(self, last_event_id: str) -> None:
        self.saved.append(last_event_id)

    @hookimpl
    def sseplug_dead_letter(self, event: SSEResponse, plugin: str, attempts: int) -> bool | None:
        self.letters.append((event.id, plugin, attempts))
        return True if self.store else None


def events(*ids: str, event: str = "message") -> list[SSEResponse]:
    return [SSEResponse(i, event, f"data {i}") for i in ids]


def make(*handlers: tuple[str, object], errors: ErrorPolicy | None = None, recorder: Recorder | None = None,
         **request: Any) -> tuple[Dispatcher, list[float], list[list[str]], Recorder]:
    """A dispatcher over ``handlers`` (registered in call order) with a recorded sleep and deliver."""
    pm = PluginManager()
    recorder = recorder or Recorder()
    pm.register(recorder, "recorder")
    for name, plugin in reversed(handlers):  # pluggy calls the last registered first
        pm.register(plugin, name)
    slept: list[float] = []
    delivered: list[list[str]] = []
    dispatcher = Dispatcher(
        Owner(), SSERequest(URL, **request), plugins=pm, route=Route(errors=errors or ErrorPolicy()),
        deliver=lambda batch: delivered.append([e.id for e in batch]), sleep=slept.append, clock=lambda: 123.0,
    )
    return dispatcher, slept, delivered, recorder


def test_the_handler_chain_is_the_plugins_in_call_order_then_on_data() -> None:
    dispatcher, *_ = make(("a", Flaky()), ("b", Flaky()), on_data=lambda event: None)
    assert [name for name, _ in dispatcher.handler_chain()] == ["a", "b", ON_DATA]


def test_a_batch_is_handled_checkpointed_delivered_and_counted() -> None:
    got: list[str] = []
    dispatcher, slept, delivered, recorder = make(("a", Flaky()), on_data=lambda event: got.append(event.id))
    assert dispatcher.dispatch(events("1", "2"), "2") is False
    assert (got, recorder.saved, delivered, dispatcher.connection.last_event_id) == (["1", "2"], ["2"], [["1", "2"]], "2")
    assert dispatcher.stats == ConnectionStats(events_total=2, last_event_at=123.0) and slept == []


def test_a_failing_handler_gets_the_event_again_with_a_doubling_backoff() -> None:
    a, b, got = Flaky({"2": 2}), Flaky(), []
    dispatcher, slept, delivered, recorder = make(
        ("a", a), ("b", b), errors=ErrorPolicy(retries=3, backoff=0.5), on_data=lambda event: got.append(event.id))
    dispatcher.dispatch(events("1", "2", "3"), "3")
    assert slept == [0.5, 1.0]
    assert a.seen == b.seen == got == ["1", "2", "3"]  # the handlers after it got the event once
    assert (dispatcher.stats.handler_errors, recorder.saved, delivered) == (2, ["3"], [["1", "2", "3"]])


def test_stop_raises_naming_the_handler_after_checkpointing_what_was_done() -> None:
    dispatcher, slept, delivered, recorder = make(("a", Flaky({"2": 9})), errors=ErrorPolicy(retries=1, backoff=2))
    with pytest.raises(PluginError) as caught:
        dispatcher.dispatch(events("1", "2", "3"), "3")
    assert type(caught.value) is PluginError
    assert (caught.value.plugin, caught.value.hook, caught.value.event_id) == ("a", "sseplug_handle_event", "2")
    assert (slept, recorder.saved, delivered, dispatcher.connection.last_event_id) == ([2.0], ["1"], [["1"]], "1")
    assert dispatcher.stats.handler_errors == 2 and dispatcher.stats.events_total == 1


def test_skip_passes_the_event_for_that_handler_only() -> None:
    a, b = Flaky({"2": 9}), Flaky()
    dispatcher, slept, delivered, _ = make(("a", a), ("b", b), errors=ErrorPolicy(retries=2, backoff=1, action="skip"))
    dispatcher.dispatch(events("1", "2", "3"), "3")
    assert (a.seen, b.seen, slept) == (["1", "3"], ["1", "2", "3"], [1.0, 2.0])
    assert (dispatcher.stats.events_skipped, dispatcher.stats.handler_errors, delivered) == (1, 3, [["1", "2", "3"]])


def test_dead_letter_hands_the_event_to_the_store_with_the_attempts() -> None:
    dispatcher, _, delivered, recorder = make(("a", Flaky({"2": 9})), errors=ErrorPolicy(retries=1, action="dead_letter"))
    dispatcher.dispatch(events("1", "2"), "2")
    assert (recorder.letters, dispatcher.stats.dead_letters, recorder.saved) == ([("2", "a", 2)], 1, ["2"])


def test_a_dead_letter_no_plugin_stores_stops_the_connection() -> None:
    dispatcher, _, _, recorder = make(("a", Flaky({"1": 9})), errors=ErrorPolicy(action="dead_letter"),
                                      recorder=Recorder(store=False))
    with pytest.raises(PluginError, match="no plugin stored the dead letter of event id '1'"):
        dispatcher.dispatch(events("1"), "1")
    assert recorder.saved == [] and dispatcher.stats.dead_letters == 0


def test_on_data_is_an_entry_of_the_chain_under_the_same_policy() -> None:
    calls: list[str] = []

    def on_data(event: SSEResponse) -> None:
        calls.append(event.id)
        if len(calls) == 1:
            raise ValueError("first time")

    dispatcher, slept, delivered, _ = make(("a", Flaky()), errors=ErrorPolicy(retries=1, backoff=0.1), on_data=on_data)
    dispatcher.dispatch(events("1"), "1")
    assert (calls, slept, delivered) == (["1", "1"], [0.1], [["1"]])
    failing, *_ = make(on_data=lambda event: 1 / 0)
    with pytest.raises(PluginError) as caught:
        failing.dispatch(events("1"), "1")
    assert (caught.value.plugin, caught.value.hook) == (ON_DATA, "on_data")


def test_a_handler_after_a_recovered_one_failing_gets_the_policy_too() -> None:
    a, b = Flaky({"1": 1}), Flaky({"1": 1})
    dispatcher, slept, _, _ = make(("a", a), ("b", b), errors=ErrorPolicy(retries=1, backoff=0.25))
    dispatcher.dispatch(events("1"), "1")
    assert (a.seen, b.seen, slept, dispatcher.stats.handler_errors) == (["1"], ["1"], [0.25, 0.25], 2)


def test_a_retryable_error_is_not_redelivered_the_connection_reconnects() -> None:
    dispatcher, slept, _, _ = make(("a", Flaky({"1": 9}, Retryable)), errors=ErrorPolicy(retries=5, action="skip"))
    with pytest.raises(TemporaryPluginError):
        dispatcher.dispatch(events("1"), "1")
    assert slept == [] and dispatcher.stats.events_skipped == 0


def test_filtered_events_are_counted_and_checkpointed_past() -> None:
    a = Flaky()
    dispatcher, _, delivered, recorder = make(("a", a))
    dispatcher.route = Route(events=frozenset({"tick"}))
    dispatcher.dispatch(events("1") + events("2", event="tick") + events("3"), "3")
    assert (a.seen, delivered, recorder.saved) == (["2"], [["2"]], ["3"])
    assert (dispatcher.stats.events_filtered, dispatcher.stats.events_total) == (2, 3)


def test_an_end_event_ends_the_batch_and_an_error_event_raises_after_the_ones_before() -> None:
    a = Flaky()
    dispatcher, _, delivered, _ = make(("a", a), end_events=("done",), error_events=("error",))
    assert dispatcher.dispatch(events("1") + events("2", event="done") + events("3"), "3") is True
    assert (a.seen, delivered) == (["1", "2"], [["1", "2"]])
    with pytest.raises(ServerEventError, match="the server sent an 'error' event"):
        dispatcher.dispatch(events("4") + events("5", event="error"), "5")
    assert (a.seen, dispatcher.connection.last_event_id) == (["1", "2", "4"], "4")
