"""Body: large reads land in one buffer kept from read to read, held only while the socket has
bytes for them (a small read, or one that would wait, puts it back as the process's one spare)."""

from __future__ import annotations

import socket
import types
from collections.abc import Iterator

import pytest

from sseplug import _body
from sseplug._body import LARGE_READ_SIZE, READ_SIZE, Body
from sseplug.parser import EventParser

from .parsing import chunkings


@pytest.fixture
def pair() -> Iterator[tuple[Body, socket.socket]]:
    """A close-delimited body read from one end of a socket pair, and the other end to write to."""
    _body._SPARE.clear()
    ours, theirs = socket.socketpair()
    raw = ours.makefile("rb")  # what http.client reads the head through
    response = types.SimpleNamespace(_fp=types.SimpleNamespace(fp=raw), chunked=False, length_remaining=None, headers={})
    body = Body(response, None)  # type: ignore[arg-type]  # the attributes Body reads
    yield body, theirs
    body.close()
    ours.close()
    theirs.close()
    _body._SPARE.clear()


def test_large_reads_reuse_one_buffer(pair: tuple[Body, socket.socket]) -> None:
    body, server = pair
    server.sendall(b"data: one\n\n")
    first = body.read(LARGE_READ_SIZE)
    assert isinstance(first, memoryview) and bytes(first) == b"data: one\n\n"
    held = body._buffer
    assert held is not None and first.obj is held
    server.sendall(b"data: two\n\n")
    second = body.read(LARGE_READ_SIZE)
    assert isinstance(second, memoryview) and second.obj is held and bytes(second) == b"data: two\n\n"


def test_a_small_read_puts_the_buffer_back_as_the_spare(pair: tuple[Body, socket.socket]) -> None:
    body, server = pair
    server.sendall(b"data: one\n\n")
    body.read(LARGE_READ_SIZE)
    held = body._buffer
    server.sendall(b"data: two\n\n")
    assert body.read(READ_SIZE) == b"data: two\n\n"  # bytes of its own, not a view
    assert body._buffer is None and _body._SPARE == [held]
    server.sendall(b"data: three\n\n")
    third = body.read(LARGE_READ_SIZE)  # large again: the spare is taken back
    assert isinstance(third, memoryview) and third.obj is held and _body._SPARE == []


def test_a_read_that_would_wait_holds_no_buffer(pair: tuple[Body, socket.socket]) -> None:
    body, server = pair
    server.sendall(b"data: one\n\n")
    body.read(LARGE_READ_SIZE)
    held = body._buffer
    seen: list[object] = []

    def recv(size: int) -> bytes:  # the socket's blocking recv, once nothing was there
        seen.append((size, body._buffer, list(_body._SPARE)))
        return b"data: late\n\n"

    body._recv = recv
    assert body.read(LARGE_READ_SIZE) == b"data: late\n\n"
    assert seen == [(LARGE_READ_SIZE, None, [held])]


def test_the_process_keeps_one_spare_at_most() -> None:
    _body._SPARE.clear()
    bodies = []
    try:
        for _ in range(2):
            ours, theirs = socket.socketpair()
            response = types.SimpleNamespace(_fp=types.SimpleNamespace(fp=ours.makefile("rb")), chunked=False,
                                             length_remaining=None, headers={})
            body = Body(response, None)  # type: ignore[arg-type]
            theirs.sendall(b"x")
            body.read(LARGE_READ_SIZE)
            bodies.append((body, ours, theirs))
        assert bodies[0][0]._buffer is not bodies[1][0]._buffer
        for body, _, theirs in bodies:
            theirs.sendall(b"y")
            body.read(READ_SIZE)
            assert body._buffer is None
        assert len(_body._SPARE) == 1
    finally:
        for _, ours, theirs in bodies:
            ours.close()
            theirs.close()
        _body._SPARE.clear()


def test_the_end_of_the_stream_is_none(pair: tuple[Body, socket.socket]) -> None:
    body, server = pair
    server.shutdown(socket.SHUT_WR)
    assert body.read(LARGE_READ_SIZE) is None


def test_the_parser_keeps_a_copy_of_a_split_character_not_the_view() -> None:
    buffer = bytearray(b"data: caf\xc3")
    parser = EventParser()
    assert parser.feed(memoryview(buffer)) == []
    buffer[:] = b"\xa9\n\n\x00\x00\x00\x00\x00\x00\x00"  # the reader reuses its buffer
    (event,) = parser.feed(memoryview(buffer)[:3])
    assert event.data == "café"


def test_views_of_a_reused_buffer_parse_as_bytes_do() -> None:
    stream = "\ufeffid: é1\r\ndata: ça\r\n\r\n: note\rdata: 😀\n\nid: 2\ndata: x\n\n".encode()
    expected = EventParser().feed(stream)
    for name, pieces in chunkings(stream):
        parser, buffer, events = EventParser(), bytearray(len(stream)), []
        for piece in pieces:
            buffer[: len(piece)] = piece  # each read overwrites the last one's bytes
            events += parser.feed(memoryview(buffer)[: len(piece)])
        assert events == expected, name
