"""EventParser: bytes in, SSEResponse out, per WHATWG HTML "Interpreting an event stream" (sans-IO).

Theory of operation
-------------------
The spec's algorithm, and where each step lives here:

1. Decode the stream as UTF-8 with replacement, stripping one leading BOM: an incremental
   ``utf-8-sig`` decoder, so a character or the BOM split between chunks is joined first.
2. Lines end at CRLF, LF or CR. Line content never holds CR or LF, so mapping CRLF then CR to LF
   keeps every line intact; the one case the mapping cannot see is a CR ending one chunk and an LF
   starting the next, which ``_cr`` remembers. Everything below sees LF-only text.
3. Each complete line is interpreted by ``_line`` (comment, field with value, field without colon);
   a blank line dispatches (``_dispatch``): the last event ID buffer is promoted to
   ``last_event_id``, and an event is built when the data buffer is not empty.
4. A partial line waits in ``_partial`` for the rest; at EOF the caller drops the parser, so an
   incomplete event is never dispatched and its ``id:`` is never promoted.

The bulk path: at a block boundary, the complete blocks of a chunk (everything before its last
blank line) are matched by one compiled regex. The common block shape (``id``, ``event``, then
``data`` lines, in that order) is read from the match groups; any other block is handed line by
line to ``_line``, the spec path. Both paths give identical results on every input
(property-tested).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from typing import Any

from .errors import EventTooLargeError
from .models import DEFAULT_MAX_EVENT_SIZE, SSEResponse

__all__ = ["EventParser"]

_Decoder = codecs.getincrementaldecoder("utf-8-sig")

# Alternatives, tried in order at each block boundary; findall() gives "" for a group that did
# not take part, hence the separate "id" marker group:
#   1-6: the common block (1: the block without its blank line): optional "id" (marker 2, value
#        3, no NUL), optional "event" (4), a "data" line (value 5), then more "data: " lines
#        (6, each with its "\ndata: " prefix, dropped by one str.replace);
#   7:   any other block of non-empty lines, up to its blank line;
#   -:   a blank line between blocks (dispatches nothing: the data buffer is already empty).
_BLOCK = re.compile(
    r"((?:(id): ?([^\n\x00]*)\n)?(?:event: ?([^\n]*)\n)?data: ?([^\n]*)((?:\ndata: [^\n]*)*))\n\n"
    r"|((?:[^\n]+\n)+)\n"
    r"|\n"
)
_new_event = tuple.__new__  # SSEResponse is a NamedTuple: skip its Python-level __new__


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class EventParser:
    """Turns chunks of an event stream into ``SSEResponse`` values, exactly as a browser would.

    ``feed(chunk)`` returns the events completed by ``chunk``; an incomplete event waits for more
    bytes. ``last_event_id`` is the spec's last event ID string (promoted only at a blank line);
    ``retry`` the last valid ``retry:`` value in milliseconds, or ``None``. ``max_event_size``
    bounds, in UTF-8 bytes, any line and any event (its block of lines): going past it raises
    ``EventTooLargeError``, after which the parser must be discarded. Pass the previous stream's
    ``last_event_id`` when parsing a reconnected stream, so events keep their id as in a browser.
    ``decode_data``, a pure function of the data text, gives each event's ``data`` (``None``
    keeps the text): decoding while the event is built costs less than rebuilding it later.
    """

    __slots__ = (
        "last_event_id",
        "retry",
        "max_event_size",
        "_decoder",
        "_cr",
        "_partial",
        "_partial_size",
        "_id",
        "_event",
        "_data",
        "_comments",
        "_raw",
        "_block_retry",
        "_block_size",
        "_bulk_enabled",
        "decode_data",
    )

    def __init__(
        self,
        last_event_id: str = "",
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        decode_data: Callable[[str], Any] | None = None,
    ) -> None:
        self.last_event_id = last_event_id
        self.decode_data = decode_data
        self.retry: int | None = None
        self.max_event_size = max_event_size
        self._decoder = _Decoder(errors="replace")
        self._cr = False  # the last chunk ended in CR: a leading LF completes that CRLF
        self._partial: list[str] = []  # pieces of a line still waiting for its end
        self._partial_size = 0
        self._id = last_event_id  # the spec's last event ID buffer
        self._event = ""
        self._data: list[str] = []  # data values; "\n".join() is the buffer minus its last LF
        self._comments: list[str] = []
        self._raw: list[str] = []  # lines of the current block; empty at a block boundary
        self._block_retry: int | None = None
        self._block_size = 0
        self._bulk_enabled = True  # False: spec path only (the reference the bulk path is tested on)

    def feed(self, chunk: bytes) -> list[SSEResponse]:
        """Parse ``chunk`` and return the events it completed, in stream order."""
        text = self._decoder.decode(chunk)
        if self._cr and text:
            self._cr = False
            if text[0] == "\n":
                text = text[1:]
        if "\r" in text:
            self._cr = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if not text:
            return []
        events: list[SSEResponse] = []
        try:
            pos: int | None = 0
            if self._partial:  # complete the waiting line: join its pieces once, not the whole chunk
                end = text.find("\n")
                if end < 0:
                    self._grow_partial(text)
                    return []
                self._partial.append(text[:end])
                line = "".join(self._partial)
                self._partial = []
                self._partial_size = 0
                self._line(line)  # not blank: a waiting piece is never empty
                pos = end + 1
            if self._raw:  # inside a block: finish it on the spec path
                pos = self._lines(text, pos, events, stop_at_dispatch=True)
            if pos is not None and self._bulk_enabled:
                # the last LF first (memrchr): a long unfinished line is then not scanned twice
                end = text.rfind("\n\n", pos, text.rfind("\n", pos) + 1)
                if end >= 0:
                    self._bulk(text, pos, end + 2, events)
                    pos = end + 2
            if pos is not None:
                self._lines(text, pos, events, stop_at_dispatch=False)
        except EventTooLargeError as error:
            error.events = events  # nothing already parsed is lost
            raise
        return events

    # -- the spec path ---------------------------------------------------------------------------

    def _lines(self, text: str, pos: int, events: list[SSEResponse], stop_at_dispatch: bool) -> int | None:
        """Interpret the complete lines of ``text`` from ``pos``; keep a trailing partial line.

        Returns the position after the first dispatch when ``stop_at_dispatch``, else ``None``
        once the text is used up.
        """
        find = text.find
        while (end := find("\n", pos)) >= 0:
            line = text[pos:end]
            pos = end + 1
            if line:
                self._line(line)
            else:
                self._dispatch(events)
                if stop_at_dispatch:
                    return pos
        if pos < len(text):
            self._grow_partial(text[pos:])
        return None

    def _line(self, line: str) -> None:
        """Interpret one non-blank line (spec: "comment", "field", "field without colon")."""
        self._raw.append(line)
        self._block_size += _utf8_size(line) + 1
        if self._block_size > self.max_event_size:
            self._too_large(self._block_size)
        if line[0] == ":":
            self._comments.append(line[2:] if line[1:2] == " " else line[1:])
            return
        colon = line.find(":")
        if colon < 0:
            name, value = line, ""
        else:  # one slice for the value, after its optional space: values can be megabytes
            name = line[:colon]
            value = line[colon + 2 if line[colon + 1 : colon + 2] == " " else colon + 1 :]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self._id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry = self._block_retry = int(value)
        # any other field name is ignored, as the spec says

    def _dispatch(self, events: list[SSEResponse]) -> None:
        """A blank line: promote the id; build an event when the data buffer is not empty."""
        self.last_event_id = self._id
        if self._data:
            data = "\n".join(self._data)
            if self.decode_data is not None and (value := self.decode_data(data)) is not None:
                data = value
            events.append(
                SSEResponse(
                    self._id,
                    self._event or "message",
                    data,
                    "\n".join(self._comments) if self._comments else None,
                    "\n".join(self._raw),
                    self._block_retry,
                )
            )
            self._data = []
        self._event = ""
        self._comments = []
        self._raw = []
        self._block_retry = None
        self._block_size = 0

    def _grow_partial(self, piece: str) -> None:
        self._partial.append(piece)
        self._partial_size += _utf8_size(piece)
        if self._block_size + self._partial_size > self.max_event_size:
            self._too_large(self._block_size + self._partial_size)

    def _too_large(self, size: int) -> None:
        raise EventTooLargeError(
            f"event stream line or event of at least {size} bytes exceeds max_event_size "
            f"({self.max_event_size} bytes); raise max_event_size if such events are expected",
            limit=self.max_event_size,
            size=size,
        )

    # -- the bulk path ---------------------------------------------------------------------------

    def _bulk(self, text: str, pos: int, end: int, events: list[SSEResponse]) -> None:
        """Dispatch the complete blocks in ``text[pos:end]`` (which ends with a blank line)."""
        limit = self.max_event_size
        check_size = (end - pos) * 4 > limit  # a char is at most 4 UTF-8 bytes
        append, decode, last_id = events.append, self.decode_data, self._id
        for block, has_id, id_, event, data, more, other in _BLOCK.findall(text, pos, end):
            if block:
                if check_size and _utf8_size(block) + 1 > limit:
                    self._too_large(_utf8_size(block) + 1)
                if has_id:
                    last_id = id_
                if more:
                    data += more.replace("\ndata: ", "\n")
                if decode is not None and (value := decode(data)) is not None:
                    data = value
                append(_new_event(SSEResponse, (last_id, event or "message", data, None, block, None)))
            elif other:  # the spec path, line by line
                self._id = last_id
                for line in other[:-1].split("\n"):
                    self._line(line)
                self._dispatch(events)
                last_id = self._id
        self._id = self.last_event_id = last_id
