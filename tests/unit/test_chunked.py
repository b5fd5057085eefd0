"""ChunkedDecoder: HTTP/1.1 chunked transfer coding fed whole, byte by byte and at every split."""

from __future__ import annotations

import pytest

from sseplug._chunked import ChunkedDecoder, ChunkedError

from .parsing import chunkings


def decode(body: bytes) -> tuple[bytes, bool]:
    """Payload and ``done`` of ``body``, after checking every chunking agrees."""
    results = set()
    for _, pieces in chunkings(body):
        decoder = ChunkedDecoder()
        payload = b"".join(decoder.feed(piece) for piece in pieces)
        results.add((payload, decoder.done))
    assert len(results) == 1, results
    return results.pop()


def test_chunks_are_joined_and_the_last_chunk_ends_the_body() -> None:
    assert decode(b"5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n") == (b"hello world", True)


def test_incomplete_body_is_not_done() -> None:
    assert decode(b"5\r\nhello\r\n3\r\nwo") == (b"hellowo", False)


def test_extensions_trailers_and_hex_case() -> None:
    body = b"A;name=value\r\n0123456789\r\nb \r\n0123456789a\r\n0\r\nX-Trailer: 1\r\n\r\n"
    assert decode(body) == (b"01234567890123456789a", True)


def test_lf_only_framing_is_tolerated() -> None:
    assert decode(b"2\nab\n0\n\n") == (b"ab", True)


def test_payload_may_hold_crlf_and_chunk_like_bytes() -> None:
    assert decode(b"7\r\n0\r\n\r\nx\n\r\n0\r\n\r\n") == (b"0\r\n\r\nx\n", True)


@pytest.mark.parametrize("line", [b"0x10", b"+10", b"1_0", b"", b"zz", b"10000000000000000"])
def test_invalid_chunk_size_lines_are_errors(line: bytes) -> None:
    with pytest.raises(ChunkedError, match="invalid chunk-size"):
        ChunkedDecoder().feed(line + b"\r\n")


def test_missing_crlf_after_data_is_an_error() -> None:
    with pytest.raises(ChunkedError, match="expected CRLF"):
        ChunkedDecoder().feed(b"2\r\nabXX\r\n")


def test_endless_size_line_is_an_error_not_unbounded_memory() -> None:
    decoder = ChunkedDecoder()
    with pytest.raises(ChunkedError, match="longer than 4096"):
        for _ in range(10):
            decoder.feed(b"1" * 1000)


def test_many_chunks_with_an_extension_and_odd_sizes_between_plain_ones() -> None:
    payloads = [bytes([65 + i % 26]) * (i * 7 % 300) for i in range(1, 60)]
    body = b"".join(
        (b"%x;x=1\r\n" if i == 30 else b"%X\r\n" if i % 2 else b"%x\r\n") % len(p) + p + b"\r\n"
        for i, p in enumerate(payloads)
        if p
    ) + b"0\r\n\r\n"
    decoder = ChunkedDecoder()
    assert decoder.feed(body) == b"".join(payloads) and decoder.done
    pieces = [body[i : i + 97] for i in range(0, len(body), 97)]
    decoder = ChunkedDecoder()
    assert b"".join(decoder.feed(piece) for piece in pieces) == b"".join(payloads) and decoder.done
