"""Routes on a real loopback stream: which handlers (``sinks``) and which events (``events``,
``where``) a connection's events go to. What a failing handler costs (``errors``) is
``test_handler_errors.py``."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sseplug import ErrorPolicy, Route, SSEClient
from sseplug.errors import PluginError
from sseplug.server import SSEServer

from ..recorders import Checkpoints, Handler, consume

Register = Callable[..., object]


def test_sinks_pick_the_handler_plugins_of_a_connection(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register
) -> None:
    first, second = Handler(fail_times=0), Handler(fail_times=0)
    register_plugin(first, "first")
    register_plugin(second, "second")
    error, _ = consume(sse_server, sse_client, Route(sinks=("second",)))
    assert error is None and first.data == [] and second.data == ["a", "b", "boom", "c"]
    error, _ = consume(sse_server, sse_client, Route())  # the default: every handler
    assert error is None and first.data == second.data[4:] == ["a", "b", "boom", "c"]


def test_filters_leave_events_out_count_them_and_checkpoint_past_them(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register
) -> None:
    sink, checkpoints, on_data = Handler(fail_times=0), Checkpoints(), []
    register_plugin(sink, "sink")
    register_plugin(checkpoints, "checkpoints")
    route = Route(events=frozenset({"message"}), where=lambda event: event.data != "boom")
    error, got = consume(sse_server, sse_client, route, on_data=lambda e: on_data.append(e.data))
    assert error is None
    assert sink.data == on_data == [e.data for e in got] == ["a", "c"]
    connection = sse_client._streams["s"].connection
    assert (connection.events_filtered, connection.last_event_id, checkpoints.saved[-1]) == (2, "4", "4")


def test_a_failing_where_filter_stops_the_stream_naming_it(sse_server: SSEServer, sse_client: SSEClient) -> None:
    error, got = consume(sse_server, sse_client, Route(where=lambda event: event.data["x"]))
    assert isinstance(error, PluginError) and "where filter raised: TypeError" in str(error) and got == []


def test_route_values_are_checked() -> None:
    with pytest.raises(ValueError, match="^sinks: "):
        Route(sinks="jsonl")  # type: ignore[arg-type]
    assert Route(events=["a"]).events == frozenset({"a"})  # type: ignore[arg-type]
    assert Route().errors == ErrorPolicy()
