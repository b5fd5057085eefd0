"""The skeleton plugin against a real loopback stream, with the fixtures of ``sseplug.testing``."""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable

import pytest

import sseplug_skeleton
from sseplug import SSEClient, SSERequest, hookimpl
from sseplug.connection import Connection
from sseplug.plugins import create_plugin_manager
from sseplug.server import Response, SSEServer
from sseplug.testing import DONE, collect


@pytest.fixture
def skeleton(register_plugin: Callable[..., object]) -> None:
    register_plugin(sseplug_skeleton, "skeleton")


def test_sseplug_auth_headers_sends_the_token_on_every_connect_and_picks_up_a_new_one(
    sse_server: SSEServer,
    sse_client: SSEClient,
    register_plugin: Callable[..., object],
    skeleton: None,
    fast_retry: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class RotateToken:
        """Changes the token between the two connects: after the first response ended."""

        @hookimpl
        def sseplug_connection_closed(self, connection: Connection) -> None:
            monkeypatch.setenv("SKELETON_TOKEN", "second")

    register_plugin(RotateToken(), "rotate-token")
    monkeypatch.setenv("SKELETON_TOKEN", "first")
    sse_server.script("/s", Response(body=[b"data: a\n\n"]), DONE)  # EOF, so the client reconnects
    got = collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    assert [e.data for e in got] == ["a"]
    sent = [r.headers.get("authorization") for r in sse_server.requests_for("/s")]
    assert sent == ["Bearer first", "Bearer second"]


def test_sseplug_auth_headers_adds_nothing_without_a_token(
    sse_server: SSEServer, sse_client: SSEClient, skeleton: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SKELETON_TOKEN", raising=False)
    sse_server.script("/s", DONE)
    collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    assert "authorization" not in sse_server.requests_for("/s")[0].headers


def test_sseplug_deserialize_splits_csv_events_and_leaves_others_to_json(
    sse_server: SSEServer, sse_client: SSEClient, skeleton: None
) -> None:
    body = b'event: csv\ndata: a,b,c\n\ndata: {"n": 1}\n\nevent: other\ndata: x,y\n\n'
    sse_server.script("/s", Response(body=[body]), DONE)
    got = collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    assert [(e.event, e.data) for e in got] == [("csv", ["a", "b", "c"]), ("message", {"n": 1}), ("other", "x,y")]


def test_sseplug_handle_event_logs_connection_id_and_type(
    sse_server: SSEServer, sse_client: SSEClient, skeleton: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sseplug_skeleton")
    sse_server.script("/s", Response(body=[b"id: 7\nevent: csv\ndata: 1,2\n\n"]), DONE)
    collect(sse_client.connect("orders", SSERequest(sse_server.url("/s"))))
    records = [r for r in caplog.records if r.name == "sseplug_skeleton"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.INFO, "connection orders: event id='7' type='csv'")
    ]


def test_installed_skeleton_is_listed_by_the_plugin_manager() -> None:
    try:
        dist = importlib.metadata.distribution("sseplug-skeleton")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("sseplug-skeleton is not installed: run `pip install -e examples/plugin-skeleton`")
    pm = create_plugin_manager()  # with entry points, like SSEClient() and the runner
    assert pm.get_plugin("skeleton") is not None
    row = next(row for row in pm.describe() if row["name"] == "skeleton")
    assert row == {
        "name": "skeleton",
        "distribution": "sseplug-skeleton",
        "version": dist.version,
        "hooks": ["sseplug_auth_headers", "sseplug_deserialize", "sseplug_handle_event", "sseplug_retry_decision"],
    }
