"""SSEClient and Connection against the scripted loopback server: one named test per behaviour."""

from __future__ import annotations

import contextlib

import random
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import pytest
import trustme
import urllib3

from sseplug import SSEClient, SSEError, SSERequest, SSEResponse, hookimpl
from sseplug.errors import (
    CertificateError,
    ContentTypeError,
    EventTooLargeError,
    HTTPStatusError,
    NetworkError,
    PluginError,
    RedirectError,
    RetriesExhaustedError,
    TemporaryHTTPError,
)
from sseplug.connection import ConnectionState
from sseplug.plugins import create_plugin_manager
from sseplug.run.config import parse_config
from sseplug.run.runner import Runner
from sseplug.server import DROP, Response, SSEServer
from sseplug.testing import DONE, collect


STREAM = {"Content-Type": "text/event-stream"}




def events(*blocks: str) -> bytes:
    return "".join(blocks).encode()


# -- reading -------------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_first_event_arrives_while_the_server_keeps_the_connection_open(
    sse_server: SSEServer, sse_client: SSEClient, framing: str
) -> None:
    sse_server.script("/s", Response(body=[b"data: first\n\n", 30.0], framing=framing))  # type: ignore[arg-type]
    started = time.monotonic()
    got = collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))), count=1, timeout=5)
    assert [e.data for e in got] == ["first"]
    assert time.monotonic() - started < 5  # not held back until the 30 s body ends


def test_events_split_across_http_chunks(sse_server: SSEServer, sse_client: SSEClient) -> None:
    body = [b"id: 1\r", b"\ndata: caf\xc3", b"\xa9\r\n", b"\r\n", b"data: {\"n\"", b": 2}\n\n"]
    sse_server.script("/s", Response(body=body), DONE)
    got = collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    assert [(e.id, e.data) for e in got] == [("1", "café"), ("1", {"n": 2})]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_body_is_decoded(sse_server: SSEServer, sse_client: SSEClient, encoding: str) -> None:
    sse_server.script("/s", Response(body=[b"data: a\n\n", b"data: b\n\n"], encoding=encoding), DONE)  # type: ignore[arg-type]
    got = collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    assert [e.data for e in got] == ["a", "b"]  # undecoded gzip bytes would parse as no event at all


def test_charset_parameter_is_accepted_and_ignored(sse_server: SSEServer, sse_client: SSEClient) -> None:
    headers = {"Content-Type": "Text/Event-Stream; charset=iso-8859-1"}
    sse_server.script("/s", Response(headers=headers, body=["data: é\n\n".encode()]), DONE)
    assert [e.data for e in collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))] == ["é"]


# -- request -------------------------------------------------------------------------------------


def test_request_headers(sse_server: SSEServer, sse_client: SSEClient) -> None:
    sse_server.script("/s", DONE)
    collect(sse_client.connect("s", SSERequest(sse_server.url("/s"), headers={"X-Trace": "t1"})))
    sent = sse_server.requests_for("/s")[0]
    assert sent.method == "GET"
    assert sent.headers["accept"] == "text/event-stream"
    assert sent.headers["cache-control"] == "no-cache"
    assert sent.headers["x-trace"] == "t1"
    assert "content-type" not in sent.headers and "last-event-id" not in sent.headers


def test_post_with_reconnect_always_sends_its_body_again(sse_server: SSEServer, sse_client: SSEClient, fast_retry: None) -> None:
    sse_server.script("/s", Response(body=[b"id: 1\ndata: a\n\n"]), DONE)
    request = SSERequest(sse_server.url("/s"), method="POST", body={"topic": "orders"}, reconnect="always")
    collect(sse_client.connect("s", request))
    sent = sse_server.requests_for("/s")
    assert [(r.method, r.body, r.headers["content-type"]) for r in sent] == [
        ("POST", b'{"topic":"orders"}', "application/json")
    ] * 2
    assert sent[1].headers["last-event-id"] == "1"


def test_stored_last_event_id_is_sent_on_first_connect(sse_server: SSEServer, sse_client: SSEClient) -> None:
    sse_server.script("/s", DONE)
    collect(sse_client.connect("s", SSERequest(sse_server.url("/s"), last_event_id="41")))
    assert sse_server.requests_for("/s")[0].headers["last-event-id"] == "41"


# -- statuses ------------------------------------------------------------------------------------


def test_204_ends_cleanly_without_reconnect(sse_server: SSEServer, sse_client: SSEClient) -> None:
    done: list[int] = []
    sse_server.script("/s", DONE)
    stream = sse_client.connect("s", SSERequest(sse_server.url("/s"), on_done=lambda: done.append(1)))
    assert collect(stream) == []
    gevent.sleep(0.05)
    assert done == [1] and len(sse_server.requests_for("/s")) == 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_followed(sse_server: SSEServer, sse_client: SSEClient, status: int) -> None:
    sse_server.script("/old", Response(status, {"Location": "/new"}))
    sse_server.script("/new", Response(body=[b"data: moved\n\n"]), DONE)
    request = SSERequest(sse_server.url("/old"), retry=False)
    assert [e.data for e in collect(sse_client.connect("s", request))] == ["moved"]
    assert sse_server.requests_for("/new")[0].headers["accept"] == "text/event-stream"


def test_307_keeps_post_body_and_303_turns_it_into_get(sse_server: SSEServer, sse_client: SSEClient) -> None:
    sse_server.script("/307", Response(307, {"Location": "/target"}))
    sse_server.script("/303", Response(303, {"Location": "/target"}))
    sse_server.script("/target", DONE)
    for path in ("/307", "/303"):
        collect(sse_client.connect(path, SSERequest(sse_server.url(path), method="POST", body={"a": 1})))
    kept, turned = sse_server.requests_for("/target")
    assert (kept.method, kept.body) == ("POST", b'{"a":1}')
    assert (turned.method, turned.body) == ("GET", b"") and "content-type" not in turned.headers


def test_redirect_without_location_is_an_error(sse_server: SSEServer, sse_client: SSEClient) -> None:
    sse_server.script("/s", Response(302, {"Location": ""}))
    with pytest.raises(RedirectError, match="without a Location"):
        collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    assert len(sse_server.requests_for("/s")) == 1


def test_redirect_loop_is_an_error_not_a_hang(sse_server: SSEServer, sse_client: SSEClient) -> None:
    sse_server.script("/loop", Response(302, {"Location": "/loop"}))
    with pytest.raises(RedirectError, match="more than 10 redirects"):
        collect(sse_client.connect("s", SSERequest(sse_server.url("/loop"))))
    assert len(sse_server.requests_for("/loop")) == 11


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_5xx_and_429_are_retried(sse_server: SSEServer, sse_client: SSEClient, fast_retry: None, status: int) -> None:
    sse_server.script("/s", Response(status, {"Content-Type": "text/html"}, [b"busy"], "length"),
                      Response(body=[b"data: back\n\n"]), DONE)
    assert [e.data for e in collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))] == ["back"]


def test_retry_after_seconds_is_honoured(sse_server: SSEServer, sse_client: SSEClient) -> None:
    sse_server.script("/s", Response(503, {"Retry-After": "1", "Content-Type": "text/plain"}), DONE)
    collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    first, second = sse_server.requests_for("/s")
    assert second.received_at - first.received_at >= 0.95  # the default policy alone could wait 0 s


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_other_4xx_fail_at_once_with_status_headers_and_body(
    sse_server: SSEServer, sse_client: SSEClient, status: int
) -> None:
    errors: list[BaseException] = []
    headers = {"Content-Type": "text/html", "X-Reason": "nope"}
    sse_server.script("/s", Response(status, headers, [b"<h1>denied</h1>"], "length"))
    stream = sse_client.connect("s", SSERequest(sse_server.url("/s"), on_error=errors.append))
    with pytest.raises(HTTPStatusError) as caught:
        collect(stream)
    error = caught.value
    assert (error.status, error.headers["X-Reason"], error.body) == (status, "nope", b"<h1>denied</h1>")
    assert not error.retryable and error.connection_id == "s" and error.url == sse_server.url("/s")
    assert errors == [error] and len(sse_server.requests_for("/s")) == 1


@pytest.mark.parametrize("content_type", ["application/json", None])
def test_wrong_or_missing_content_type_fails_at_once(
    sse_server: SSEServer, sse_client: SSEClient, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    sse_server.script("/s", Response(headers=headers, body=[b'{"not": "a stream"}'], framing="length"))
    with pytest.raises(ContentTypeError) as caught:
        collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    assert caught.value.content_type == content_type and caught.value.body == b'{"not": "a stream"}'
    assert len(sse_server.requests_for("/s")) == 1


# -- reconnection --------------------------------------------------------------------------------


def test_reconnect_sends_last_event_id_after_eof(sse_server: SSEServer, sse_client: SSEClient) -> None:
    sse_server.script("/s", Response(body=[events("retry: 20\n\n", "id: 1\ndata: a\n\n", "id: 2\ndata: b\n\n")]),
                      Response(body=[events("id: 3\ndata: c\n\n")]), DONE)
    got = collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    assert [e.data for e in got] == ["a", "b", "c"]
    assert [r.headers.get("last-event-id") for r in sse_server.requests_for("/s")] == [None, "2", "3"]


def test_reconnect_after_drop_mid_event_never_sends_the_cut_off_id(
    sse_server: SSEServer, sse_client: SSEClient
) -> None:
    sse_server.script("/s", Response(body=[events("retry: 20\n\nid: 1\ndata: a\n\n", "id: 2\ndata: cut"), DROP]),
                      Response(body=[events("id: 2\ndata: b\n\n")]), DONE)
    got = collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    assert [e.data for e in got] == ["a", "b"]  # the incomplete event was never delivered
    assert [r.headers.get("last-event-id") for r in sse_server.requests_for("/s")] == [None, "1", "2"]


def test_empty_id_means_no_last_event_id_header(sse_server: SSEServer, sse_client: SSEClient) -> None:
    sse_server.script("/s", Response(body=[events("retry: 20\n\nid: 1\ndata: a\n\nid:\ndata: b\n\n")]), DONE)
    collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    assert [r.headers.get("last-event-id") for r in sse_server.requests_for("/s")] == [None, None]


def test_flaky_feed_delivers_every_event_once_in_order(sse_server: SSEServer, sse_client: SSEClient) -> None:
    request = SSERequest(sse_server.url("/flaky/f?count=10&drop_every=3&interval=0"))
    got = collect(sse_client.connect("f", request), timeout=15)
    assert [e.data["seq"] for e in got] == list(range(1, 11))
    assert len(sse_server.requests_for("/flaky/f")) == 5  # 4 drops, then 204 once all arrived


def test_retries_exhausted_after_max_retries(sse_server: SSEServer, sse_client: SSEClient, fast_retry: None) -> None:
    errors: list[BaseException] = []
    sse_server.script("/s", Response(503, {"Content-Type": "text/plain"}))
    stream = sse_client.connect("s", SSERequest(sse_server.url("/s"), max_retries=2, on_error=errors.append))
    with pytest.raises(RetriesExhaustedError) as caught:
        collect(stream)
    assert caught.value.attempts == 2 and isinstance(caught.value.__cause__, TemporaryHTTPError)
    message = str(caught.value)
    assert message.startswith("gave up after 3 failed attempts in a row, max_retries = 2 (the last: server "
                              "answered HTTP 503, a temporary failure") and message.count("(connection ") == 1
    assert len(sse_server.requests_for("/s")) == 3 and errors == [caught.value]


def test_failure_count_resets_once_a_stream_delivered(
    sse_server: SSEServer, sse_client: SSEClient, fast_retry: None
) -> None:
    busy = Response(503, {"Content-Type": "text/plain"})
    sse_server.script("/s", busy, busy, Response(body=[b"data: ok\n\n"]), busy, DONE)
    got = collect(sse_client.connect("s", SSERequest(sse_server.url("/s"), max_retries=2)))
    assert [e.data for e in got] == ["ok"] and len(sse_server.requests_for("/s")) == 5


def test_dead_server_is_a_network_error_retried_until_exhausted(sse_client: SSEClient, fast_retry: None) -> None:
    with SSEServer() as gone:
        url = gone.url("/s")
    with pytest.raises(RetriesExhaustedError) as caught:
        collect(sse_client.connect("s", SSERequest(url, max_retries=2)))
    assert isinstance(caught.value.__cause__, NetworkError)


def test_retry_false_ends_with_the_first_response(sse_server: SSEServer, sse_client: SSEClient) -> None:
    sse_server.script("/s", Response(body=[b"data: once\n\n"]))
    got = collect(sse_client.connect("s", SSERequest(sse_server.url("/s"), retry=False)))
    assert [e.data for e in got] == ["once"] and len(sse_server.requests_for("/s")) == 1
    sse_server.script("/e", Response(503, {"Content-Type": "text/plain"}))
    with pytest.raises(TemporaryHTTPError):
        collect(sse_client.connect("e", SSERequest(sse_server.url("/e"), retry=False)))
    assert len(sse_server.requests_for("/e")) == 1


def test_stalled_stream_reconnects_after_read_timeout(sse_server: SSEServer, sse_client: SSEClient) -> None:
    sse_server.script("/s", Response(body=[b"retry: 10\n\nid: 7\ndata: a\n\n"], stall=30), DONE)
    request = SSERequest(sse_server.url("/s"), read_timeout=0.3)
    got = collect(sse_client.connect("s", request), timeout=10)
    assert [e.data for e in got] == ["a"]
    assert [r.headers.get("last-event-id") for r in sse_server.requests_for("/s")] == [None, "7"]


@pytest.mark.parametrize(("framing", "encoding"), [("chunked", None), ("close", None), ("chunked", "gzip")])
def test_a_stream_silent_for_read_timeout_fails_after_it_and_says_so(
    sse_server: SSEServer, sse_client: SSEClient, framing: str, encoding: str | None
) -> None:
    sse_server.script("/s", Response(body=[b"data: a\n\n"], stall=30, framing=framing, encoding=encoding))  # type: ignore[arg-type]
    got: list[object] = []
    started = time.monotonic()
    with pytest.raises(NetworkError) as caught, gevent.Timeout(10):
        for event in sse_client.connect("s", SSERequest(sse_server.url("/s"), read_timeout=0.3, retry=False)):
            got.append(event.data)
    assert got == ["a"] and time.monotonic() - started >= 0.3
    # the identity bodies wait in recv under the stream's own deadline; a gzip body in urllib3
    assert ("read_timeout 0.3 s" if encoding is None else "timed out") in str(caught.value)


def test_read_timeout_restarts_with_every_byte(sse_server: SSEServer, sse_client: SSEClient) -> None:
    sse_server.script("/s", Response(body=[b"data: a", 0.25, b"b", 0.25, b"c", 0.25, b"\n\n"]))  # 0.75 s in all
    got = collect(sse_client.connect("s", SSERequest(sse_server.url("/s"), read_timeout=0.6, retry=False)))
    assert [e.data for e in got] == ["abc"] and len(sse_server.requests_for("/s")) == 1


def test_read_timeout_counts_the_wait_for_bytes_not_a_slow_handler(sse_server: SSEServer, sse_client: SSEClient) -> None:
    sse_server.script("/s", Response(body=[b"data: a\n\n", 0.1, b"data: b\n\n"]))
    handled: list[object] = []

    def slow(event: SSEResponse) -> None:
        gevent.sleep(0.6)  # twice read_timeout, in the stream's own greenlet
        handled.append(event.data)

    request = SSERequest(sse_server.url("/s"), read_timeout=0.3, retry=False, on_data=slow)
    assert [e.data for e in collect(sse_client.connect("s", request))] == ["a", "b"]
    assert handled == ["a", "b"] and len(sse_server.requests_for("/s")) == 1


def test_a_stream_iterated_late_gives_every_buffered_event_without_waiting_for_another(
    sse_server: SSEServer, sse_client: SSEClient
) -> None:
    # three batches, then silence: the connection reads ahead two and waits for room with the
    # third, which it hands over while the consumer drains the two; that must wake the consumer
    # (it once waited for a next batch that never came)
    sse_server.script("/s", Response(body=[x for n in range(3) for x in (0.05, b"data: %d\n\n" % n)], stall=30))
    stream = sse_client.connect("s", SSERequest(sse_server.url("/s"), retry=False))
    gevent.sleep(0.5)  # all three arrived meanwhile, nobody iterating
    with gevent.Timeout(3, AssertionError("an event stayed buffered while the consumer waited")):
        assert [next(stream).data for _ in range(3)] == [0, 1, 2]


def test_event_past_max_event_size_fails_the_stream(sse_server: SSEServer, sse_client: SSEClient) -> None:
    sse_server.script("/s", Response(body=[b"data: small\n\n", b"data: " + b"x" * 5000 + b"\n\n"]))
    stream = sse_client.connect("s", SSERequest(sse_server.url("/s"), max_event_size=1000))
    got: list[object] = []
    with pytest.raises(EventTooLargeError) as caught:
        for event in stream:
            got.append(event.data)
    assert got == ["small"] and caught.value.limit == 1000 and caught.value.connection_id == "s"


# -- client --------------------------------------------------------------------------------------


def test_many_named_connections_at_once(sse_server: SSEServer, sse_client: SSEClient) -> None:
    streams = {f"c{i}": sse_client.connect(f"c{i}", SSERequest(sse_server.url(f"/feed/c{i}?count=5&interval=0.01")))
               for i in range(50)}
    results = {cid: gevent.spawn(collect, stream, None, 15) for cid, stream in streams.items()}
    gevent.joinall(list(results.values()), timeout=20, raise_error=True)
    assert all([e.data["seq"] for e in g.value] == [1, 2, 3, 4, 5] for g in results.values())


def test_close_one_connection_ends_its_iterator_cleanly(sse_server: SSEServer, sse_client: SSEClient) -> None:
    done: list[str] = []
    slow = "/feed/{}?count=1000&interval=0.05"
    a = sse_client.connect("a", SSERequest(sse_server.url(slow.format("a")), on_done=lambda: done.append("a")))
    b = sse_client.connect("b", SSERequest(sse_server.url(slow.format("b"))))
    assert len(collect(a, count=2)) == 2 and len(collect(b, count=2)) == 2
    sse_client.close("a")
    collect(a, timeout=2)  # what was already queued, then a clean end: never an exception
    assert done == ["a"]
    assert len(collect(b, count=2)) == 2  # the other stream is unaffected
    sse_client.close()
    collect(b, timeout=2)
    assert sse_client.connections == {}
    for _ in range(40):  # the server sees the sockets closed at its next write
        if sse_server.open_streams("/feed/a") == sse_server.open_streams("/feed/b") == 0:
            break
        gevent.sleep(0.05)
    assert sse_server.open_streams("/feed/a") == sse_server.open_streams("/feed/b") == 0


@pytest.mark.parametrize(("callbacks", "taken", "read_ahead"), [
    # lent once the consumer waited for its 2nd event: its own greenlet reads, nothing is read ahead
    ({}, 2, (2, 3)),
    # a callback per batch keeps the connection in its own greenlet, which reads ahead
    ({"on_comment": lambda comment: None}, 1, (2, 30)),
], ids=["lent", "own-greenlet"])
def test_a_consumer_that_stops_asking_holds_the_connection_back(
    sse_server: SSEServer, sse_client: SSEClient, callbacks: dict[str, Any], taken: int, read_ahead: tuple[int, int]
) -> None:
    request = SSERequest(sse_server.url("/feed/s?count=100&interval=0.01"), retry=False, **callbacks)
    stream = sse_client.connect("s", request)
    first = collect(stream, count=taken)
    gevent.sleep(1.2)  # the feed would be over by now (100 x 10 ms) were nothing holding it back
    connection = sse_client.connections["s"]
    # own greenlet: 2 batches buffered and 1 waiting to be put (about one event per read here)
    assert read_ahead[0] <= connection.events_total <= read_ahead[1] and connection.state == "open"
    assert connection.lent == (not callbacks)
    rest = collect(stream, timeout=10)
    assert [e.data["seq"] for e in first + rest] == list(range(1, 101))  # then all of it, in order


def test_close_ends_a_connection_held_back_by_its_consumer(sse_server: SSEServer, sse_client: SSEClient) -> None:
    stream = sse_client.connect("s", SSERequest(sse_server.url("/feed/s?count=1000&interval=0.002")))
    collect(stream, count=1)
    gevent.sleep(0.3)  # the read-ahead is full: the connection waits for room
    connection = sse_client.connections["s"]
    sse_client.close("s")
    assert connection.state == "ended"  # it ended by itself (a killed greenlet never gets there)
    rest = [e.data["seq"] for e in collect(stream, timeout=2)]  # what was read ahead, then a clean end
    assert rest == list(range(2, 2 + len(rest)))


def test_a_timeout_while_waiting_for_the_next_event_loses_nothing(sse_server: SSEServer, sse_client: SSEClient) -> None:
    stream = sse_client.connect("s", SSERequest(sse_server.url("/feed/s?count=4&interval=0.1"), retry=False))
    seqs, timeouts = [], 0
    for _ in range(200):  # next() under a short timeout, as a poll loop would
        try:
            with gevent.Timeout(0.02):
                seqs.append(next(stream).data["seq"])
        except gevent.Timeout:
            timeouts += 1
        except StopIteration:
            break
    assert seqs == [1, 2, 3, 4] and timeouts > 0
    stream = sse_client.connect("t", SSERequest(sse_server.url("/feed/t?count=4&interval=0.1"), retry=False))
    before: list[int] = []
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.15):
        for event in stream:  # a for-loop left by a timeout: iterating again goes on
            before.append(event.data["seq"])
    assert before + [e.data["seq"] for e in collect(stream)] == [1, 2, 3, 4]


def test_close_stops_reconnects(sse_server: SSEServer, sse_client: SSEClient) -> None:
    sse_server.script("/s", Response(503, {"Content-Type": "text/plain", "Retry-After": "30"}))
    stream = sse_client.connect("s", SSERequest(sse_server.url("/s")))
    gevent.sleep(0.2)  # now waiting 30 s before reconnecting
    started = time.monotonic()
    sse_client.close("s")
    assert list(stream) == [] and time.monotonic() - started < 2
    assert len(sse_server.requests_for("/s")) == 1


def test_same_id_while_open_is_an_error(sse_server: SSEServer, sse_client: SSEClient) -> None:
    request = SSERequest(sse_server.url("/feed/x?count=100&interval=0.05"))
    sse_client.connect("x", request)
    with pytest.raises(ValueError, match="already open"):
        sse_client.connect("x", request)
    sse_client.close("x")
    sse_client.connect("x", request)  # free again once closed


def test_callbacks_on_data_each_event_and_on_error_once(sse_server: SSEServer, sse_client: SSEClient) -> None:
    seen: list[object] = []
    errors: list[BaseException] = []
    sse_server.script("/s", Response(body=[b"data: 1\n\ndata: 2\n\n"]), Response(404, {"Content-Type": "text/html"}))
    request = SSERequest(sse_server.url("/s"), on_data=lambda e: seen.append(e.data), on_error=errors.append)
    with pytest.raises(HTTPStatusError):
        collect(sse_client.connect("s", request))
    assert seen == [1, 2] and len(errors) == 1


def test_on_comment_gets_every_comment_in_stream_order_with_the_events(
    sse_server: SSEServer, sse_client: SSEClient
) -> None:
    """Heartbeat-only blocks included; a comment is reported as its line arrives, before the
    block it opens is complete (the server waits 0.3 s in between)."""
    body = [b": hello\n\n", b"id: 1\n: inside\ndata: a\n\n", b":ping\n", 0.3, b"\n:\ndata: b\n\n", b": bye\n\n"]
    sse_server.script("/s", Response(body=body))
    seen: list[tuple[str, object, float]] = []
    request = SSERequest(
        sse_server.url("/s"), reconnect="on_error",
        on_comment=lambda text: seen.append(("comment", text, time.monotonic())),
        on_data=lambda event: seen.append(("event", event.data, time.monotonic())),
    )
    events = collect(sse_client.connect("s", request))
    assert [(kind, value) for kind, value, _ in seen] == [
        ("comment", "hello"), ("comment", "inside"), ("event", "a"), ("comment", "ping"), ("comment", ""),
        ("event", "b"), ("comment", "bye"),
    ]
    assert seen[4][2] - seen[3][2] > 0.2  # "ping" came before the rest of the stream
    assert [(e.data, e.comment) for e in events] == [("a", "inside"), ("b", "")]


def test_an_on_comment_callback_that_raises_ends_the_stream_after_the_events_before_it(
    sse_server: SSEServer, sse_client: SSEClient
) -> None:
    sse_server.script("/s", Response(body=[b"data: a\n\n: boom\ndata: b\n\n"]))

    def explode(text: str) -> None:
        raise RuntimeError(f"cannot take {text!r}")

    got: list[SSEResponse] = []
    with pytest.raises(PluginError, match=r"'on_comment callback' raised in on_comment .*cannot take 'boom'"):
        for event in sse_client.connect("s", SSERequest(sse_server.url("/s"), on_comment=explode)):
            got.append(event)
    assert [e.data for e in got] == ["a"]


@pytest.mark.parametrize("iterating", [False, True], ids=["callbacks-only", "callbacks-and-iterator"])
def test_on_data_gets_every_event_whether_or_not_the_stream_is_iterated(
    sse_server: SSEServer, sse_client: SSEClient, iterating: bool
) -> None:
    body: list[bytes | float] = []
    for m in range(0, 40, 4):  # ten batches (the pauses keep them apart): more than the iterator reads ahead
        body += [b"".join(b"id: %d\ndata: %d\n\n" % (n, n) for n in range(m, m + 4)), 0.02]
    sse_server.script("/s", Response(body=body))
    seen: list[object] = []
    done = gevent.event.Event()
    request = SSERequest(sse_server.url("/s"), reconnect="on_error", on_data=lambda e: seen.append(e.data),
                         on_done=done.set)
    stream = sse_client.connect("s", request)
    iterated = [e.data for e in collect(stream)] if iterating else []
    assert done.wait(10) and seen == list(range(40))
    assert iterated == (list(range(40)) if iterating else [])


def test_client_refuses_to_start_without_monkey_patches() -> None:
    code = "from sseplug import SSEClient\nSSEClient()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "monkey.patch_all()" in out.stderr and "first lines of your program" in out.stderr


# -- TLS and proxies -------------------------------------------------------------------------------


@pytest.fixture
def tls_server() -> Iterator[tuple[SSEServer, trustme.CA]]:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with SSEServer(ssl_context=context) as server:
        server.script("/s", Response(body=[b"data: secret\n\n"]))
        for framing in ("chunked", "close"):  # headers first; the body only once the client waits
            server.script(f"/late-{framing}", Response(body=[0.2, b"data: late\n\n", 0.1, b"data: later\n\n"],
                                                       framing=framing))
        yield server, ca


def test_tls_certificates_are_verified_by_default(tls_server: tuple[SSEServer, trustme.CA], sse_client: SSEClient) -> None:
    server, _ = tls_server
    with pytest.raises(CertificateError, match="CERTIFICATE_VERIFY_FAILED"):
        collect(sse_client.connect("s", SSERequest(server.url("/s"))))  # fails at once: no retry cures it


def test_a_pool_manager_passed_in_is_used(tls_server: tuple[SSEServer, trustme.CA], sseplug_plugins: object) -> None:
    server, ca = tls_server
    with ca.cert_pem.tempfile() as ca_file:
        http = urllib3.PoolManager(ca_certs=ca_file)
        with SSEClient(plugin_manager=sseplug_plugins, http=http) as client:  # type: ignore[arg-type]
            got = collect(client.connect("s", SSERequest(server.url("/s"), retry=False)))
    assert [e.data for e in got] == ["secret"]


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_tls_stream_whose_body_comes_after_the_headers(
    tls_server: tuple[SSEServer, trustme.CA], sseplug_plugins: object, framing: str
) -> None:
    server, ca = tls_server
    with ca.cert_pem.tempfile() as ca_file:
        http = urllib3.PoolManager(ca_certs=ca_file)
        with SSEClient(plugin_manager=sseplug_plugins, http=http) as client:  # type: ignore[arg-type]
            got = collect(client.connect("s", SSERequest(server.url(f"/late-{framing}"), retry=False)))
    assert [e.data for e in got] == ["late", "later"]


@pytest.mark.parametrize("tls", [False, True])
def test_large_events_in_reads_that_find_bytes_or_wait(
    tls_server: tuple[SSEServer, trustme.CA], sse_server: SSEServer, sseplug_plugins: object, tls: bool
) -> None:
    # large reads land in a reused buffer while the socket has bytes, and wait without it
    events = [b"id: %d\ndata: %s\n\n" % (i, (b"%d" % i) * 100_000) for i in range(6)]
    server, ca = tls_server if tls else (sse_server, None)
    server.script("/big", Response(body=[b"".join(events[:3]), 0.2, events[3], 0.1, b"".join(events[4:])], framing="close"))
    pieces: list[object] = []
    with ca.cert_pem.tempfile() if ca else contextlib.nullcontext(None) as ca_file, \
            SSEClient(plugin_manager=sseplug_plugins) as client:  # type: ignore[arg-type]
        request = SSERequest(server.url("/big"), retry=False, on_bytes=pieces.append, verify=ca_file or True)
        got = collect(client.connect("s", request))
    assert [(e.id, e.data) for e in got] == [(str(i), str(i) * 100_000) for i in range(6)]
    assert all(type(piece) is bytes for piece in pieces) and b"".join(pieces) == b"".join(events)  # type: ignore[arg-type]


def test_a_silent_tls_stream_fails_after_read_timeout(tls_server: tuple[SSEServer, trustme.CA], sseplug_plugins: object) -> None:
    server, ca = tls_server
    server.script("/quiet", Response(body=[b"data: a\n\n"], stall=30))
    with ca.cert_pem.tempfile() as ca_file, SSEClient(plugin_manager=sseplug_plugins) as client:  # type: ignore[arg-type]
        stream = client.connect("s", SSERequest(server.url("/quiet"), read_timeout=0.3, retry=False, verify=ca_file))
        with pytest.raises(NetworkError, match=r"read_timeout 0\.3 s"), gevent.Timeout(10):
            assert next(stream).data == "a"
            next(stream)


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_stream_whose_body_comes_after_the_headers(sse_server: SSEServer, sse_client: SSEClient, framing: str) -> None:
    sse_server.script("/s", Response(body=[0.2, b"data: late\n\n", 0.1, b"data: later\n\n"], framing=framing))
    got = collect(sse_client.connect("s", SSERequest(sse_server.url("/s"), retry=False)))
    assert [e.data for e in got] == ["late", "later"]


def test_proxy_from_the_standard_environment_variables(
    sse_server: SSEServer, sse_client: SSEClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("no_proxy", "NO_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", sse_server.url("").rstrip("/"))
    sse_server.script("/s", Response(body=[b"data: via proxy\n\n"]))
    got = collect(sse_client.connect("s", SSERequest("http://stream.example.invalid/s", retry=False)))
    assert [e.data for e in got] == ["via proxy"]
    assert sse_server.requests_for("/s")[0].headers["host"] == "stream.example.invalid"


def test_no_proxy_sends_a_host_past_the_proxy(
    sse_server: SSEServer, sse_client: SSEClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens: going through it would fail
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    sse_server.script("/s", Response(body=[b"data: direct\n\n"]))
    for cid in ("a", "b"):  # the second connect uses the settings read at the first
        assert [e.data for e in collect(sse_client.connect(cid, SSERequest(sse_server.url("/s"), retry=False)))] == [
            "direct"]


def test_a_crash_outside_the_error_tree_is_logged_and_raised_never_silent(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Callable[..., object],
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Bug:
        @hookimpl
        def sseplug_handle_event(self) -> None:
            raise KeyboardInterrupt  # not an Exception: escapes the plugin-error path

    register_plugin(Bug(), "bug")
    sse_server.script("/s", Response(body=[b"data: 1\n\n"]))
    with pytest.raises(SSEError, match="internal error: KeyboardInterrupt"):
        collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    assert any("connection 's' crashed" in r.getMessage() for r in caplog.records)


def test_a_plugin_failure_marked_retryable_reconnects_from_the_last_checkpoint(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Callable[..., object], fast_retry: None
) -> None:
    class Unavailable(Exception):
        retryable = True

    class FlakySink:
        def __init__(self) -> None:
            self.failed = False

        @hookimpl
        def sseplug_handle_event(self, event: object) -> None:
            if getattr(event, "id") == "2" and not self.failed:
                self.failed = True
                raise Unavailable("backend briefly down")

    register_plugin(FlakySink(), "flaky-sink")
    three = b"id: 1\ndata: a\n\nid: 2\ndata: b\n\nid: 3\ndata: c\n\n"
    sse_server.script("/s", Response(body=[three]), Response(body=[three[15:]]), DONE)
    got = collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    assert [e.id for e in got] == ["1", "2", "3"]  # 2 handled again after the reconnect, nothing lost
    assert [r.headers.get("last-event-id") for r in sse_server.requests_for("/s")] == [None, "1", "3"]


def test_iterators_that_time_out_sleep_and_close_at_random_lose_nothing(
    sse_server: SSEServer, sse_client: SSEClient
) -> None:
    """The hand-off from connection to iterator under every way a consumer can behave."""

    def consume(index: int) -> tuple[str, list[int]]:
        rnd = random.Random(index)
        stream = sse_client.connect(f"c{index}", SSERequest(sse_server.url(f"/feed/c{index}?count=60&interval=0.002")))
        seqs: list[int] = []
        closes_at = rnd.choice([None, None, rnd.randrange(1, 60)])
        for _ in range(2000):  # bounded: each step takes an event, times out or sleeps
            if closes_at is not None and len(seqs) >= closes_at:
                sse_client.close(f"c{index}")
                seqs += [e.data["seq"] for e in stream]  # what was already read ahead, then the end
                return "closed", seqs
            action = rnd.random()
            if action < 0.15:
                gevent.sleep(rnd.random() * 0.01)
                continue
            try:
                with gevent.Timeout(0.0005 if action < 0.4 else 5):
                    event = next(stream)
            except gevent.Timeout:
                continue
            except StopIteration:
                return "ended", seqs
            seqs.append(event.data["seq"])
        return "unfinished", seqs

    jobs = [gevent.spawn(consume, i) for i in range(30)]
    gevent.joinall(jobs, timeout=60, raise_error=True)
    assert all(job.dead for job in jobs)
    for job in jobs:
        outcome, seqs = job.value
        assert outcome != "unfinished"
        if outcome == "ended":
            assert seqs == list(range(1, 61))
        else:  # closed: a prefix, in order, nothing twice
            assert seqs == list(range(1, len(seqs) + 1))


# -- life cycle and states -------------------------------------------------------------------------


def test_states_through_a_life_and_an_ended_stream_frees_its_id(sse_server: SSEServer, sse_client: SSEClient) -> None:
    sse_server.script("/s", Response(body=[b"data: a\n\n"]), DONE)
    stream = sse_client.connect("s", SSERequest(sse_server.url("/s"), retry=False), iterate=False)
    assert stream.state in (ConnectionState.NEW, ConnectionState.CONNECTING) and stream.is_open
    assert stream.wait(5)
    assert (stream.state, stream.error, stream.is_open) == (ConnectionState.ENDED, None, False)
    assert str(stream.state) == "ended" and stream.state == "ended"  # reads as its value
    assert "s" not in sse_client.connections  # not "open" any more
    again = sse_client.connect("s", SSERequest(sse_server.url("/s")), iterate=False)  # after the 204 too
    assert again.wait(5) and again.state is ConnectionState.ENDED


def test_a_failed_stream_keeps_its_error_on_the_connection(sse_server: SSEServer, sse_client: SSEClient) -> None:
    sse_server.script("/s", Response(404, {"Content-Type": "text/html"}))
    stream = sse_client.connect("s", SSERequest(sse_server.url("/s")), iterate=False)
    assert stream.wait(5)
    assert stream.state is ConnectionState.FAILED and stream.state.final
    assert isinstance(stream.error, HTTPStatusError) and stream.error is stream.connection.error
    assert sse_client.connect("s", SSERequest(sse_server.url("/s")), iterate=False).wait(5)


def test_a_runner_greenlet_that_dies_fails_the_run_loudly(
    tmp_path: Path, sse_server: SSEServer, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Runner):
        def _report_every(self, interval: float) -> None:
            raise RuntimeError("stats broke")

    config = parse_config(
        f'[[connections]]\nid = "s"\nurl = "{sse_server.url("/feed/s?count=1000&interval=0.05")}"\n',
        path=tmp_path / "run.toml",
    )
    runner = Broken(config, plugin_manager=create_plugin_manager(load_entry_points=False))
    with gevent.Timeout(15, AssertionError("the runner went on after its stats greenlet died")):
        status = runner.run()
    assert status == 1
    assert any("crashed" in r.getMessage() and r.exc_info and "stats broke" in str(r.exc_info[1])
               for r in caplog.records)
