"""Recordings of what a server sent, with arrival times: written by ``sseplug record``, served
back by ``sseplug serve --replay`` and the ``serve_recording`` test fixture.

The file format (UTF-8 text, one record per line, so a person can read and edit it)::

    # sseplug recording 1
    0.000 open 200 text/event-stream
    0.004 bytes ": hello\\n\\nid: 1\\ndata: {\\"n\\": 1}\\n\\n"
    0.512 bytes "id: 2\\ndata: caf\\u00e9\\n\\n"
    9.870 close eof

Each line is ``SECONDS KIND VALUE``: seconds since the recording started; ``open`` (a response
began: its status and Content-Type), ``bytes`` (a piece of the body, after chunked and gzip
decoding, as a JSON string of its UTF-8 text: bytes that are not UTF-8 are kept as ``\\udcXX``
escapes, so any body survives), ``close`` (the response ended: why). Lines starting with ``#``
and blank lines are ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .parser import EventParser

__all__ = ["HEADER", "Piece", "Recording", "RecordingError", "RecordingWriter"]

HEADER = "# sseplug recording 1"
_KINDS = ("open", "bytes", "close")
# a blank line: two line ends (CRLF, CR, LF; a CR followed by LF is one CRLF)
_BLANK_LINE = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")
_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, as surrogateescape keeps them


class RecordingError(ValueError):
    """A recording file that does not follow the format: ``line`` says where (1-based)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass(frozen=True, slots=True)
class Piece:
    """One piece of a recorded body and when (seconds from the start) it arrived."""

    at: float
    data: bytes


@dataclass(slots=True)
class Recording:
    """The body pieces of a recording, all its responses one after the other, in order."""

    pieces: list[Piece] = field(default_factory=list)
    content_type: str = "text/event-stream"

    @classmethod
    def load(cls, path: str | Path) -> Recording:
        """Read a recording file; a malformed line raises ``RecordingError``."""
        recording = cls()
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            at_text, _, rest = line.partition(" ")
            kind, _, value = rest.partition(" ")
            try:
                at = float(at_text)
            except ValueError:
                raise RecordingError(f"expected the seconds first, got {at_text!r}", number) from None
            if kind not in _KINDS:
                raise RecordingError(f"unknown kind {kind!r}; expected one of {', '.join(_KINDS)}", number)
            if kind == "bytes":
                try:
                    text = json.loads(value)
                except ValueError:
                    text = None
                if not isinstance(text, str):
                    raise RecordingError("a bytes record holds one JSON string", number)
                recording.pieces.append(Piece(at, text.encode("utf-8", "surrogateescape")))
            elif kind == "open" and not recording.pieces and value.partition(" ")[2].strip():
                recording.content_type = value.partition(" ")[2].strip()
        return recording

    def body(self) -> bytes:
        """Every recorded byte, in order."""
        return b"".join(piece.data for piece in self.pieces)

    def resume_offset(self, last_event_id: str) -> int:
        """Where the stream goes on after the first block that made ``last_event_id`` the last
        event id (as a browser counts it); 0 when no block did."""
        body, parser, start = self.body(), EventParser(), 0
        for blank in _BLANK_LINE.finditer(body):
            parser.feed(body[start : blank.end()])
            start = blank.end()
            if parser.last_event_id == last_event_id:
                return start
        return 0

    def timeline(self, offset: int = 0, speed: float = 1.0) -> Iterator[bytes | float]:
        """The body from byte ``offset`` as server pieces: bytes, and the waits between them
        (the recorded ones divided by ``speed``; ``speed=0``: no waits)."""
        position, previous = 0, None
        for piece in self.pieces:
            end = position + len(piece.data)
            if end > offset:
                if previous is not None and speed:
                    yield max(0.0, piece.at - previous) / speed
                yield piece.data[max(0, offset - position) :]
                previous = piece.at
            position = end


class RecordingWriter:
    """Writes a recording to ``out``, timing records from its creation (``clock`` seconds)."""

    def __init__(self, out: IO[str], clock: float) -> None:
        self.out, self.start = out, clock
        out.write(HEADER + "\n")

    def open(self, now: float, status: int, content_type: str) -> None:
        """Record the response head: its status and Content-Type."""
        self._write(now, "open", f"{status} {content_type}")

    def piece(self, now: float, data: bytes) -> None:
        """Record a piece of the body, as a JSON string of its UTF-8 text (other bytes as ``\\udcXX``)."""
        text = json.dumps(data.decode("utf-8", "surrogateescape"), ensure_ascii=False)
        self._write(now, "bytes", _ESCAPED.sub(lambda match: f"\\u{ord(match.group()):04x}", text))

    def close(self, now: float, reason: str) -> None:
        """Record why the response ended."""
        self._write(now, "close", reason.replace("\n", " "))

    def _write(self, now: float, kind: str, value: str) -> None:
        self.out.write(f"{now - self.start:.3f} {kind} {value}\n")
        self.out.flush()
