"""LLM and agent streams against servers nobody here wrote: an OpenAI/Anthropic/MCP-style
Starlette app streaming with a plain ``StreamingResponse`` (``servers/openai_app.py``), and
sse-starlette's ``EventSourceResponse`` with its own keep-alive pings (``servers/starlette_app.py``).

What the server received is asked from the server itself (``GET /v1/stats?key=K``), so "posted
once" means the server saw one POST.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import gevent
import pytest
import urllib3

from sseplug import SSEClient, SSERequest, SSEResponse
from sseplug.errors import NetworkError, ServerEventError
from sseplug.testing import collect

pytestmark = pytest.mark.timeout(60)

CHAT = {"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "claude-test", "max_tokens": 16, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}
SETTLE = 0.3  # seconds to give a wrong reconnect the chance to happen before counting requests


@pytest.fixture(scope="module")
def http() -> Iterator[urllib3.PoolManager]:
    """A urllib3 pool manager with short timeouts and no retries, to ask the server for its stats."""
    with urllib3.PoolManager(timeout=urllib3.Timeout(connect=2.0, read=5.0), retries=False) as pool:
        yield pool


@pytest.fixture
def key() -> str:
    """A key of this test's own: the server keeps its requests (and ``fail`` counter) apart."""
    return uuid.uuid4().hex


def received(http: urllib3.PoolManager, base: str, key: str) -> list[dict[str, Any]]:
    """What the server received for ``key``, in arrival order (one dict per request)."""
    response = http.request("GET", f"{base}/v1/stats", fields={"key": key})
    assert response.status == 200, response.data
    requests: list[dict[str, Any]] = json.loads(response.data)["requests"]
    return requests


def methods(http: urllib3.PoolManager, base: str, key: str) -> list[tuple[str, str, str | None]]:
    """``(method, path, Last-Event-ID)`` of each request the server received for ``key``."""
    return [(r["method"], r["path"], r["last_event_id"]) for r in received(http, base, key)]


def wait_for_client_to_leave(http: urllib3.PoolManager, base: str, key: str, timeout: float = 5.0) -> None:
    """Wait until the server saw the client close the last (held open) response of ``key``."""
    deadline = time.monotonic() + timeout
    while not received(http, base, key)[-1]["closed_by_client"]:
        assert time.monotonic() < deadline, f"the client kept the response open for {timeout}s after the end"
        gevent.sleep(0.05)


def words(events: list[SSEResponse]) -> list[str]:
    """The content of chat completion chunks (``[DONE]`` as it is)."""
    return [e.data["choices"][0]["delta"]["content"] if isinstance(e.data, dict) else e.data for e in events]


# -- OpenAI chat completions ----------------------------------------------------------------------


@pytest.mark.parametrize("end_data", [(), ("[DONE]",)], ids=["by-eof", "by-end-data"])
def test_openai_chat_post_ending_with_done_is_posted_once_and_ends_cleanly(
    sse_client: SSEClient, fast_retry: None, openai_server: str, http: urllib3.PoolManager, key: str,
    end_data: tuple[str, ...],
) -> None:
    done: list[bool] = []
    errors: list[BaseException] = []
    request = SSERequest(f"{openai_server}/v1/chat/completions?key={key}&n=5", method="POST", body=CHAT,
                         end_data=end_data, on_done=lambda: done.append(True), on_error=errors.append)
    got = collect(sse_client.connect("chat", request), timeout=10)
    gevent.sleep(SETTLE)  # a wrong re-POST would come now
    assert words(got) == ["t1", "t2", "t3", "t4", "t5", "[DONE]"]
    assert [e.event for e in got] == ["message"] * 6 and {e.id for e in got} == {""}
    assert got[-2].data["choices"][0]["finish_reason"] == "stop"
    assert done == [True] and errors == []
    [posted] = received(http, openai_server, key)  # exactly one request: the POST
    assert (posted["method"], posted["content_type"], json.loads(posted["body"])) == ("POST", "application/json", CHAT)
    assert posted["accept"] == "text/event-stream" and posted["last_event_id"] is None


def test_openai_done_ends_a_chat_stream_the_server_keeps_open_only_with_end_data(
    sse_client: SSEClient, fast_retry: None, openai_server: str, http: urllib3.PoolManager, key: str,
) -> None:
    url = f"{openai_server}/v1/chat/completions?key={key}&n=3&keep_open=1"
    # without end_data nothing ends it: the server holds the response open after [DONE]
    held = sse_client.connect("held", SSERequest(url, method="POST", body=CHAT), iterate=False)
    assert not held.wait(1.0), "the stream ended although the server kept the response open"
    sse_client.close("held")
    wait_for_client_to_leave(http, openai_server, key)

    done: list[bool] = []
    started = time.monotonic()
    request = SSERequest(url, method="POST", body=CHAT, end_data=["[DONE]"], on_done=lambda: done.append(True))
    got = collect(sse_client.connect("chat", request), timeout=10)
    assert time.monotonic() - started < 5.0  # the server would hold it 30 s
    assert words(got) == ["t1", "t2", "t3", "[DONE]"] and done == [True]
    wait_for_client_to_leave(http, openai_server, key)  # the socket is released, not left to linger
    gevent.sleep(SETTLE)
    assert [m for m, _, _ in methods(http, openai_server, key)] == ["POST", "POST"]  # one per stream


def test_openai_503s_before_streaming_are_retried_until_the_chat_streams(
    sse_client: SSEClient, fast_retry: None, openai_server: str, http: urllib3.PoolManager, key: str,
) -> None:
    done: list[bool] = []
    request = SSERequest(f"{openai_server}/v1/chat/completions?key={key}&n=4&fail=2", method="POST", body=CHAT,
                         on_done=lambda: done.append(True))
    got = collect(sse_client.connect("chat", request), timeout=10)
    gevent.sleep(SETTLE)
    assert words(got) == ["t1", "t2", "t3", "t4", "[DONE]"] and done == [True]
    posts = received(http, openai_server, key)
    assert [(r["method"], r["chunks_sent"]) for r in posts] == [("POST", 0), ("POST", 0), ("POST", 4)]
    assert all(json.loads(r["body"]) == CHAT and r["content_type"] == "application/json" for r in posts)


def test_openai_chat_cut_after_chunks_is_not_posted_again_and_names_resume_url(
    sse_client: SSEClient, fast_retry: None, openai_server: str, http: urllib3.PoolManager, key: str,
) -> None:
    errors: list[BaseException] = []
    done: list[bool] = []
    request = SSERequest(f"{openai_server}/v1/chat/completions?key={key}&n=6&drop_after=3", method="POST",
                         body=CHAT, on_error=errors.append, on_done=lambda: done.append(True))
    got: list[SSEResponse] = []
    with pytest.raises(NetworkError, match="resume_url") as failure, gevent.Timeout(10):
        for event in sse_client.connect("chat", request):
            got.append(event)
    gevent.sleep(SETTLE)
    assert words(got) == ["t1", "t2", "t3"]
    assert "not sent again" in str(failure.value) and "after 3 events" in str(failure.value)
    assert errors == [failure.value] and done == []
    assert [(r["method"], r["chunks_sent"]) for r in received(http, openai_server, key)] == [("POST", 3)]


# -- MCP Streamable HTTP --------------------------------------------------------------------------


def test_mcp_post_cut_repeatedly_resumes_by_get_with_last_event_id_each_event_once(
    sse_client: SSEClient, fast_retry: None, openai_server: str, http: urllib3.PoolManager, key: str,
) -> None:
    """POST a JSON-RPC call; every response drops after 2 events; resume by GET, never re-POST."""
    url = f"{openai_server}/mcp?key={key}&count=7&drop_after=2"
    call = {"jsonrpc": "2.0", "id": 42, "method": "tools/call", "params": {"name": "slow", "arguments": {}}}
    done: list[bool] = []
    request = SSERequest(url, method="POST", body=call, resume_url=url, on_done=lambda: done.append(True))
    got = collect(sse_client.connect("mcp", request), timeout=15)
    gevent.sleep(SETTLE)
    assert [e.id for e in got] == ["1", "2", "3", "4", "5", "6", "7"]  # each once, in order
    assert [e.data.get("params", {}).get("progress") for e in got[:-1]] == [1, 2, 3, 4, 5, 6]
    assert got[-1].data == {"jsonrpc": "2.0", "id": 42, "result": {"content": [{"type": "text", "text": "done"}]}}
    assert done == [True]  # the last GET ended cleanly: the stream is over
    seen = received(http, openai_server, key)
    assert [(r["method"], r["last_event_id"], r["chunks_sent"]) for r in seen] == [
        ("POST", None, 2), ("GET", "2", 2), ("GET", "4", 2), ("GET", "6", 1),
    ]
    assert json.loads(seen[0]["body"]) == call and seen[0]["content_type"] == "application/json"
    assert all(r["body"] == "" and r["content_type"] is None for r in seen[1:])  # a GET, no body


# -- Anthropic Messages ---------------------------------------------------------------------------


def test_anthropic_error_event_mid_stream_raises_server_event_error_after_the_events_before_it(
    sse_client: SSEClient, fast_retry: None, openai_server: str, http: urllib3.PoolManager, key: str,
) -> None:
    # keep_open: the server holds the response after the error, so only the error event can end it
    errors: list[BaseException] = []
    request = SSERequest(f"{openai_server}/v1/messages?key={key}&n=5&error=1&keep_open=1", method="POST",
                         body=MESSAGES, error_events=["error"], on_error=errors.append)
    got: list[SSEResponse] = []
    with pytest.raises(ServerEventError) as failure, gevent.Timeout(10):
        for event in sse_client.connect("m", request):
            got.append(event)
    assert [e.event for e in got] == [
        "message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
    ]
    assert [e.data["delta"]["text"] for e in got[3:]] == ["t1", "t2"]
    assert failure.value.event.event == "error"
    assert failure.value.event.data == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert errors == [failure.value]
    wait_for_client_to_leave(http, openai_server, key)
    gevent.sleep(SETTLE)
    assert methods(http, openai_server, key) == [("POST", "/v1/messages", None)]


def test_anthropic_message_stop_as_end_event_ends_a_held_open_stream(
    sse_client: SSEClient, fast_retry: None, openai_server: str, http: urllib3.PoolManager, key: str,
) -> None:
    done: list[bool] = []
    request = SSERequest(f"{openai_server}/v1/messages?key={key}&n=3&keep_open=1", method="POST", body=MESSAGES,
                         end_events=["message_stop"], error_events=["error"], on_done=lambda: done.append(True))
    got = collect(sse_client.connect("m", request), timeout=10)
    assert [e.data["delta"]["text"] for e in got if e.event == "content_block_delta"] == ["t1", "t2", "t3"]
    assert got[-1].event == "message_stop" and done == [True]
    wait_for_client_to_leave(http, openai_server, key)
    gevent.sleep(SETTLE)
    assert methods(http, openai_server, key) == [("POST", "/v1/messages", None)]


# -- sse-starlette keep-alive comments ------------------------------------------------------------

LINE = re.compile(r"\r\n|\r|\n")


def test_sse_starlette_ping_comments_reach_on_comment_in_stream_order_with_the_events(
    sse_client: SSEClient, starlette_server: str,
) -> None:
    seen: list[tuple[str, str]] = []
    body = bytearray()
    request = SSERequest(f"{starlette_server}/heartbeat?count=3&gap=0.3&ping=0.05", reconnect="on_error",
                         on_data=lambda e: seen.append(("event", e.data)),
                         on_comment=lambda text: seen.append(("comment", text)), on_bytes=body.extend)
    stream = sse_client.connect("hb", request)
    got = collect(stream, timeout=10)
    assert [(e.id, e.event, e.data) for e in got] == [("1", "tick", 1), ("2", "tick", 2), ("3", "tick", 3)]
    assert stream.connection.reconnects_total == 0

    comments = [text for kind, text in seen if kind == "comment"]
    assert comments and all(text.startswith("ping - ") for text in comments), comments
    stamps = [datetime.fromisoformat(text.removeprefix("ping - ")) for text in comments]  # sse-starlette's clock
    assert stamps == sorted(stamps)
    # the pings came while the server waited between events: on_comment got them then, not batched
    events_at = [i for i, (kind, _) in enumerate(seen) if kind == "event"]
    assert len(events_at) == 3
    for before, after in zip(events_at, events_at[1:]):
        assert after - before > 1, f"no ping between two events 0.3 s apart: {seen}"
    # and exactly in the order the lines came on the wire
    wire: list[tuple[str, Any]] = []
    for line in LINE.split(body.decode("utf-8")):
        if line.startswith(":"):
            wire.append(("comment", line[2:] if line[1:2] == " " else line[1:]))
        elif line.startswith("data:"):
            wire.append(("event", int(line[5:].strip())))
    assert seen == wire
