"""The scripted loopback SSE server, checked on the wire with raw sockets and urllib3."""

from __future__ import annotations

import gzip
import json
import socket
import time
import zlib
from collections.abc import Iterator

import pytest
import urllib3
from urllib3.exceptions import ProtocolError

from sseplug.server import DROP, Response, SSEServer

TIMEOUT = 3.0


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as srv:
        yield srv


@pytest.fixture
def http() -> Iterator[urllib3.PoolManager]:
    with urllib3.PoolManager(retries=False, timeout=TIMEOUT) as pool:
        yield pool


def connect(server: SSEServer, path: str, headers: dict[str, str] | None = None) -> socket.socket:
    """Open a socket and send a GET for ``path``."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def read_until_eof(sock: socket.socket, deadline: float = TIMEOUT) -> bytes:
    """Everything the server sends until it closes (bounded by ``deadline`` seconds)."""
    data, end = b"", time.monotonic() + deadline
    with sock:
        while time.monotonic() < end:
            piece = sock.recv(65536)
            if not piece:
                return data
            data += piece
    raise AssertionError("server did not close the connection in time")


def raw_get(server: SSEServer, path: str, headers: dict[str, str] | None = None) -> tuple[str, dict[str, str], bytes]:
    """Status line, headers (lowercase names) and undecoded body of one GET."""
    head, _, body = read_until_eof(connect(server, path, headers)).partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    return status, {n.strip().lower(): v.strip() for n, _, v in (line.partition(":") for line in lines)}, body


def dechunk(body: bytes) -> tuple[list[bytes], bool]:
    """The chunks of a chunked body, and whether the terminating zero chunk was there."""
    chunks: list[bytes] = []
    while body:
        size_line, sep, rest = body.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        if size == 0:
            return chunks, rest == b"\r\n"
        chunks.append(rest[:size])
        assert rest[size : size + 2] in (b"\r\n", b""), "chunk not followed by CRLF"
        body = rest[size + 2 :]
    return chunks, False


def events(text: str) -> list[dict[str, str]]:
    """The complete blocks with data, as field dicts (retry-only, comment and partial blocks left out)."""
    blocks = [block.split("\n") for block in text.split("\n\n")[:-1]]
    fields = [dict(line.split(": ", 1) for line in block if not line.startswith(":")) for block in blocks]
    return [block for block in fields if "data" in block]


# -- framing ---------------------------------------------------------------------------------------


def test_chunked_pieces_arrive_as_separate_chunks(server: SSEServer) -> None:
    server.script("/s", Response(body=[b"data: a\n\n", 0.01, b"", b"data: \xc3", b"\xa9\n\n"]))
    status, headers, body = raw_get(server, "/s")
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == "text/event-stream"
    assert headers["transfer-encoding"] == "chunked"
    assert headers["connection"] == "close"
    assert "content-length" not in headers
    assert dechunk(body) == ([b"data: a\n\n", b"data: \xc3", b"\xa9\n\n"], True)


def test_close_framing_ends_by_eof(server: SSEServer, http: urllib3.PoolManager) -> None:
    server.script("/s", Response(body=[b"data: a\n\n", b"data: b\n\n"], framing="close"))
    _, headers, body = raw_get(server, "/s")
    assert "content-length" not in headers and "transfer-encoding" not in headers
    assert body == b"data: a\n\ndata: b\n\n"
    assert http.request("GET", server.url("/s")).data == body


def test_length_framing_sends_content_length_and_honours_sleeps(server: SSEServer, http: urllib3.PoolManager) -> None:
    server.script("/s", Response(body=[b"data: a\n\n", 0.2, b"data: bc\n\n"], framing="length"))
    started = time.monotonic()
    response = http.request("GET", server.url("/s"))
    assert time.monotonic() - started >= 0.18
    assert response.headers["Content-Length"] == "19"
    assert "Transfer-Encoding" not in response.headers
    assert response.data == b"data: a\n\ndata: bc\n\n"


def test_gzip_pieces_are_each_decodable_on_arrival(server: SSEServer, http: urllib3.PoolManager) -> None:
    pieces = [b"data: one\n\n", b"data: two\n\n", b": ping\n\n"]
    server.script("/s", Response(body=pieces, encoding="gzip"))
    _, headers, body = raw_get(server, "/s")
    assert headers["content-encoding"] == "gzip"
    chunks, terminated = dechunk(body)
    assert terminated and len(chunks) == len(pieces) + 1  # plus the gzip trailer
    decoder = zlib.decompressobj(wbits=31)
    assert [decoder.decompress(chunk) for chunk in chunks[:-1]] == pieces
    assert decoder.decompress(chunks[-1]) == b"" and decoder.eof
    assert http.request("GET", server.url("/s")).data == b"".join(pieces)


def test_gzip_with_length_framing(server: SSEServer, http: urllib3.PoolManager) -> None:
    server.script("/s", Response(body=[b"data: x\n\n", b"data: y\n\n"], framing="length", encoding="gzip"))
    _, headers, body = raw_get(server, "/s")
    assert int(headers["content-length"]) == len(body)
    assert gzip.decompress(body) == b"data: x\n\ndata: y\n\n"
    assert http.request("GET", server.url("/s")).data == b"data: x\n\ndata: y\n\n"


def test_no_content_has_no_body_nor_framing_headers(server: SSEServer, http: urllib3.PoolManager) -> None:
    server.script("/s", Response(204, {"Content-Type": "text/html"}, [b"ignored"]))
    status, headers, body = raw_get(server, "/s")
    assert status == "HTTP/1.1 204 No Content" and body == b""
    assert "transfer-encoding" not in headers and "content-length" not in headers
    assert http.request("GET", server.url("/s")).status == 204


def test_given_headers_replace_the_defaults(server: SSEServer) -> None:
    server.script("/s", Response(503, {"Content-Type": "text/html", "Retry-After": "1"}, [b"busy"], "length"))
    status, headers, body = raw_get(server, "/s")
    assert status == "HTTP/1.1 503 Service Unavailable"
    assert headers["content-type"] == "text/html" and headers["retry-after"] == "1"
    assert headers["content-length"] == "4" and body == b"busy"


# -- misbehaviour ----------------------------------------------------------------------------------


def test_drop_aborts_without_terminating_chunk(server: SSEServer, http: urllib3.PoolManager) -> None:
    server.script("/s", Response(body=[b"data: a\n\n", b"data: hal", DROP, b"never"]))
    _, _, body = raw_get(server, "/s")
    assert dechunk(body) == ([b"data: a\n\n", b"data: hal"], False)
    with pytest.raises(ProtocolError):
        http.request("GET", server.url("/s"))


def test_drop_under_length_framing_truncates_the_promised_body(server: SSEServer, http: urllib3.PoolManager) -> None:
    server.script("/s", Response(body=[b"12345", DROP, b"67890"], framing="length"))
    _, headers, body = raw_get(server, "/s")
    assert headers["content-length"] == "10" and body == b"12345"
    with pytest.raises(ProtocolError):
        http.request("GET", server.url("/s"))


def test_stall_keeps_the_socket_open_then_closes_without_ending(server: SSEServer) -> None:
    server.script("/s", Response(body=[b"data: a\n\n"], stall=0.6))
    sock = connect(server, "/s")
    started = time.monotonic()
    received = b""
    while b"data: a\n\n\r\n" not in received and time.monotonic() - started < TIMEOUT:
        received += sock.recv(65536)
    sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        sock.recv(65536)  # open, yet silent
    sock.settimeout(TIMEOUT)
    received += read_until_eof(sock)
    assert 0.55 <= time.monotonic() - started < 2.0
    assert dechunk(received.partition(b"\r\n\r\n")[2]) == ([b"data: a\n\n"], False)


# -- scripting and recording -----------------------------------------------------------------------


def test_script_serves_in_order_then_repeats_the_last(server: SSEServer, http: urllib3.PoolManager) -> None:
    server.script("/s", Response(503, {}, [b"one"]), Response(body=[b"two"]))
    got = [(r.status, r.data) for r in (http.request("GET", server.url("/s")) for _ in range(3))]
    assert got == [(503, b"one"), (200, b"two"), (200, b"two")]
    server.script("/s", Response(body=[b"again"]))
    assert http.request("GET", server.url("/s")).data == b"again"


def test_requests_are_recorded(server: SSEServer, http: urllib3.PoolManager) -> None:
    server.script("/post", Response(body=[b"ok"]))
    before = time.monotonic()
    http.request("POST", server.url("/post?a=1&b="), body=b'{"x": 1}', headers={"X-Token": "t", "Last-Event-ID": "7"})
    http.request("GET", server.url("/other"))
    assert [r.path for r in server.requests] == ["/post", "/other"]
    (request,) = server.requests_for("/post")
    assert (request.method, request.query, request.body) == ("POST", {"a": "1", "b": ""}, b'{"x": 1}')
    assert request.headers["x-token"] == "t" and request.headers["last-event-id"] == "7"
    assert request.headers["content-length"] == "8"
    assert before <= request.received_at <= time.monotonic()


def test_open_streams_counts_responses_in_progress(server: SSEServer) -> None:
    server.script("/s", Response(body=[b"data: a\n\n"], stall=5))
    socks = [connect(server, "/s") for _ in range(2)]
    deadline = time.monotonic() + TIMEOUT
    while server.open_streams("/s") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.open_streams("/s") == 2 and server.open_streams("/other") == 0
    for sock in socks:
        sock.close()
    server.stop()
    assert server.open_streams("/s") == 0


# -- built-in routes -------------------------------------------------------------------------------


def test_feed_streams_ticks_and_resumes_after_last_event_id(server: SSEServer, http: urllib3.PoolManager) -> None:
    text = http.request("GET", server.url("/feed/news?count=4&interval=0")).data.decode()
    assert text.startswith("retry: 200\n\n: hello\n\n")
    ticks = events(text)
    assert [t["id"] for t in ticks] == ["1", "2", "3", "4"]
    assert {t["event"] for t in ticks} == {"tick"}
    assert json.loads(ticks[0]["data"]) == {"feed": "news", "seq": 1}
    resumed = http.request("GET", server.url("/feed/news?count=4&interval=0"), headers={"Last-Event-ID": "2"})
    assert [t["id"] for t in events(resumed.data.decode())] == ["3", "4"]
    invalid = http.request("GET", server.url("/feed/news?count=2&interval=0"), headers={"Last-Event-ID": "x"})
    assert [t["id"] for t in events(invalid.data.decode())] == ["1", "2"]
    complete = http.request("GET", server.url("/feed/news?count=4&interval=0"), headers={"Last-Event-ID": "4"})
    assert complete.status == 204 and complete.data == b""


def test_feed_paces_events_by_interval(server: SSEServer, http: urllib3.PoolManager) -> None:
    started = time.monotonic()
    http.request("GET", server.url("/feed/a?count=3&interval=0.1"))
    assert 0.18 <= time.monotonic() - started < 1.5


def test_flaky_drops_mid_event_and_a_resuming_client_gets_everything(server: SSEServer) -> None:
    path = "/flaky/f?count=7&drop_every=3&interval=0"
    _, _, body = raw_get(server, path)
    chunks, terminated = dechunk(body)
    text = b"".join(chunks).decode()
    assert not terminated
    assert [e["id"] for e in events(text)] == ["1", "2", "3"]
    fourth = f"id: 4\nevent: tick\ndata: {json.dumps({'feed': 'f', 'seq': 4})}\n\n"
    assert text.endswith("\n\n" + fourth[: len(fourth) // 2])

    seen, last, attempts = [], "0", 0
    while attempts < 5:
        attempts += 1
        chunks, terminated = dechunk(raw_get(server, path, {"Last-Event-ID": last})[2])
        ids = [e["id"] for e in events(b"".join(chunks).decode())]
        seen += ids
        last = ids[-1] if ids else last
        if terminated:
            break
    assert seen == [str(n) for n in range(1, 8)] and attempts == 3


def test_bad_query_is_a_400(server: SSEServer, http: urllib3.PoolManager) -> None:
    assert http.request("GET", server.url("/feed/a?count=many")).status == 400


def test_unknown_path_is_a_404(server: SSEServer, http: urllib3.PoolManager) -> None:
    response = http.request("GET", server.url("/nope"))
    assert response.status == 404
    assert response.headers["Content-Type"].startswith("text/html") and response.data


# -- lifecycle -------------------------------------------------------------------------------------


def test_stop_is_prompt_with_a_stalled_connection_open() -> None:
    server = SSEServer().start()
    server.script("/s", Response(body=[b"data: a\n\n"], stall=30))
    sock = connect(server, "/s")
    assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
    port, started = server.port, time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2.0
    read_until_eof(sock, deadline=2.0)  # the client sees the close at once
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()


def test_url_and_validation() -> None:
    with SSEServer() as server:
        assert server.url() == f"http://127.0.0.1:{server.port}/"
        assert server.url("/a/b?c=1") == f"http://127.0.0.1:{server.port}/a/b?c=1"
    with pytest.raises(RuntimeError):
        _ = SSEServer().port
    with pytest.raises(TypeError):
        Response(body=["text"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        Response(framing="lines")  # type: ignore[arg-type]


def test_the_public_names_import_from_sseplug_server() -> None:
    """``sseplug.server`` is a package of private parts; what plugins and their tests import stays
    at ``sseplug.server`` (docs/design.rst, the skeleton's tests)."""
    import sseplug.server
    from sseplug.server import DROP as drop, RecordedRequest, Response as response, SSEServer as server

    assert sorted(sseplug.server.__all__) == ["DROP", "RecordedRequest", "Response", "SSEServer"]
    assert (drop, response, server) == (DROP, Response, SSEServer)
    assert RecordedRequest.__dataclass_fields__.keys() >= {"method", "path", "query", "headers", "body"}
