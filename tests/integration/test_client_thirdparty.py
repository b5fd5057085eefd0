"""SSEClient against servers nobody here wrote: sse-starlette/uvicorn, aiohttp-sse, Flask/gevent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sseplug import SSEClient, SSERequest
from sseplug.errors import ContentTypeError, HTTPStatusError
from sseplug.testing import collect


@pytest.fixture
def client() -> Iterator[SSEClient]:
    with SSEClient() as client:
        yield client


def test_starlette_get_resumes_after_last_event_id(client: SSEClient, starlette_server: str) -> None:
    request = SSERequest(f"{starlette_server}/numbers?count=6", retry=False, last_event_id="3")
    events = collect(client.connect("numbers", request))
    assert [(e.id, e.event, e.data) for e in events] == [("4", "number", 4), ("5", "number", 5), ("6", "number", 6)]


def test_starlette_post_sends_json_body(client: SSEClient, starlette_server: str) -> None:
    request = SSERequest(f"{starlette_server}/echo", method="POST", body={"b": [1, 2], "a": "x"}, retry=False)
    events = collect(client.connect("echo", request))
    assert [(e.event, e.data) for e in events] == [("a", "x"), ("b", [1, 2])]


def test_starlette_dropped_stream_resumes_with_last_event_id(client: SSEClient, starlette_server: str) -> None:
    request = SSERequest(f"{starlette_server}/drop?count=8&drop_after=3")
    stream = client.connect("drop", request)
    events = collect(stream, count=8)
    assert [e.data for e in events] == list(range(1, 9))  # each once, in order, across the reconnect
    assert stream.connection.reconnects_total >= 1


def test_aiohttp_multiline_data_and_retry(client: SSEClient, aiohttp_server: str) -> None:
    stream = client.connect("multi", SSERequest(f"{aiohttp_server}/multiline", retry=False))
    events = collect(stream)
    assert [e.data for e in events] == ["line1\nline2\nline3", "first\n\nlast", "alpha\nomega"]
    assert [e.id for e in events] == ["1", "2", "3"]
    assert stream.connection.retry_ms == 250


def test_aiohttp_resume(client: SSEClient, aiohttp_server: str) -> None:
    request = SSERequest(f"{aiohttp_server}/numbers?count=4", retry=False, last_event_id="2")
    assert [e.data for e in collect(client.connect("n", request))] == [3, 4]


def test_flask_crlf_comments_and_split_characters(client: SSEClient, flask_server: str) -> None:
    events = collect(client.connect("crlf", SSERequest(f"{flask_server}/crlf", retry=False)))
    assert [(e.id, e.data) for e in events] == [("1", "hello\nworld"), ("2", "café"), ("3", "bye")]
    assert events[1].comment == "a comment inside the block"


def test_flask_204_ends_cleanly_and_calls_on_done(client: SSEClient, flask_server: str) -> None:
    done: list[bool] = []
    stream = client.connect("nc", SSERequest(f"{flask_server}/nocontent", on_done=lambda: done.append(True)))
    assert collect(stream) == []
    assert done == [True] and stream.connection.reconnects_total == 0


def test_flask_html_is_a_content_type_error(client: SSEClient, flask_server: str) -> None:
    errors: list[BaseException] = []
    stream = client.connect("html", SSERequest(f"{flask_server}/html", on_error=errors.append))
    with pytest.raises(ContentTypeError) as caught:
        collect(stream)
    assert caught.value.content_type.startswith("text/html") and b"not a stream" in caught.value.body
    assert errors == [caught.value] and stream.connection.reconnects_total == 0


def test_flask_404_fails_without_retry(client: SSEClient, flask_server: str) -> None:
    stream = client.connect("404", SSERequest(f"{flask_server}/notfound"))
    with pytest.raises(HTTPStatusError) as caught:
        collect(stream)
    assert caught.value.status == 404 and not caught.value.retryable
    assert stream.connection.reconnects_total == 0


def test_flask_accept_header_is_sent(client: SSEClient, flask_server: str) -> None:
    assert [e.data for e in collect(client.connect("acc", SSERequest(f"{flask_server}/needs-accept", retry=False)))] == ["ok"]
