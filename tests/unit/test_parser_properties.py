"""Property tests: random streams, random line endings, random chunking; bulk path == spec path."""

from __future__ import annotations

from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sseplug import SSEResponse
from sseplug import parser as parser_module
from sseplug.parser import _FOLD_AT

from .parsing import both_cores  # noqa: F401  (a fixture: every test runs with the C and the Python bulk path)
from .parsing import Outcome, run, run_with_comments

LINE_TEXT = st.text(
    alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)), max_size=12
)
EOLS = st.sampled_from(["\n", "\r", "\r\n"])

EVENT = st.fixed_dictionaries(
    {
        "id": st.none() | LINE_TEXT,
        "event": st.none() | LINE_TEXT,
        "data": st.lists(LINE_TEXT, min_size=1, max_size=4),
        "comments": st.lists(LINE_TEXT, max_size=2),
        "space": st.booleans(),
    }
)

pytestmark = pytest.mark.usefixtures("both_cores")


def cut(blob: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(blob) + 1) for c in cuts})
    return [blob[a:b] for a, b in zip([0, *points], [*points, len(blob)])]


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, str, str, str]], list[object]]:
    """An event stream with random line endings, and the events a browser would dispatch."""
    events = draw(st.lists(EVENT, max_size=6))
    text, expected, last_id, previous_eol = [], [], "", ""
    in_order: list[object] = []  # the comment lines and the events, as feed_with_comments gives them

    def line(content: str) -> None:
        nonlocal previous_eol
        eol = draw(EOLS)
        if previous_eol == "\r" and eol == "\n":
            eol = "\r\n"  # a lone LF after a lone CR would merge into one CRLF
        text.append(content + eol)
        previous_eol = eol

    sep = ": " if draw(st.booleans()) else ":"
    for event in events:
        lines = [":" + (" " if c.startswith(" ") or event["space"] else "") + c for c in event["comments"]]
        if event["id"] is not None:
            lines.append("id" + (": " if event["id"].startswith(" ") else sep) + event["id"])
            last_id = event["id"]
        if event["event"] is not None:
            lines.append("event" + (": " if event["event"].startswith(" ") else sep) + event["event"])
        others, lines = lines, ["data" + (": " if d.startswith(" ") or event["space"] else ":") + d for d in event["data"]]
        at = 0
        for other in others:  # non-data lines anywhere in the block; each kind keeps its order
            at = draw(st.integers(min_value=at, max_value=len(lines)))
            lines.insert(at, other)
            at += 1
        for content in lines:
            line(content)
        line("")
        data = "\n".join(event["data"])
        expected.append((last_id, event["event"] or "message", data, "\n".join(event["comments"])))
        in_order += [("comment", c) for c in event["comments"]] + [expected[-1]]
    prefix = "\ufeff" if draw(st.booleans()) else ""
    return (prefix + "".join(text)).encode(), expected, in_order


def shape(events: list[SSEResponse]) -> list[tuple[str, str, str, str]]:
    return [(e.id, e.event, e.data, e.comment) for e in events]


@settings(max_examples=300, deadline=None)
@given(streams(), st.lists(st.integers(min_value=0), max_size=8))
def test_random_streams_with_random_chunking_give_the_browser_events(
    stream: tuple[bytes, list[tuple[str, str, str, str]], list[object]], cuts: list[int]
) -> None:
    blob, expected, _ = stream
    for bulk in (True, False):
        assert shape(run(cut(blob, cuts), bulk=bulk).events) == expected
    assert run([blob]) == run([blob], bulk=False)


@settings(max_examples=300, deadline=None)
@given(streams(), st.lists(st.integers(min_value=0), max_size=8))
def test_comments_are_reported_in_stream_order_before_the_event_of_their_block(
    stream: tuple[bytes, list[tuple[str, str, str, str]], list[object]], cuts: list[int]
) -> None:
    blob, _, in_order = stream
    for bulk in (True, False):
        items = run_with_comments(cut(blob, cuts), bulk=bulk)
        assert [shape([item])[0] if isinstance(item, SSEResponse) else item for item in items] == in_order


TOKENS = st.sampled_from(
    [b"data", b"id", b"event", b"retry", b":", b" ", b"\n", b"\n\n", b"\r", b"\r\n", b"x", b"12",
     b"\x00", b"\xc3", b"\xa9", b"\xef\xbb\xbf", b"\xef", b"\xff", b"\xe2\x80\xa8"]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(TOKENS, max_size=40), st.lists(st.integers(min_value=0), max_size=8))
def test_bulk_path_equals_spec_path_on_every_input(tokens: list[bytes], cuts: list[int]) -> None:
    blob = b"".join(tokens)
    reference = run([blob], bulk=False)
    assert run([blob]) == reference
    assert run(cut(blob, cuts)) == reference
    assert run(cut(blob, cuts), bulk=False) == reference
    with_comments = run_with_comments([blob], bulk=False)
    assert [item for item in with_comments if isinstance(item, SSEResponse)] == reference.events
    assert run_with_comments(cut(blob, cuts)) == with_comments
    assert run_with_comments(bytewise(blob)) == with_comments


def reversed_text(text: str) -> str | None:
    """A stand-in decoder: any pure function of the text; None keeps the text."""
    return text[::-1] if len(text) % 2 else None


@settings(max_examples=300, deadline=None)
@given(st.lists(TOKENS, max_size=40), st.lists(st.integers(min_value=0), max_size=8))
def test_decode_data_gives_the_decoded_data_of_the_same_events(tokens: list[bytes], cuts: list[int]) -> None:
    blob = b"".join(tokens)
    plain = run([blob], bulk=False)
    expected = [e._replace(data=reversed_text(e.data) or e.data) for e in plain.events]
    for bulk in (True, False):
        assert run(cut(blob, cuts), bulk=bulk, decode_data=reversed_text).events == expected


def bytewise(blob: bytes) -> list[bytes]:
    return [blob[i : i + 1] for i in range(len(blob))]


@settings(max_examples=300, deadline=None)
@given(st.lists(TOKENS, max_size=40), st.lists(st.integers(min_value=0), max_size=8), st.integers(1, 4))
def test_folding_lines_and_line_pieces_at_any_threshold_changes_nothing(
    tokens: list[bytes], cuts: list[int], fold_at: int
) -> None:
    blob = b"".join(tokens)
    reference = run([blob], bulk=False)  # fewer lines and pieces than _FOLD_AT: nothing folded
    with mock.patch.object(parser_module, "_FOLD_AT", fold_at):
        for bulk in (True, False):
            assert run(cut(blob, cuts), bulk=bulk) == reference
            assert run(bytewise(blob), bulk=bulk) == reference


BLOCK_LINES = st.sampled_from(
    ["data", "data:", "data: x", "data:x y", "data: é€", ":", ": c", ":c", "id: 1", "event: e", "retry: 7", "f: z"]
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(BLOCK_LINES, min_size=1, max_size=6),
    st.integers(_FOLD_AT - 2, 3 * _FOLD_AT + 2),
    EOLS,
    st.lists(st.integers(min_value=0), max_size=8),
)
def test_a_block_longer_than_the_fold_threshold_gives_the_event_of_its_lines(
    pattern: list[str], count: int, eol: str, cuts: list[int]
) -> None:
    lines = (pattern * count)[:count]
    fields = [(name, value.removeprefix(" ")) for name, _, value in (line.partition(":") for line in lines)]
    data = [value for name, value in fields if name == "data"]
    comments = [value for name, value in fields if name == ""]
    last_id, retry = ("1" if "id: 1" in lines else ""), (7 if "retry: 7" in lines else None)
    event = SSEResponse(
        last_id, "e" if "event: e" in lines else "message", "\n".join(data),
        "\n".join(comments), "\n".join(lines), retry,
    )
    expected = Outcome([event] if data else [], last_id, retry)
    blob = (eol.join(lines) + eol + eol).encode()
    for bulk in (True, False):
        assert run(cut(blob, cuts), bulk=bulk) == expected
    assert run([blob[i : i + 7] for i in range(0, len(blob), 7)]) == expected


def test_a_long_line_in_many_pieces_is_one_line() -> None:
    blob = ("data: " + "ab€𝄞" * 700 + "\ndata: x\n\n").encode()
    assert run(bytewise(blob)) == run([blob]) and run([blob]).events[0].data == "ab€𝄞" * 700 + "\nx"
