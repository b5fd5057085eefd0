"""EventParser: bytes in, SSEResponse out, per WHATWG HTML "Interpreting an event stream" (sans-IO).

Theory of operation
-------------------
The spec's algorithm, and where each step lives here:

1. Decode the stream as UTF-8 with replacement, stripping one leading BOM: ``utf_8_decode``
   with ``final=False`` keeps the bytes of a character split between chunks for the next one
   (``_undecoded``), and the first text decoded loses its leading U+FEFF (``_bom``): what the
   ``utf-8-sig`` incremental decoder does, without its two Python-level calls per chunk.
2. Lines end at CRLF, LF or CR. Line content never holds CR or LF, so mapping CRLF then CR to LF
   keeps every line intact; the one case the mapping cannot see is a CR ending one chunk and an LF
   starting the next, which ``_cr`` remembers. Everything below sees LF-only text.
3. Each complete line is interpreted by ``_line`` (comment, field with value, field without colon);
   a blank line dispatches (``_dispatch``): the last event ID buffer is promoted to
   ``last_event_id``, and an event is built when the data buffer is not empty.
4. A partial line waits in ``_partial`` for the rest; at EOF the caller drops the parser, so an
   incomplete event is never dispatched and its ``id:`` is never promoted.

A ``retry:`` value past ``MAX_RETRY_MS`` (2**31-1 ms, the range of a browser's timers) is clamped
to it, without converting thousands of digits.

Memory stays within a small multiple of ``max_event_size`` whatever the line shape: once
``_FOLD_AT`` lines of a block are pending, ``_fold`` joins them into one string per buffer (raw
lines, data values, comments), so a block of tiny lines costs about its bytes rather than an
object and a list slot per line; the pieces of a line arriving over many chunks are folded alike.
Each line is copied into a fold once, so folding stays linear.

The bulk path: at a block boundary, the complete blocks of a chunk (everything before its last
blank line) are matched by one compiled regex, or scanned by the same rules in C
(``sseplug/_cparser.c``, built when a compiler is there; ``SSEPLUG_PURE_PYTHON=1`` leaves it out)
for text whose characters all fit in one byte. The common block shape (``id``, ``event``, then
``data`` lines, in that order) is read from the match groups; any other block is handed line by
line to ``_line``, the spec path. Both paths give identical results on every input
(property-tested). A ``decode_data`` with a ``json_loads`` attribute, ``(loads, error)`` (the
json plugin's, from ``make_decoder``), is run by the C core itself: the same checks, then
``loads``, with no Python frame per event; a run of one-line events each holding one JSON object,
array or string (by its brackets and quotes) is decoded with one ``loads`` of a list, and taken
one event at a time whenever that list does not parse into one item per event.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Callable
from typing import Any

from .errors import EventTooLargeError
from .models import DEFAULT_MAX_EVENT_SIZE, SSEResponse

__all__ = ["Comment", "EventParser", "DataDecodeError", "MAX_RETRY_MS"]

MAX_RETRY_MS = 2**31 - 1  # a browser's timers go no further; longer retry: values are clamped
_RETRY_DIGITS = len(str(MAX_RETRY_MS))  # a value with more (significant) digits is past it
_FOLD_AT = 512  # pending lines of a block (or pieces of a line) joined into one string

_utf8_decode = codecs.utf_8_decode

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

_cbulk: Callable[..., str | None] | None = None
if os.environ.get("SSEPLUG_PURE_PYTHON") != "1":
    try:  # the bulk path in C, when it was built (setup.py: optional); SSEPLUG_PURE_PYTHON=1 skips it
        from ._cparser import bulk

        _cbulk = bulk
    except ImportError:  # pragma: no cover - exercised where the extension is not built
        pass


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class Comment(str):
    """A comment line's text (after the colon and one optional space), as ``feed`` reports it
    among the events when the parser's ``report_comments`` is set."""

    __slots__ = ()


class DataDecodeError(Exception):
    """``decode_data`` raised (the ``__cause__``) on the data of the event with id ``event_id``.

    Not a parser problem: ``events`` holds the events the same ``feed`` completed before it.
    """

    def __init__(self, event_id: str) -> None:
        super().__init__(f"decode_data failed on the data of the event with id {event_id!r}")
        self.event_id = event_id
        self.events: list[SSEResponse] = []


class EventParser:
    """Turns chunks of an event stream into ``SSEResponse`` values, exactly as a browser would.

    ``feed(chunk)`` returns the events completed by ``chunk``; an incomplete event waits for more
    bytes. ``last_event_id`` is the spec's last event ID string (promoted only at a blank line);
    ``retry`` the last valid ``retry:`` value in milliseconds (at most ``MAX_RETRY_MS``), or
    ``None``. ``max_event_size`` bounds, in UTF-8 bytes, any line and any event (its block of
    lines): going past it raises ``EventTooLargeError``, after which the parser must be discarded.
    Pass the previous stream's ``last_event_id`` when parsing a reconnected stream, so events keep
    their id as in a browser. ``decode_data``, a pure function of the data text, gives each event's
    ``data`` (``None`` keeps the text): decoding while the event is built costs less than
    rebuilding it later. An exception it raises comes out of ``feed`` as ``DataDecodeError``,
    after which the parser must be discarded too. ``feed_with_comments`` also returns each
    comment line as a ``Comment``, in stream order with the events, as soon as the line is
    complete (also in blocks that dispatch no event: heartbeats).
    """

    __slots__ = ("last_event_id", "retry", "max_event_size", "decode_data", "_undecoded", "_bom", "_cr",
                 "_partial", "_partial_folded", "_partial_size", "_id", "_event", "_data", "_comments", "_raw",
                 "_data_done", "_comments_done", "_raw_done", "_block_retry", "_block_size", "_bulk_enabled",
                 "_out")

    def __init__(
        self,
        last_event_id: str = "",
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        decode_data: Callable[[str], Any] | None = None,
    ) -> None:
        self.last_event_id = last_event_id
        self.decode_data = decode_data
        self._out: list[SSEResponse | Comment] | None = None  # feed_with_comments' result, while it runs
        self.retry: int | None = None
        self.max_event_size = max_event_size
        self._undecoded = b""  # the first bytes of a character the next chunk completes
        self._bom = True  # no text decoded yet: a leading BOM is still to be dropped
        self._cr = False  # the last chunk ended in CR: a leading LF completes that CRLF
        self._partial: list[str] = []  # pieces of a line still waiting for its end
        self._partial_folded = 0  # how many of them, at the front, are folds of earlier pieces
        self._partial_size = 0
        self._id = last_event_id  # the spec's last event ID buffer
        self._event = ""
        self._data: list[str] = []  # data values; "\n".join() is the buffer minus its last LF
        self._comments: list[str] = []
        self._raw: list[str] = []  # lines of the current block; empty at a block boundary
        # folds of the current block (each the join of its buffer's lines before it), in order
        self._data_done: list[str] = []
        self._comments_done: list[str] = []
        self._raw_done: list[str] = []
        self._block_retry: int | None = None
        self._block_size = 0
        self._bulk_enabled = True  # False: spec path only (the reference the bulk path is tested on)

    @property
    def pending_size(self) -> int:
        """UTF-8 bytes of the event (block and unfinished line) waiting for more bytes."""
        return self._block_size + self._partial_size

    def feed(self, chunk: bytes | memoryview) -> list[SSEResponse]:
        """Parse ``chunk`` and return the events it completed, in stream order. A memoryview is
        read during the call only: the caller may reuse its buffer afterwards."""
        return self._feed(chunk, [])

    def feed_with_comments(self, chunk: bytes | memoryview) -> list[SSEResponse | Comment]:
        """``feed``, with the comment lines ``chunk`` completed among the events, in stream order."""
        out: list[SSEResponse | Comment] = []
        self._out = out
        try:
            self._feed(chunk, out)  # type: ignore[arg-type]  # _line adds the Comments, only here
        finally:
            self._out = None
        return out

    def _feed(self, chunk: bytes | memoryview, events: list[SSEResponse]) -> list[SSEResponse]:
        data = self._undecoded + chunk if self._undecoded else chunk
        text, used = _utf8_decode(data, "replace", False)
        self._undecoded = bytes(data[used:]) if used < len(data) else b""  # a copy of a view: its buffer is reused
        if self._bom and text:
            self._bom = False
            if text[0] == "\ufeff":
                text = text[1:]
        if self._cr and text:
            self._cr = False
            if text[0] == "\n":
                text = text[1:]
        if "\r" in text:
            self._cr = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if not text:
            return []
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
                self._partial_folded = 0
                self._partial_size = 0
                self._line(line)  # not blank: a waiting piece is never empty
                pos = end + 1
            if self._raw:  # inside a block: finish it on the spec path (pos is set: nothing dispatched yet)
                pos = self._lines(text, pos or 0, events, stop_at_dispatch=True)
            if pos is not None and self._bulk_enabled:
                # the last LF first (memrchr): a long unfinished line is then not scanned twice
                end = text.rfind("\n\n", pos, text.rfind("\n", pos) + 1)
                if end >= 0:
                    self._bulk(text, pos, end + 2, events)
                    pos = end + 2
            if pos is not None and pos < len(text):
                self._lines(text, pos, events, stop_at_dispatch=False)
        except (EventTooLargeError, DataDecodeError) as error:
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
        if len(self._raw) >= _FOLD_AT:
            self._fold()
        self._raw.append(line)
        self._block_size += _utf8_size(line) + 1
        if self._block_size > self.max_event_size:
            self._too_large(self._block_size)
        if line[0] == ":":
            comment = line[2:] if line[1:2] == " " else line[1:]
            self._comments.append(comment)
            if self._out is not None:
                self._out.append(Comment(comment))
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
                digits = value.lstrip("0") or "0"  # "007" is 7: the length is then the magnitude
                retry = int(digits) if len(digits) <= _RETRY_DIGITS else MAX_RETRY_MS
                self.retry = self._block_retry = min(retry, MAX_RETRY_MS)
        # any other field name is ignored, as the spec says

    def _dispatch(self, events: list[SSEResponse]) -> None:
        """A blank line: promote the id; build an event when the data buffer is not empty."""
        self.last_event_id = self._id
        if self._raw_done:  # a long block: its folds come first
            self._raw = self._raw_done + self._raw
            self._data = self._data_done + self._data
            self._comments = self._comments_done + self._comments
            self._raw_done, self._data_done, self._comments_done = [], [], []
        if self._data:
            data = "\n".join(self._data)
            if self.decode_data is not None:
                try:
                    value = self.decode_data(data)
                except Exception as error:
                    raise DataDecodeError(self._id) from error
                if value is not None:
                    data = value
            events.append(
                SSEResponse(
                    self._id,
                    self._event or "message",
                    data,
                    "\n".join(self._comments),
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

    def _fold(self) -> None:
        """Join the pending lines of each buffer into one string, appended to its ``*_done``."""
        self._raw_done.append("\n".join(self._raw))
        self._raw = []
        if self._data:  # only a non-empty list: [] is no data line, [""] one empty data line
            self._data_done.append("\n".join(self._data))
            self._data = []
        if self._comments:
            self._comments_done.append("\n".join(self._comments))
            self._comments = []

    def _grow_partial(self, piece: str) -> None:
        partial, folded = self._partial, self._partial_folded
        partial.append(piece)
        if len(partial) - folded >= _FOLD_AT:  # join only the pieces since the last fold: linear
            partial[folded:] = ["".join(partial[folded:])]
            self._partial_folded += 1
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
        if _cbulk is not None and not check_size:

            def spec_path(block: str, last_id: str) -> str:  # a block of another shape
                """Parse one block of a shape the C core leaves to Python, line by line (the spec's path)."""
                self._id = last_id
                for line in block.split("\n"):
                    self._line(line)
                self._dispatch(events)
                return self._id

            # the json plugin's decoder is run in C from its (loads, error) pair: no frame per event
            cdecode = getattr(decode, "json_loads", decode)
            last = _cbulk(text, pos, end, events, cdecode, last_id, spec_path, SSEResponse, DataDecodeError)
            if last is not None:  # else a string of a kind it does not read: the regex below
                self._id = self.last_event_id = last
                return
        for block, has_id, id_, event, data, more, other in _BLOCK.findall(text, pos, end):
            if block:
                if check_size and _utf8_size(block) + 1 > limit:
                    self._too_large(_utf8_size(block) + 1)
                if has_id:
                    last_id = id_
                if more:
                    data += more.replace("\ndata: ", "\n")
                if decode is not None:
                    try:
                        value = decode(data)
                    except Exception as error:
                        raise DataDecodeError(last_id) from error
                    if value is not None:
                        data = value
                append(_new_event(SSEResponse, (last_id, event or "message", data, "", block, None)))
            elif other:  # the spec path, line by line
                self._id = last_id
                for line in other[:-1].split("\n"):
                    self._line(line)
                self._dispatch(events)
                last_id = self._id
        self._id = self.last_event_id = last_id
