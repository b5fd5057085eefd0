"""The example plugin distribution, pip-installed by the suite's set-up command, over real streams.

Nothing is registered by hand here: ``SSEClient()`` finds the plugin through its entry point.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, distribution

import pytest

from sseplug import SSEClient, SSERequest
from sseplug.server import Response, SSEServer
from sseplug.testing import DONE, collect


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    try:
        distribution("sseplug-skeleton")
    except PackageNotFoundError:
        pytest.fail("sseplug-skeleton is not installed: run the README's test command, which installs "
                    "examples/plugin-skeleton with pip")


@pytest.fixture
def client() -> Iterator[SSEClient]:
    with SSEClient() as client:  # plugins from entry points, as a user gets them
        yield client


def test_installed_plugin_is_listed(client: SSEClient) -> None:
    row = next(row for row in client.plugins.describe() if row["name"] == "skeleton")
    assert row["distribution"] == "sseplug-skeleton"
    assert row["hooks"] == ["sseplug_auth_headers", "sseplug_deserialize", "sseplug_handle_event",
                            "sseplug_retry_decision"]


def test_auth_header_recomputed_before_every_reconnect(
    client: SSEClient, sse_server: SSEServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = iter(["t1", "t2", "t3"])

    class Rotate:  # a token that changes whenever a response ends
        from sseplug import hookimpl

        @hookimpl
        def sseplug_connection_closed(self) -> None:
            monkeypatch.setenv("SKELETON_TOKEN", next(tokens, "t-last"))

    monkeypatch.setenv("SKELETON_TOKEN", "t0")
    client.plugins.register(Rotate(), "rotate")
    sse_server.script("/s", Response(body=[b"retry: 1\n\ndata: a\n\n"]), Response(body=[b"data: b\n\n"]), DONE)
    collect(client.connect("s", SSERequest(sse_server.url("/s"))))
    assert [r.headers["authorization"] for r in sse_server.requests_for("/s")] == ["Bearer t0", "Bearer t1",
                                                                                  "Bearer t2"]


def test_deserialize_and_handle_event_see_every_event_in_order(
    client: SSEClient, sse_server: SSEServer, caplog: pytest.LogCaptureFixture
) -> None:
    body = b"id: 1\nevent: csv\ndata: a,b,c\n\nid: 2\ndata: {\"n\": 2}\n\nid: 3\nevent: csv\ndata: x\n\n"
    sse_server.script("/s", Response(body=[body]))
    caplog.set_level("INFO", logger="sseplug_skeleton")
    events = collect(client.connect("s", SSERequest(sse_server.url("/s"), retry=False)))
    assert [e.data for e in events] == [["a", "b", "c"], {"n": 2}, ["x"]]
    logged = [r.getMessage() for r in caplog.records if r.name == "sseplug_skeleton"]
    assert logged == [f"connection s: event id='{i}' type='{t}'" for i, t in (("1", "csv"), ("2", "message"),
                                                                             ("3", "csv"))]


def test_retry_decision_stops_after_an_end_event(client: SSEClient, sse_server: SSEServer) -> None:
    done: list[bool] = []
    sse_server.script("/s", Response(body=[b"retry: 1\n\ndata: 1\n\nevent: end\ndata: bye\n\n"]))
    stream = client.connect("s", SSERequest(sse_server.url("/s"), on_done=lambda: done.append(True)))
    assert [e.event for e in collect(stream)] == ["message", "end"]
    assert len(sse_server.requests_for("/s")) == 1 and done == [True]  # no reconnect: the plugin said stop
    sse_server.script("/t", Response(body=[b"retry: 1\n\ndata: 1\n\n"]), DONE)
    collect(client.connect("t", SSERequest(sse_server.url("/t"))))
    assert len(sse_server.requests_for("/t")) == 2  # without an end event the policy reconnects
