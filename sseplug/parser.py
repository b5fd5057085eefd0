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
blank line) are matched by one compiled regex, or split on blank lines where blocks hold several
data lines. The common block shape (``id``, ``event``, then ``data`` lines, in that order) is read
from the match groups or with string methods; any other block is handed line by line to
``_line``, the spec path. Both paths give identical results on every input (property-tested).
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
#   1-5: the common block (1: the block without its blank line): optional "id" (marker 2, value
#        3, no NUL), optional "event" (4), one "data" line (value 5);
#   6:   any other block of non-empty lines, up to its blank line;
#   -:   a blank line between blocks (dispatches nothing: the data buffer is already empty).
_BLOCK = re.compile(
    r"((?:(id): ?([^\n\x00]*)\n)?(?:event: ?([^\n]*)\n)?data: ?([^\n]*))\n\n"
    r"|((?:[^\n]+\n)+)\n"
    r"|\n"
)
SPLIT_ABOVE = 2  # data lines per block, on average, above which the bulk path splits blocks
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
        """Dispatch the complete blocks in ``text[pos:end]`` (which ends with a blank line).

        Blocks of one ``data`` line are matched by ``_BLOCK`` at C speed; a region where blocks
        hold several data lines on average is split on blank lines instead, since the regex
        engine scans long multi-line blocks slower than ``str.split`` and ``str.replace`` do.
        """
        limit = self.max_event_size
        check_size = (end - pos) * 4 > limit  # a char is at most 4 UTF-8 bytes
        last_id = self._id
        if text.count("\ndata:", pos, end) > SPLIT_ABOVE * text.count("\n\n", pos, end):
            for block in text[pos : end - 2].split("\n\n"):
                block = block.strip("\n")  # more blank lines between blocks dispatch nothing
                if block:
                    last_id = self._block(block, last_id, events, check_size)
        else:
            append, decode = events.append, self.decode_data
            for block, has_id, id_, event, data, other in _BLOCK.findall(text, pos, end):
                if block:
                    if check_size and _utf8_size(block) + 1 > limit:
                        self._too_large(_utf8_size(block) + 1)
                    if has_id:
                        last_id = id_
                    if decode is not None and (value := decode(data)) is not None:
                        data = value
                    append(_new_event(SSEResponse, (last_id, event or "message", data, None, block, None)))
                elif other:
                    last_id = self._block(other[:-1], last_id, events, check_size)
        self._id = self.last_event_id = last_id

    def _block(self, block: str, last_id: str, events: list[SSEResponse], check_size: bool) -> str:
        """Dispatch one complete block (its lines, without the blank line); return the last id.

        The common shape is read by ``_common_event``; anything else goes line by line through
        the spec path.
        """
        if check_size and _utf8_size(block) + 1 > self.max_event_size:
            self._too_large(_utf8_size(block) + 1)
        event = _common_event(block, last_id, self.decode_data)
        if event is not None:
            events.append(event)
            return event[0]
        self._id = last_id
        for line in block.split("\n"):
            self._line(line)
        self._dispatch(events)
        return self._id


def _common_event(block: str, last_id: str, decode: Callable[[str], Any] | None) -> SSEResponse | None:
    """The event of a block shaped ``[id:] [event:] data: ...`` (every data line with its one
    space), read with string methods; ``None`` for any other block."""
    pos, event_id, event_type = 0, last_id, ""
    if block.startswith("id:"):
        end = block.find("\n")
        if end < 0:
            return None
        event_id = block[4 if block[3:4] == " " else 3 : end]
        if "\x00" in event_id:
            return None
        pos = end + 1
    if block.startswith("event:", pos):
        end = block.find("\n", pos)
        if end < 0:
            return None
        event_type = block[pos + (7 if block[pos + 6 : pos + 7] == " " else 6) : end]
        pos = end + 1
    if not block.startswith("data: ", pos):
        return None
    data: Any = block[pos + 6 :].replace("\ndata: ", "\n")
    if len(block) - pos - 6 - len(data) != 6 * data.count("\n"):
        return None  # some line after the first is not "data: ...": each replacement drops 6 chars
    if decode is not None and (value := decode(data)) is not None:
        data = value
    return _new_event(SSEResponse, (event_id, event_type or "message", data, None, block, None))
