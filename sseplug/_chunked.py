"""HTTP/1.1 chunked transfer coding, sans-IO: raw body bytes in, payload bytes out.

The connection reads a chunked event stream's socket buffer with this instead of one HTTP chunk
per ``read1()`` call: servers that send one chunk per event would otherwise cost a read, a parse
and a dispatch per event.
"""

from __future__ import annotations

import re

__all__ = ["ChunkedDecoder", "ChunkedError"]

_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?")  # chunk-size [chunk-ext] [CR]
_MAX_LINE = 4096  # a size or trailer line longer than this is not HTTP
_HEX = b"0123456789abcdefABCDEF"


class ChunkedError(ValueError):
    """The body is not valid chunked transfer coding."""


class ChunkedDecoder:
    """Decodes a chunked body; ``done`` once the last chunk and the trailers were read."""

    __slots__ = ("done", "_buffer", "_left", "_after_data", "_in_trailers")

    def __init__(self) -> None:
        self.done = False
        self._buffer = b""
        self._left = 0  # bytes of the current chunk's data still to come
        self._after_data = False  # the CRLF ending a chunk's data is next
        self._in_trailers = False

    def feed(self, data: bytes) -> bytes:
        """The payload bytes that ``data`` completes (possibly empty)."""
        buffer = self._buffer + data if self._buffer else data
        size = len(buffer)
        out: list[bytes] = []
        pos = 0
        while pos < size and not self.done:
            if not (self._left or self._after_data or self._in_trailers):
                pos = self._whole_chunks(buffer, pos, out)  # the common case, at C speed mostly
                if pos >= size:
                    break
            if self._left:
                end = min(size, pos + self._left)
                out.append(buffer[pos:end])
                self._left -= end - pos
                pos = end
                self._after_data = not self._left
                continue
            newline = buffer.find(b"\n", pos, pos + _MAX_LINE)
            if newline < 0:
                if size - pos >= _MAX_LINE:
                    raise ChunkedError("a chunk-size or trailer line longer than 4096 bytes")
                break  # the line is not complete yet
            line = buffer[pos:newline]
            pos = newline + 1
            if self._after_data:
                if line not in (b"\r", b""):
                    raise ChunkedError(f"expected CRLF after chunk data, got {line[:40]!r}")
                self._after_data = False
            elif self._in_trailers:
                self.done = line in (b"\r", b"")  # the empty line after the trailers
            else:
                match = _SIZE.fullmatch(line)
                if match is None:
                    raise ChunkedError(f"invalid chunk-size line {line[:40]!r}")
                self._left = int(match.group(1), 16)
                self._in_trailers = not self._left
        self._buffer = buffer[pos:] if not self.done else b""
        return b"".join(out) if len(out) != 1 else out[0]

    @staticmethod
    def _whole_chunks(buffer: bytes, pos: int, out: list[bytes]) -> int:
        """Take the complete ``SIZE CRLF data CRLF`` chunks at ``pos``; return where it stopped
        (at anything else: a partial chunk, an extension, the last chunk, bad framing), for the
        state machine to take over there."""
        find = buffer.find
        while True:
            line_end = find(b"\r\n", pos, pos + 18)
            if line_end <= pos:
                return pos
            digits = buffer[pos:line_end]
            if digits.translate(None, _HEX) or digits == b"0":
                return pos  # not plain hex digits (an extension, spaces), or the last chunk
            start = line_end + 2
            end = start + int(digits, 16)
            if buffer[end : end + 2] != b"\r\n":
                return pos  # incomplete, or bad framing the state machine will report
            out.append(buffer[start:end])
            pos = end + 2
