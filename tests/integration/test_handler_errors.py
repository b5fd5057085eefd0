"""The handler error policy (``Route.errors``) on a real loopback stream: a handler or an
``on_data`` callback that raises is retried with a backoff, then the action (stop, skip, dead
letter) is taken; a retryable error reconnects instead. ``tests/unit/test_dispatch.py`` tests the
same policy on the dispatcher alone, with no socket."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gevent
import pytest

from sseplug import ErrorPolicy, Route, SSEClient, SSERequest, SSEResponse
from sseplug.builtin.deadletter import DeadLetterFile
from sseplug.errors import PluginError, TemporaryPluginError
from sseplug.server import Response, SSEServer
from sseplug.testing import collect

from ..recorders import POISONED, Checkpoints, DeadLetters, Handler, consume

Register = Callable[..., object]
FAST = 0.01  # backoff seconds in these tests


@pytest.fixture
def poisoned(register_plugin: Register) -> Handler:
    """A handler registered as "poisoned" that fails on every "boom" event."""
    handler = Handler()
    register_plugin(handler, "poisoned")
    return handler


# -- retries, then the action: stop, skip or dead letter ---------------------------------------


def test_a_handler_that_fails_twice_then_succeeds_is_retried_and_nothing_is_lost(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register
) -> None:
    flaky, after = Handler(fail_times=2), Handler(fail_times=0)
    register_plugin(after, "after")  # registered first: called after "flaky"
    register_plugin(flaky, "flaky")
    error, got = consume(sse_server, sse_client, Route(errors=ErrorPolicy(retries=3, backoff=FAST)))
    assert error is None and [e.data for e in got] == ["a", "b", "boom", "c"]
    assert flaky.data == ["a", "b", "boom", "boom", "boom", "c"]  # two failures, then stored
    assert after.data == ["a", "b", "boom", "c"]  # once each: never given the event again
    assert sse_client._streams["s"].connection.handler_errors == 2


def test_stop_fails_the_stream_after_the_retries_and_checkpoints_before_the_poison_event(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register, poisoned: Handler
) -> None:
    checkpoints = Checkpoints()
    register_plugin(checkpoints, "checkpoints")
    error, got = consume(sse_server, sse_client, Route(errors=ErrorPolicy(retries=2, backoff=FAST)))
    assert type(error) is PluginError and error.plugin == "poisoned" and error.event_id == "3"
    assert poisoned.data.count("boom") == 3 and "c" not in poisoned.data
    assert [e.data for e in got] == ["a", "b"] and checkpoints.saved[-1] == "2"
    assert sse_client._streams["s"].connection.handler_errors == 3


def test_skip_passes_the_poison_event_for_the_failing_handler_only(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register
) -> None:
    after, poisoned = Handler(fail_times=0), Handler()
    register_plugin(after, "after")
    register_plugin(poisoned, "poisoned")
    on_data: list[Any] = []
    route = Route(errors=ErrorPolicy(retries=1, backoff=FAST, action="skip"))
    error, got = consume(sse_server, sse_client, route, on_data=lambda e: on_data.append(e.data))
    assert error is None and [e.data for e in got] == after.data == on_data == ["a", "b", "boom", "c"]
    assert poisoned.data == ["a", "b", "boom", "boom", "c"]
    connection = sse_client._streams["s"].connection
    assert (connection.events_skipped, connection.handler_errors, connection.last_event_id) == (1, 2, "4")


def test_an_on_data_callback_is_under_the_same_policy(sse_server: SSEServer, sse_client: SSEClient) -> None:
    calls: list[Any] = []

    def on_data(event: SSEResponse) -> None:
        calls.append(event.data)
        if event.data == "boom":
            raise ValueError("no")

    route = Route(errors=ErrorPolicy(retries=1, backoff=FAST, action="skip"))
    error, got = consume(sse_server, sse_client, route, on_data=on_data)
    assert error is None and calls == ["a", "b", "boom", "boom", "c"]
    error, got = consume(sse_server, sse_client, Route(), on_data=on_data)
    assert isinstance(error, PluginError) and error.plugin == "on_data callback" and [e.data for e in got] == ["a", "b"]


def test_dead_letter_stores_the_event_then_goes_on(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register, poisoned: Handler
) -> None:
    letters = DeadLetters()
    register_plugin(letters, "letters")
    route = Route(errors=ErrorPolicy(retries=2, backoff=FAST, action="dead_letter"))
    error, got = consume(sse_server, sse_client, route)
    assert error is None and [e.data for e in got] == ["a", "b", "boom", "c"]
    assert letters.stored == [("3", "s", "poisoned", "cannot store 'boom'", 3)]
    assert sse_client._streams["s"].connection.dead_letters == 1


@pytest.mark.parametrize("store", ["none", "broken"])
def test_a_dead_letter_nobody_stores_stops_the_stream(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register, poisoned: Handler, store: str
) -> None:
    if store == "broken":
        register_plugin(DeadLetters(broken=True), "letters")
    error, got = consume(sse_server, sse_client, Route(errors=ErrorPolicy(action="dead_letter")))
    assert isinstance(error, PluginError) and error.event_id == "3" and [e.data for e in got] == ["a", "b"]
    if store == "broken":
        assert (error.plugin, error.hook) == ("letters", "sseplug_dead_letter") and "store is down" in str(error)
    else:
        assert "no plugin stored the dead letter" in str(error) and "cannot store 'boom'" in str(error)


def test_the_builtin_dead_letter_file(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register, poisoned: Handler, tmp_path: Path
) -> None:
    register_plugin(DeadLetterFile(), "deadletter")  # configured at registration (a historic hook)
    sse_client.plugins.unconfigure()
    sse_client.plugins.configure(SimpleNamespace(runner=SimpleNamespace(state_dir=tmp_path / "state")))
    error, _ = consume(sse_server, sse_client, Route(errors=ErrorPolicy(retries=1, backoff=FAST, action="dead_letter")))
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

    poisoned = Handler(fail_times=1, error=Busy)
    register_plugin(poisoned, "poisoned")
    sse_server.script("/s", Response(body=POISONED[:3]), Response(body=[b"id: 3\ndata: boom\n\n"]))
    request = SSERequest(sse_server.url("/s"), reconnect="on_error", retry_delay=0.01)
    route = Route(errors=ErrorPolicy(retries=5, backoff=30))  # a redelivery would wait 30 s
    got = collect(sse_client.connect("s", request, route=route), timeout=10)
    assert [e.data for e in got] == ["a", "b", "boom"] and poisoned.data == ["a", "b", "boom", "boom"]
    assert isinstance(sse_client._streams["s"].connection.last_error, TemporaryPluginError)


def test_error_policy_values_are_checked() -> None:
    with pytest.raises(ValueError, match="^retries: "):
        ErrorPolicy(retries=-1)
    with pytest.raises(ValueError, match="^backoff: "):
        ErrorPolicy(backoff=float("inf"))
    with pytest.raises(ValueError, match="^action: expected one of 'stop', 'skip', 'dead_letter'"):
        ErrorPolicy(action="ignore")
    assert ErrorPolicy(backoff=0.5).delay(3) == 2.0


# -- with no policy: a failing handler stops the stream ----------------------------------------


@pytest.mark.parametrize("one_read", [True, False], ids=["one-read", "separate-reads"])
def test_handler_that_raises_fails_the_stream_with_a_plugin_error(
    sse_server: SSEServer,
    sse_client: SSEClient,
    register_plugin: Register,
    caplog: pytest.LogCaptureFixture,
    one_read: bool,
) -> None:
    """Events before it are delivered and checkpointed; the failing one is not; nothing is dropped silently."""
    caplog.set_level(logging.ERROR, logger="sseplug.connection")
    handler, checkpoints = Handler(), Checkpoints()
    register_plugin(handler, "my-handler")
    register_plugin(checkpoints, "checkpoints")
    blocks = [b"id: 1\ndata: a\n\n", b"id: 2\ndata: b\n\n", b"id: 3\ndata: boom\n\n", b"id: 4\ndata: d\n\n"]
    pieces: list[bytes | float] = (
        [b"".join(blocks)] if one_read else [blocks[0], 0.02, blocks[1], 0.02, b"".join(blocks[2:])]
    )
    sse_server.script("/s", Response(body=pieces))
    errors: list[BaseException] = []
    stream = sse_client.connect("s", SSERequest(sse_server.url("/s"), on_error=errors.append))
    got: list[SSEResponse] = []
    with pytest.raises(PluginError) as caught:
        with gevent.Timeout(5):
            for event in stream:
                got.append(event)
    error = caught.value
    assert (error.plugin, error.event_id, error.connection_id) == ("my-handler", "3", "s")
    assert error.hook == "sseplug_handle_event"
    assert isinstance(error.__cause__, RuntimeError)
    assert errors == [error]
    assert [e.id for e in got] == ["1", "2"]
    assert handler.ids == ["1", "2", "3"]
    assert checkpoints.saved[-1] == "2" and "3" not in checkpoints.saved and "4" not in checkpoints.saved
    assert checkpoints.saved == (["2"] if one_read else ["1", "2"])
    assert len(sse_server.requests_for("/s")) == 1  # a PluginError is not retried
    logged = [r.getMessage() for r in caplog.records if r.name == "sseplug.connection" and r.levelno >= logging.ERROR]
    assert len(logged) == 1
    assert "'my-handler'" in logged[0] and "'s'" in logged[0] and "'3'" in logged[0]


def test_plugin_error_names_the_instance_that_raised(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register
) -> None:
    register_plugin(Handler(), "sink-bad")
    register_plugin(Handler(fail_times=0), "sink-good")
    sse_server.script("/s", Response(body=[b"id: 1\ndata: boom\n\n"]))
    with pytest.raises(PluginError) as caught:
        collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))), timeout=5)
    assert caught.value.plugin == "sink-bad"
