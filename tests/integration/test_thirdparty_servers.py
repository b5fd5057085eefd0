"""Checks that the third-party SSE servers behave as the integration tests expect."""

from __future__ import annotations

pytest_plugins = ["tests.integration.thirdparty"]

import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator, Mapping  # noqa: E402

import pytest  # noqa: E402
import urllib3  # noqa: E402
from urllib3.exceptions import ProtocolError  # noqa: E402

pytestmark = pytest.mark.timeout(30)

MAX_CHUNKS = 1000
MAX_SECONDS = 5.0


@pytest.fixture(scope="module")
def http() -> Iterator[urllib3.PoolManager]:
    """A urllib3 pool manager with short timeouts and no retries."""
    with urllib3.PoolManager(timeout=urllib3.Timeout(connect=2.0, read=5.0), retries=False) as pool:
        yield pool


def fetch(
    http: urllib3.PoolManager,
    url: str,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[urllib3.BaseHTTPResponse, bytes, bool]:
    """Request ``url`` and read the raw body, bounded by chunk count and time.

    Returns ``(response, body_bytes, ended_cleanly)``; ``ended_cleanly`` is False
    when the connection broke mid-body (e.g. an incomplete chunked stream).
    """
    resp = http.request(
        method, url, headers=dict(headers or {}), body=body,
        preload_content=False, decode_content=False,
    )
    data = bytearray()
    clean = True
    deadline = time.monotonic() + MAX_SECONDS
    try:
        for index, chunk in enumerate(resp.stream(4096, decode_content=False)):
            data += chunk
            if index >= MAX_CHUNKS or time.monotonic() > deadline:
                pytest.fail(f"stream from {url} did not end in time; got {bytes(data)!r}")
    except ProtocolError:
        clean = False
    finally:
        resp.release_conn()
    return resp, bytes(data), clean


def field_values(body: bytes, name: str) -> list[str]:
    """Return the values of all ``name:`` fields in an SSE body (any line ending)."""
    prefix = f"{name}: "
    return [
        line[len(prefix):]
        for line in body.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if line.startswith(prefix)
    ]


# --- sse-starlette / uvicorn ------------------------------------------------------------


def test_starlette_numbers_resume_uses_crlf(http: urllib3.PoolManager, starlette_server: str) -> None:
    """Last-Event-ID 3 with count 5 yields ids 4 and 5, CRLF-separated, then ends."""
    resp, body, clean = fetch(http, f"{starlette_server}/numbers?count=5", headers={"Last-Event-ID": "3"})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert clean
    assert body == b"".join(b"id: %d\r\nevent: number\r\ndata: %d\r\n\r\n" % (n, n) for n in (4, 5))


def test_starlette_numbers_from_start(http: urllib3.PoolManager, starlette_server: str) -> None:
    """Without Last-Event-ID the stream starts at 1."""
    _, body, clean = fetch(http, f"{starlette_server}/numbers?count=3")
    assert clean
    assert field_values(body, "id") == ["1", "2", "3"]
    assert field_values(body, "data") == ["1", "2", "3"]
    assert set(field_values(body, "event")) == {"number"}


def test_starlette_echo(http: urllib3.PoolManager, starlette_server: str) -> None:
    """POSTed JSON comes back as one event per key in sorted order."""
    payload = {"zeta": [1, 2], "alpha": "a\nb", "mid": {"k": None}}
    resp, body, clean = fetch(
        http, f"{starlette_server}/echo", method="POST",
        headers={"Content-Type": "application/json"}, body=json.dumps(payload).encode(),
    )
    assert resp.status == 200
    assert clean
    assert field_values(body, "event") == ["alpha", "mid", "zeta"]
    assert [json.loads(v) for v in field_values(body, "data")] == [payload[k] for k in sorted(payload)]
    assert b"\r\n" in body


def test_starlette_echo_rejects_non_json(http: urllib3.PoolManager, starlette_server: str) -> None:
    """A non-JSON content type is answered with 415."""
    resp, _, _ = fetch(
        http, f"{starlette_server}/echo", method="POST",
        headers={"Content-Type": "text/plain"}, body=b"{}",
    )
    assert resp.status == 415


def test_starlette_drop_then_resume(http: urllib3.PoolManager, starlette_server: str) -> None:
    """The first connection breaks after K events; resuming finishes the sequence."""
    url = f"{starlette_server}/drop?count=5&drop_after=2"
    resp, body, clean = fetch(http, url)
    assert resp.status == 200
    assert not clean
    assert field_values(body, "id") == ["1", "2"]

    _, body, clean = fetch(http, url, headers={"Last-Event-ID": "2"})
    assert clean
    assert field_values(body, "id") == ["3", "4", "5"]


# --- aiohttp / aiohttp-sse --------------------------------------------------------------


def test_aiohttp_multiline(http: urllib3.PoolManager, aiohttp_server: str) -> None:
    """/multiline sends retry, ids and multi-line data (one with an empty line)."""
    resp, body, clean = fetch(http, f"{aiohttp_server}/multiline")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert clean
    assert field_values(body, "retry") == ["250"]
    assert field_values(body, "id") == ["1", "2", "3"]
    assert b"data: line1\r\ndata: line2\r\ndata: line3\r\n" in body
    assert b"data: first\r\ndata: \r\ndata: last\r\n" in body


def test_aiohttp_numbers_resume(http: urllib3.PoolManager, aiohttp_server: str) -> None:
    """aiohttp /numbers honours Last-Event-ID."""
    _, body, clean = fetch(http, f"{aiohttp_server}/numbers?count=5", headers={"Last-Event-ID": "3"})
    assert clean
    assert field_values(body, "id") == ["4", "5"]
    assert field_values(body, "event") == ["number", "number"]

    _, body, clean = fetch(http, f"{aiohttp_server}/numbers?count=2")
    assert clean
    assert field_values(body, "data") == ["1", "2"]


# --- Flask / gevent ---------------------------------------------------------------------


def test_flask_crlf(http: urllib3.PoolManager, flask_server: str) -> None:
    """/crlf streams CRLF events with a leading and an inner comment and a split UTF-8 char."""
    resp, body, clean = fetch(http, f"{flask_server}/crlf")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert clean
    assert body.startswith(b": welcome\r\n\r\n")
    assert b"data: hello\r\ndata: world\r\n\r\n" in body
    assert b"\r\n: a comment inside the block\r\n" in body
    assert "data: café\r\n".encode() in body
    assert field_values(body, "id") == ["1", "2", "3"]


def test_flask_crlf_piece_boundaries(http: urllib3.PoolManager, flask_server: str) -> None:
    """Each yield is its own HTTP chunk: one splits a CRLF, one splits a UTF-8 character."""
    resp = http.request("GET", f"{flask_server}/crlf", preload_content=False, decode_content=False)
    try:
        assert resp.headers.get("Transfer-Encoding", "").lower() == "chunked"
        chunks = list(resp.read_chunked(decode_content=False))
    finally:
        resp.release_conn()
    assert 1 < len(chunks) <= MAX_CHUNKS
    assert any(a.endswith(b"\r") and b.startswith(b"\n") for a, b in zip(chunks, chunks[1:]))
    assert any(a.endswith(b"\xc3") and b.startswith(b"\xa9") for a, b in zip(chunks, chunks[1:]))


def test_flask_nocontent(http: urllib3.PoolManager, flask_server: str) -> None:
    """/nocontent answers 204 with text/html."""
    resp, body, _ = fetch(http, f"{flask_server}/nocontent")
    assert resp.status == 204
    assert resp.headers["Content-Type"].startswith("text/html")
    assert body == b""


def test_flask_html(http: urllib3.PoolManager, flask_server: str) -> None:
    """/html answers 200 text/html that is not an event stream."""
    resp, body, _ = fetch(http, f"{flask_server}/html")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    assert body == b"<html>not a stream</html>"


def test_flask_notfound(http: urllib3.PoolManager, flask_server: str) -> None:
    """/notfound answers 404 text/html."""
    resp, _, _ = fetch(http, f"{flask_server}/notfound")
    assert resp.status == 404
    assert resp.headers["Content-Type"].startswith("text/html")


def test_flask_needs_accept(http: urllib3.PoolManager, flask_server: str) -> None:
    """/needs-accept is 406 without Accept: text/event-stream, else a one-event stream."""
    resp, _, _ = fetch(http, f"{flask_server}/needs-accept")
    assert resp.status == 406

    resp, body, clean = fetch(http, f"{flask_server}/needs-accept", headers={"Accept": "text/event-stream"})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert clean
    assert field_values(body, "data") == ["ok"]
