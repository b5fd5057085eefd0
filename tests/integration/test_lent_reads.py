"""An iterated stream whose batches need nothing but the parser is read in the consumer's own
greenlet (the connection lends it the response): one greenlet per idle stream, and every way a
consumer or a plugin can get in the way of that loses nothing."""

from __future__ import annotations

from typing import Any

import gevent
import pytest

from sseplug import SSEClient, SSEError, SSERequest, hookimpl
from sseplug.server import Response, SSEServer
from sseplug.testing import DONE, collect

FEED = "/feed/s?count=6&interval=0.3"


def waiting_in_lent_read(client: SSEClient, stream: Any) -> gevent.Greenlet[..., list[Any]]:
    """A consumer iterating ``stream`` to its end, once it took the first event (handed over by
    the connection's greenlet) and waits for the next one in the lent read."""
    consumer = gevent.spawn(collect, stream)  # to the end: a lent read goes on only while iterated
    with gevent.Timeout(5, AssertionError("the consumer never took the read over")):
        while not stream.connection.lent or stream.connection.events_total < 1:
            gevent.sleep(0.005)
    return consumer


def closed_on_server(sse_server: SSEServer, path: str) -> bool:
    """Whether the server saw the stream's socket closed within 5 s (it sees it at its next write)."""
    for _ in range(100):
        if sse_server.open_streams(path) == 0:
            return True
        gevent.sleep(0.05)
    return False


def test_an_iterated_idle_stream_holds_one_greenlet_and_keeps_its_place_in_the_pool(
    sse_server: SSEServer, sseplug_plugins: Any
) -> None:
    with SSEClient(plugin_manager=sseplug_plugins, pool_size=1) as client:
        stream = client.connect("s", SSERequest(sse_server.url(FEED), retry=False))
        consumer = waiting_in_lent_read(client, stream)
        assert len(client.pool) == 0 and client.pool.lent == 1  # its greenlet ended; its place is kept
        with pytest.raises(SSEError, match=r"pool of 1 connections is full"):
            client.connect("t", SSERequest(sse_server.url(FEED)))
        assert [e.data["seq"] for e in consumer.get(timeout=10)] == [1, 2, 3, 4, 5, 6]
        assert stream.wait(5) and stream.state == "ended" and client.pool.lent == 0


def test_close_from_another_greenlet_ends_a_lent_read_cleanly(sse_server: SSEServer, sse_client: SSEClient) -> None:
    stream = sse_client.connect("s", SSERequest(sse_server.url("/feed/s?count=100&interval=0.5")))
    consumer = waiting_in_lent_read(sse_client, stream)
    connection = stream.connection
    sse_client.close("s")
    assert connection.state == "ended" and not connection.lent  # given back, then ended in the pool
    assert [e.data["seq"] for e in consumer.get(timeout=5)] == [1]  # then a clean end
    assert closed_on_server(sse_server, "/feed/s")


def test_a_killed_consumer_leaves_a_lent_read_that_close_still_ends(
    sse_server: SSEServer, sse_client: SSEClient
) -> None:
    stream = sse_client.connect("s", SSERequest(sse_server.url("/feed/s?count=100&interval=0.5")))
    consumer = waiting_in_lent_read(sse_client, stream)
    consumer.kill(block=True, timeout=5)
    assert stream.connection.lent and stream.is_open  # nobody reads it now, and nothing ended it
    assert not stream.wait(0.1)
    sse_client.close("s")
    assert stream.connection.state == "ended" and closed_on_server(sse_server, "/feed/s")


def test_a_stream_iterated_again_after_its_consumer_was_killed_goes_on(
    sse_server: SSEServer, sse_client: SSEClient
) -> None:
    stream = sse_client.connect("s", SSERequest(sse_server.url("/feed/s?count=4&interval=0.2"), retry=False))
    first = waiting_in_lent_read(sse_client, stream)
    first.kill(block=True, timeout=5)  # while it waited in the lent read: the read was not lost
    seqs = [e.data["seq"] for e in collect(stream)]
    assert seqs[0] in (1, 2) and seqs[-1] == 4 and seqs == list(range(seqs[0], 5))  # event 1 went to the killed one


def test_a_handler_registered_while_the_consumer_reads_gets_the_read_back_to_a_greenlet(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Any
) -> None:
    stream = sse_client.connect("s", SSERequest(sse_server.url(FEED), retry=False))
    consumer = waiting_in_lent_read(sse_client, stream)
    handled: list[int] = []

    class Handler:
        @hookimpl
        def sseplug_handle_event(self, event: Any) -> None:
            handled.append(event.data["seq"])

    register_plugin(Handler(), "handler")
    assert [e.data["seq"] for e in consumer.get(timeout=10)] == [1, 2, 3, 4, 5, 6]
    assert handled and handled == list(range(handled[0], 7))  # from the next read on, in the pool's greenlet
    assert not stream.connection.lent


def test_a_stall_while_the_consumer_reads_reconnects_from_the_last_event(
    sse_server: SSEServer, sse_client: SSEClient
) -> None:
    sse_server.script("/s", Response(body=[b"retry: 10\n\nid: 7\ndata: a\n\n"], stall=30), DONE)
    stream = sse_client.connect("s", SSERequest(sse_server.url("/s"), read_timeout=0.3))
    consumer = waiting_in_lent_read(sse_client, stream)  # the stall fails this greenlet's read
    assert [e.data for e in consumer.get(timeout=10)] == ["a"] and stream.state == "ended"
    assert [r.headers.get("last-event-id") for r in sse_server.requests_for("/s")] == [None, "7"]
    assert "read_timeout 0.3 s" in str(stream.connection.last_error)
