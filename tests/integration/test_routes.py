"""Routes on a real loopback stream: which handlers, which events, and poison events under each action."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gevent
import pytest

from sseplug import ErrorPolicy, Route, SSEClient, SSERequest, SSEResponse, hookimpl
from sseplug.builtin.deadletter import DeadLetterFile
from sseplug.connection import Connection
from sseplug.errors import PluginError, TemporaryPluginError
from sseplug.server import Response, SSEServer
from sseplug.testing import collect

Register = Callable[..., object]
STREAM = [b"id: 1\ndata: a\n\n", b"id: 2\nevent: quote\ndata: b\n\n", b"id: 3\ndata: boom\n\n", b"id: 4\ndata: c\n\n"]
FAST = 0.01  # backoff seconds in these tests


class Sink:
    """Records the data it handles; raises on "boom" (``fail_times`` times, or always)."""

    def __init__(self, fail_times: int | None = None, error: type[Exception] = RuntimeError) -> None:
        self.seen: list[Any] = []
        self.fail_times, self.error = fail_times, error

    @hookimpl
    def sseplug_handle_event(self, event: SSEResponse) -> None:
        self.seen.append(event.data)
        if event.data == "boom" and (self.fail_times is None or self.seen.count("boom") <= self.fail_times):
            raise self.error(f"cannot store {event.data!r}")


class Checkpoints:
    def __init__(self) -> None:
        self.saved: list[str] = []

    @hookimpl
    def sseplug_checkpoint_save(self, last_event_id: str) -> None:
        self.saved.append(last_event_id)


class DeadLetters:
    """Stores dead letters in memory, or raises when told to."""

    def __init__(self, broken: bool = False) -> None:
        self.stored: list[tuple[str, str, str, int]] = []
        self.broken = broken

    @hookimpl
    def sseplug_dead_letter(
        self, event: SSEResponse, connection: Connection, plugin: str, error: BaseException, attempts: int
    ) -> bool:
        if self.broken:
            raise OSError("dead-letter store is down")
        self.stored.append((event.id, plugin, str(error), attempts))
        return True


def run(sse_server: SSEServer, sse_client: SSEClient, route: Route, **request: Any) -> tuple[Any, list[SSEResponse]]:
    """Consume STREAM once through ``route``; (what ended it, or None; the events iterated)."""
    sse_server.script("/s", Response(body=STREAM))
    stream = sse_client.connect("s", SSERequest(sse_server.url("/s"), reconnect="on_error", **request), route=route)
    got: list[SSEResponse] = []
    try:
        with gevent.Timeout(10):
            for event in stream:
                got.append(event)
    except PluginError as error:
        return error, got
    return None, got


def test_sinks_pick_the_handler_plugins_of_a_connection(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register
) -> None:
    first, second = Sink(fail_times=0), Sink(fail_times=0)
    register_plugin(first, "first")
    register_plugin(second, "second")
    error, _ = run(sse_server, sse_client, Route(sinks=("second",)))
    assert error is None and first.seen == [] and second.seen == ["a", "b", "boom", "c"]
    error, _ = run(sse_server, sse_client, Route())  # the default: every handler
    assert error is None and first.seen == second.seen[4:] == ["a", "b", "boom", "c"]


def test_filters_leave_events_out_count_them_and_checkpoint_past_them(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register
) -> None:
    sink, checkpoints, on_data = Sink(fail_times=0), Checkpoints(), []
    register_plugin(sink, "sink")
    register_plugin(checkpoints, "checkpoints")
    route = Route(events=frozenset({"message"}), where=lambda event: event.data != "boom")
    error, got = run(sse_server, sse_client, route, on_data=lambda e: on_data.append(e.data))
    assert error is None
    assert sink.seen == on_data == [e.data for e in got] == ["a", "c"]
    connection = sse_client._streams["s"].connection
    assert (connection.events_filtered, connection.last_event_id, checkpoints.saved[-1]) == (2, "4", "4")


def test_a_failing_where_filter_stops_the_stream_naming_it(sse_server: SSEServer, sse_client: SSEClient) -> None:
    error, got = run(sse_server, sse_client, Route(where=lambda event: event.data["x"]))
    assert isinstance(error, PluginError) and "where filter raised: TypeError" in str(error) and got == []


def test_a_handler_that_fails_twice_then_succeeds_is_retried_and_nothing_is_lost(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register
) -> None:
    flaky, after = Sink(fail_times=2), Sink(fail_times=0)
    register_plugin(after, "after")  # registered first: called after "flaky"
    register_plugin(flaky, "flaky")
    error, got = run(sse_server, sse_client, Route(errors=ErrorPolicy(retries=3, backoff=FAST)))
    assert error is None and [e.data for e in got] == ["a", "b", "boom", "c"]
    assert flaky.seen == ["a", "b", "boom", "boom", "boom", "c"]  # two failures, then stored
    assert after.seen == ["a", "b", "boom", "c"]  # once each: never given the event again
    assert sse_client._streams["s"].connection.handler_errors == 2


def test_stop_fails_the_stream_after_the_retries_and_checkpoints_before_the_poison_event(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register
) -> None:
    poisoned, checkpoints = Sink(), Checkpoints()
    register_plugin(poisoned, "poisoned")
    register_plugin(checkpoints, "checkpoints")
    error, got = run(sse_server, sse_client, Route(errors=ErrorPolicy(retries=2, backoff=FAST)))
    assert type(error) is PluginError and error.plugin == "poisoned" and error.event_id == "3"
    assert poisoned.seen.count("boom") == 3 and "c" not in poisoned.seen
    assert [e.data for e in got] == ["a", "b"] and checkpoints.saved[-1] == "2"
    assert sse_client._streams["s"].connection.handler_errors == 3


def test_skip_passes_the_poison_event_for_the_failing_handler_only(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register
) -> None:
    after, poisoned = Sink(fail_times=0), Sink()
    register_plugin(after, "after")
    register_plugin(poisoned, "poisoned")
    on_data: list[Any] = []
    route = Route(errors=ErrorPolicy(retries=1, backoff=FAST, action="skip"))
    error, got = run(sse_server, sse_client, route, on_data=lambda e: on_data.append(e.data))
    assert error is None and [e.data for e in got] == after.seen == on_data == ["a", "b", "boom", "c"]
    assert poisoned.seen == ["a", "b", "boom", "boom", "c"]
    connection = sse_client._streams["s"].connection
    assert (connection.events_skipped, connection.handler_errors, connection.last_event_id) == (1, 2, "4")


def test_an_on_data_callback_is_under_the_same_policy(sse_server: SSEServer, sse_client: SSEClient) -> None:
    calls: list[Any] = []

    def on_data(event: SSEResponse) -> None:
        calls.append(event.data)
        if event.data == "boom":
            raise ValueError("no")

    route = Route(errors=ErrorPolicy(retries=1, backoff=FAST, action="skip"))
    error, got = run(sse_server, sse_client, route, on_data=on_data)
    assert error is None and calls == ["a", "b", "boom", "boom", "c"]
    error, got = run(sse_server, sse_client, Route(), on_data=on_data)
    assert isinstance(error, PluginError) and error.plugin == "on_data callback" and [e.data for e in got] == ["a", "b"]


def test_dead_letter_stores_the_event_then_goes_on(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register
) -> None:
    poisoned, letters = Sink(), DeadLetters()
    register_plugin(poisoned, "poisoned")
    register_plugin(letters, "letters")
    route = Route(errors=ErrorPolicy(retries=2, backoff=FAST, action="dead_letter"))
    error, got = run(sse_server, sse_client, route)
    assert error is None and [e.data for e in got] == ["a", "b", "boom", "c"]
    assert letters.stored == [("3", "poisoned", "cannot store 'boom'", 3)]
    assert sse_client._streams["s"].connection.dead_letters == 1


@pytest.mark.parametrize("store", ["none", "broken"])
def test_a_dead_letter_nobody_stores_stops_the_stream(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register, store: str
) -> None:
    register_plugin(Sink(), "poisoned")
    if store == "broken":
        register_plugin(DeadLetters(broken=True), "letters")
    error, got = run(sse_server, sse_client, Route(errors=ErrorPolicy(action="dead_letter")))
    assert isinstance(error, PluginError) and error.event_id == "3" and [e.data for e in got] == ["a", "b"]
    if store == "broken":
        assert (error.plugin, error.hook) == ("letters", "sseplug_dead_letter") and "store is down" in str(error)
    else:
        assert "no plugin stored the dead letter" in str(error) and "cannot store 'boom'" in str(error)


def test_the_builtin_dead_letter_file(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register, tmp_path: Path
) -> None:
    register_plugin(Sink(), "poisoned")
    register_plugin(DeadLetterFile(), "deadletter")  # configured at registration (a historic hook)
    sse_client.plugins.unconfigure()
    sse_client.plugins.configure(SimpleNamespace(runner=SimpleNamespace(state_dir=tmp_path / "state")))
    error, _ = run(sse_server, sse_client, Route(errors=ErrorPolicy(retries=1, backoff=FAST, action="dead_letter")))
    assert error is None
    (line,) = (tmp_path / "state" / "dead-letter.jsonl").read_text().splitlines()
    letter = json.loads(line)
    assert {k: letter[k] for k in ("connection", "plugin", "attempts", "error")} == {
        "connection": "s", "plugin": "poisoned", "attempts": 2, "error": "RuntimeError: cannot store 'boom'"}
    assert letter["event"] == {"id": "3", "event": "message", "data": "boom", "raw": "id: 3\ndata: boom"}


def test_a_retryable_exception_reconnects_instead_of_being_redelivered(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register
) -> None:
    class Busy(Exception):
        retryable = True

    poisoned = register_plugin(Sink(fail_times=1, error=Busy), "poisoned")
    sse_server.script("/s", Response(body=STREAM[:3]), Response(body=[b"id: 3\ndata: boom\n\n"]))
    request = SSERequest(sse_server.url("/s"), reconnect="on_error", retry_delay=0.01)
    route = Route(errors=ErrorPolicy(retries=5, backoff=30))  # a redelivery would wait 30 s
    got = collect(sse_client.connect("s", request, route=route), timeout=10)
    assert [e.data for e in got] == ["a", "b", "boom"] and poisoned.seen == ["a", "b", "boom", "boom"]  # type: ignore[attr-defined]
    assert isinstance(sse_client._streams["s"].connection.last_error, TemporaryPluginError)


def test_error_policy_and_route_values_are_checked() -> None:
    with pytest.raises(ValueError, match="^retries: "):
        ErrorPolicy(retries=-1)
    with pytest.raises(ValueError, match="^backoff: "):
        ErrorPolicy(backoff=float("inf"))
    with pytest.raises(ValueError, match="^action: expected one of 'stop', 'skip', 'dead_letter'"):
        ErrorPolicy(action="ignore")
    with pytest.raises(ValueError, match="^sinks: "):
        Route(sinks="jsonl")  # type: ignore[arg-type]
    assert Route(events=["a"]).events == frozenset({"a"}) and ErrorPolicy(backoff=0.5).delay(3) == 2.0  # type: ignore[arg-type]
