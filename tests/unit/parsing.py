"""Test helpers: feed a stream to EventParser every way it can arrive and require one answer."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import pytest

from sseplug import EventParser, SSEResponse
from sseplug import parser as parser_module
from sseplug.parser import Comment


@pytest.fixture(params=["c", "python"])
def both_cores(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test with the bulk path in C, then with the regex (``SSEPLUG_PURE_PYTHON=1``'s)."""
    if request.param == "c":
        if parser_module._cbulk is None:
            pytest.fail("sseplug._cparser is not built: pip install -e . with a C compiler")
    else:
        monkeypatch.setattr(parser_module, "_cbulk", None)
    return str(request.param)


class Outcome(NamedTuple):
    events: list[SSEResponse]
    last_event_id: str
    retry: int | None


def run(chunks: Iterable[bytes], *, bulk: bool = True, **options: object) -> Outcome:
    parser = EventParser(**options)  # type: ignore[arg-type]
    parser._bulk_enabled = bulk
    events: list[SSEResponse] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return Outcome(events, parser.last_event_id, parser.retry)


def run_with_comments(chunks: Iterable[bytes], *, bulk: bool = True) -> list[SSEResponse | tuple[str, str]]:
    """What ``feed_with_comments`` returns over ``chunks``; a comment as ``("comment", text)``."""
    parser = EventParser()
    parser._bulk_enabled = bulk
    items: list[SSEResponse | tuple[str, str]] = []
    for chunk in chunks:
        for item in parser.feed_with_comments(chunk):
            items.append(("comment", str(item)) if type(item) is Comment else item)  # type: ignore[arg-type]
    return items


def chunkings(stream: bytes) -> Iterator[tuple[str, list[bytes]]]:
    """Whole; one byte at a time; split at every offset."""
    yield "whole", [stream]
    yield "bytewise", [stream[i : i + 1] for i in range(len(stream))]
    for cut in range(1, len(stream)):
        yield f"split@{cut}", [stream[:cut], stream[cut:]]


def parse(stream: bytes, **options: object) -> Outcome:
    """The outcome of ``stream``, after checking every chunking and both paths agree on it."""
    expected = run([stream], **options)
    for name, chunks in chunkings(stream):
        for bulk in (True, False):
            got = run(chunks, bulk=bulk, **options)
            assert got == expected, f"{name} (bulk={bulk}) differs from whole feed"
    return expected


def datas(stream: bytes, **options: object) -> list[str]:
    return [event.data for event in parse(stream, **options).events]
