"""Events as rows: the COPY text of each, and what PostgreSQL cannot store, refused before it is sent."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sseplug.models import SSEResponse

__all__ = ["Batch", "EventRefused", "Row", "RowMaker", "copy_rows", "last_index", "storable"]

MAX_JSONB = (1 << 28) - 1  # PostgreSQL's limit for one jsonb value, in bytes
MAX_TEXT = (1 << 30) - 1  # and for one text value
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

Row = tuple[str, str, str]
"""(event id, the COPY text of the columns from ``id`` on, the raw block)."""


class EventRefused(Exception):
    """PostgreSQL cannot store this event (or refused its row): the event's failure, which the
    connection's error policy handles (retry, skip, dead letter or stop)."""

    retryable = False


@dataclass(slots=True)
class Batch:
    """A connection's rows and dead letters, buffered until its checkpoint."""

    rows: list[Row] = field(default_factory=list)
    letters: list[tuple[Any, ...]] = field(default_factory=list)


class RowMaker:
    """Makes the COPY text of an event's row; ``received_at`` is formatted once a second."""

    __slots__ = ("_second", "_stamp")

    def __init__(self) -> None:
        self._second, self._stamp = 0, ""

    def row(self, event: SSEResponse) -> str:
        """The COPY text of the event's columns from ``id`` to ``received_at`` (tab-separated, ended);
        ``EventRefused`` for what PostgreSQL cannot store."""
        data = event.data
        if type(data) is str:
            value, text = r"\N", _text(data, "the data", MAX_TEXT, event)
        else:
            try:
                encoded = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str)
            except ValueError:
                raise EventRefused(f"event id {event.id!r}: its data holds NaN or Infinity (or refers to "
                                   "itself), which jsonb cannot store") from None
            if "\\u0000" in encoded:
                raise EventRefused(f"event id {event.id!r}: its data holds a NUL character (\\u0000), which jsonb "
                                   "cannot store")
            value, text = _text(encoded, "the data", MAX_JSONB, event), r"\N"
        now = time.time()
        second = int(now)
        if self._second != second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
        stamp = f"{self._stamp}.{int((now - second) * 1e6):06d}+00"
        return (f"{_text(event.id, 'the id', MAX_TEXT, event)}\t{_text(event.event, 'the event type', MAX_TEXT, event)}"
                f"\t{value}\t{text}\t{stamp}\n")


def copy_rows(cid: str, seq: int, rows: list[Row]) -> bytes:
    """COPY text rows of connection ``cid``, numbered from ``seq + 1``."""
    head = cid.translate(_COPY_ESCAPES)
    return "".join(f"{head}\t{seq + number}\t{row[1]}" for number, row in enumerate(rows, 1)).encode(
        "utf-8", "surrogatepass")


def last_index(rows: list[Row], event_id: str) -> int | None:
    """The index of the last row of event ``event_id``, or ``None``."""
    for index in range(len(rows) - 1, -1, -1):
        if rows[index][0] == event_id:
            return index
    return None


def storable(text: str) -> str:
    """``text`` as a text column can hold it: NUL and lone surrogates replaced (dead letters keep
    the exact block in ``raw``)."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _text(value: str, what: str, limit: int, event: SSEResponse) -> str:
    """``value`` escaped for COPY text; what PostgreSQL cannot store raises ``EventRefused``."""
    if "\x00" in value:
        raise EventRefused(f"event id {event.id!r}: {what} holds a NUL character, which PostgreSQL text cannot store")
    if not value.isascii():
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise EventRefused(f"event id {event.id!r}: {what} holds a lone surrogate, which UTF-8 cannot "
                               "encode") from None
        if size > limit:
            raise EventRefused(f"event id {event.id!r}: {what} is {size} bytes, over PostgreSQL's limit of {limit}")
    elif len(value) > limit:
        raise EventRefused(f"event id {event.id!r}: {what} is {len(value)} bytes, over PostgreSQL's limit of {limit}")
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value
