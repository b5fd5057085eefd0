"""EventParser against WHATWG HTML 9.2.6 "Interpreting an event stream", one named test per rule.

Every case goes through ``parse``: fed whole, byte by byte and split at every offset, on the bulk
path and on the spec path, with identical results required.
"""

from __future__ import annotations

import itertools
import tracemalloc
from collections.abc import Iterable

import pytest

from sseplug import EventParser, SSEResponse
from sseplug.errors import EventTooLargeError
from sseplug.parser import MAX_RETRY_MS, Comment, DataDecodeError

from .parsing import both_cores  # noqa: F401  (a fixture: every test runs with the C and the Python bulk path)
from .parsing import datas, parse, run

BOM = "\ufeff".encode()

pytestmark = pytest.mark.usefixtures("both_cores")


# -- decoding ------------------------------------------------------------------------------------


def test_invalid_utf8_becomes_replacement_character_and_stream_continues() -> None:
    assert datas(b"data: a\xffb\xc3\n\ndata: next\n\n") == ["a\ufffdb\ufffd", "next"]


def test_multibyte_character_split_across_chunks_is_kept() -> None:
    stream = "data: é€𝄞\n\n".encode()
    assert datas(stream) == ["é€𝄞"]  # parse() splits inside each multi-byte sequence too


def test_one_leading_bom_is_stripped_even_split_across_chunks() -> None:
    assert datas(BOM + b"data: 1\n\n") == ["1"]
    assert run([BOM[:1], BOM[1:2], BOM[2:] + b"data: 1\n\n"]).events[0].data == "1"


def test_second_leading_bom_is_kept_and_spoils_the_field_name() -> None:
    # wpt format-bom-2: the second BOM is part of the first line, so "\ufeffdata" is unknown
    assert datas(BOM + BOM + b"data: 1\n\ndata: 2\n\ndata: 3") == ["2"]


def test_later_bom_is_kept() -> None:
    # wpt format-bom: a BOM that does not start the stream is ordinary text
    assert datas(BOM + b"data: 1\n\n" + BOM + b"data: 2\n\ndata: 3\n\n") == ["1", "3"]
    assert datas(b"data: x" + BOM + b"\n\n") == ["x\ufeff"]


# -- line endings --------------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"], ids=["LF", "CR", "CRLF"])
def test_lines_end_at_lf_cr_and_crlf(eol: bytes) -> None:
    stream = b"data: a" + eol + b"data: b" + eol + eol + b"data: c" + eol + eol
    assert datas(stream) == ["a\nb", "c"]


def test_mixed_line_endings_in_one_stream() -> None:
    # wpt format-newlines
    assert datas(b"data:test\r\ndata\ndata:test\r\n\r") == ["test\n\ntest"]


def test_no_other_character_ends_a_line() -> None:
    for other in ("\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\x1c", "\x1e"):
        stream = f"data: a{other}b\n\n".encode()
        assert datas(stream) == [f"a{other}b"], repr(other)


def test_cr_ending_a_chunk_and_lf_starting_the_next_are_one_line_end() -> None:
    assert datas(b"data: a\r\ndata: b\r\n\r\n") == ["a\nb"]  # every split, including between CR and LF
    got = run([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"])
    assert [e.data for e in got.events] == ["a\nb"]


def test_cr_then_cr_lf_is_a_blank_line() -> None:
    assert datas(b"data: a\r\r\ndata: b\n\n") == ["a", "b"]


# -- lines and fields ----------------------------------------------------------------------------


def test_comment_lines_are_not_fields() -> None:
    assert datas(b": data: no\ndata: yes\n:\n\n") == ["yes"]


def test_one_optional_space_after_the_colon_is_removed() -> None:
    # wpt format-leading-space
    assert datas(b"data:\ttest\rdata: \ndata:test\n\ndata:  two\n\n") == ["\ttest\n\ntest", " two"]


def test_line_without_colon_is_a_field_with_empty_value() -> None:
    # wpt format-field-data
    assert datas(b"data:\n\ndata\ndata\n\ndata:test\n\n") == ["", "\n", "test"]


def test_field_names_are_case_sensitive() -> None:
    assert datas(b"Data: no\nDATA: no\ndata: yes\n\n") == ["yes"]
    assert parse(b"Event: x\ndata: y\n\n").events[0].event == "message"


def test_unknown_fields_are_ignored() -> None:
    # wpt format-field-unknown and format-field-parsing
    assert datas(b"data:test\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:test\n\n") == [
        "test\n\ntest"
    ]
    stream = b"data:\x00\ndata:  2\rData:1\ndata\x00:2\ndata:1\r\x00data:4\nda-ta:3\rdata_5\ndata:3\rdata:\r\n data:32\ndata:4\n\n"
    assert datas(stream) == ["\x00\n 2\n1\n3\n\n4"]


def test_field_value_keeps_later_colons() -> None:
    assert datas(b'data: {"a": "b:c"}\n\n') == ['{"a": "b:c"}']


# -- data and dispatch ---------------------------------------------------------------------------


def test_data_lines_join_with_lf_and_one_trailing_lf_is_stripped() -> None:
    assert datas(b"data: a\ndata: b\ndata:\n\n") == ["a\nb\n"]


def test_empty_data_buffer_dispatches_nothing() -> None:
    stream = b"event: x\n\nid: 3\n\nretry: 100\n\n: ping\n\n\n\n\ndata: real\n\n"
    out = parse(stream)
    assert [(e.id, e.event, e.data) for e in out.events] == [("3", "message", "real")]


def test_event_type_defaults_to_message_and_resets_after_dispatch() -> None:
    # wpt format-field-event and format-field-event-empty
    out = parse(b"event:test\ndata:x\n\ndata:x\n\nevent: \ndata: y\n\n")
    assert [e.event for e in out.events] == ["test", "message", "message"]


def test_event_type_of_a_dataless_block_does_not_leak() -> None:
    assert [e.event for e in parse(b"event: x\n\ndata: 1\n\n").events] == ["message"]


def test_null_character_in_data_is_kept() -> None:
    # wpt format-null-character
    assert datas(b"data:\x00\n\n\n\n") == ["\x00"]


# -- ids -----------------------------------------------------------------------------------------


def test_id_persists_across_events() -> None:
    # wpt format-field-id-2
    out = parse(b"id:1\ndata:1\n\ndata:2\n\nid\ndata:3\n\n")
    assert [e.id for e in out.events] == ["1", "1", ""]
    assert out.last_event_id == ""


def test_empty_id_clears_the_last_event_id() -> None:
    out = parse(b"id: 7\ndata: a\n\nid:\ndata: b\n\n")
    assert [e.id for e in out.events] == ["7", ""]


def test_id_with_null_is_ignored() -> None:
    # wpt format-field-id-null
    out = parse(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")
    assert [e.id for e in out.events] == ["1", "1"]
    assert out.last_event_id == "1"


def test_id_only_block_changes_last_event_id() -> None:
    out = parse(b"id: 1\ndata: a\n\nid: 2\n\n")
    assert [e.id for e in out.events] == ["1"]
    assert out.last_event_id == "2"


def test_event_id_is_the_one_at_dispatch() -> None:
    out = parse(b"data: a\nid: 5\ndata: b\nid: 6\n\n")
    assert [(e.id, e.data) for e in out.events] == [("6", "a\nb")]


def test_parser_resumes_with_a_given_last_event_id() -> None:
    out = parse(b"data: a\n\n", last_event_id="41")
    assert [e.id for e in out.events] == ["41"]
    assert out.last_event_id == "41"


# -- retry ---------------------------------------------------------------------------------------


def test_retry_accepts_only_ascii_digits() -> None:
    # wpt format-field-retry-bogus and format-field-retry-empty
    assert parse(b"retry:3000\nretry:1000x\ndata:x\n\n").retry == 3000
    assert parse(b"retry\ndata:x\n\n").retry is None
    assert parse(b"retry: 12.5\nretry: -1\nretry: \xd9\xa3\nretry: \xc2\xb2\n\n").retry is None
    assert parse(b"retry: 0\n\n").retry == 0


def test_retry_takes_effect_when_its_line_is_parsed() -> None:
    out = parse(b"retry: 2500\ndata: never dispatched")
    assert out.retry == 2500 and out.events == []


def test_event_reports_the_retry_of_its_block() -> None:
    out = parse(b"retry: 10\ndata: a\n\ndata: b\n\n")
    assert [e.retry for e in out.events] == [10, None]
    assert out.retry == 10


@pytest.mark.parametrize(
    "digits", [b"9" * 5000, b"9" * 400, b"2147483648"], ids=["5000 digits", "400 digits", "2**31"]
)
def test_retry_past_the_browser_timer_range_is_clamped(digits: bytes) -> None:
    stream = b"retry: " + digits + b"\ndata: x\n\n"
    for chunks in ([stream], [stream[i : i + 1] for i in range(len(stream))]):
        for bulk in (True, False):
            out = run(chunks, bulk=bulk)
            assert out.retry == MAX_RETRY_MS == 2**31 - 1
            assert [(e.data, e.retry) for e in out.events] == [("x", MAX_RETRY_MS)]


def test_retry_leading_zeros_do_not_count() -> None:
    assert run([b"retry: " + b"0" * 5000 + b"1500\n\n"]).retry == 1500
    assert parse(b"retry: 00\n\n").retry == 0
    assert parse(b"retry: 2147483647\n\n").retry == MAX_RETRY_MS


# -- end of stream -------------------------------------------------------------------------------


def test_incomplete_event_at_eof_is_never_dispatched() -> None:
    # wpt format-data-before-final-empty-line
    assert datas(b"retry:1000\ndata:test1\n\nid:test\ndata:test2") == ["test1"]
    assert datas(b"data: no blank line\n") == []


def test_id_of_an_incomplete_event_never_becomes_last_event_id() -> None:
    out = parse(b"id: 1\ndata: a\n\nid: 2\ndata: b\n")
    assert out.last_event_id == "1"


# -- comment and raw_response --------------------------------------------------------------------


def test_comment_holds_the_comment_lines_of_the_block() -> None:
    out = parse(b": first\n:second\ndata: a\n\ndata: b\n\n")
    assert [e.comment for e in out.events] == ["first\nsecond", ""]


def test_raw_response_is_the_block_text() -> None:
    out = parse(b"id: 1\r\nevent: e\r\n: c\r\ndata: d\r\n\r\n")
    assert out.events[0].raw_response == "id: 1\nevent: e\n: c\ndata: d"


def test_event_value_is_complete() -> None:
    out = parse(b"id: 9\nevent: tick\n: note\nretry: 5\ndata: x\n\n")
    assert out.events == [SSEResponse("9", "tick", "x", "note", "id: 9\nevent: tick\n: note\nretry: 5\ndata: x", 5)]


# -- max_event_size ------------------------------------------------------------------------------


def test_line_past_max_event_size_raises_with_the_limit() -> None:
    parser = EventParser(max_event_size=100)
    with pytest.raises(EventTooLargeError) as caught:
        for _ in range(10):  # one line that never ends
            parser.feed(b"data: " + b"x" * 30)
    assert caught.value.limit == 100
    assert "max_event_size (100 bytes)" in str(caught.value)


def test_event_past_max_event_size_raises() -> None:
    parser = EventParser(max_event_size=100)
    with pytest.raises(EventTooLargeError):
        parser.feed(b"data: 0123456789\n" * 10 + b"\n")


@pytest.mark.parametrize("bulk", [True, False])
def test_events_before_an_oversized_one_are_not_lost(bulk: bool) -> None:
    parser = EventParser(max_event_size=64)
    parser._bulk_enabled = bulk
    with pytest.raises(EventTooLargeError) as caught:
        parser.feed(b"id: 1\ndata: ok\n\ndata: " + b"y" * 100 + b"\n\n")
    assert [e.data for e in caught.value.events] == ["ok"]


def test_max_event_size_counts_utf8_bytes() -> None:
    text = "é" * 40  # 80 bytes, 40 characters
    assert datas(f"data: {text}\n\n".encode(), max_event_size=200) == [text]
    with pytest.raises(EventTooLargeError):
        run([f"data: {text}\n\n".encode()], max_event_size=80)


def peak_memory_until_too_large(chunks: Iterable[bytes], limit: int) -> int:
    """Peak traced memory while a parser takes ``chunks`` until it gives up (it must)."""
    parser = EventParser(max_event_size=limit)
    tracemalloc.start()
    try:
        with pytest.raises(EventTooLargeError):
            for chunk in chunks:
                parser.feed(chunk)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "line", [b":\n", b"data: x\n", b"data\n", b":\ndata:\n"], ids=["comments", "data", "empty data", "mixed"]
)
def test_a_block_of_endless_short_lines_stays_within_a_few_times_max_event_size(line: bytes) -> None:
    limit = 1024 * 1024
    chunk = line * (64 * 1024 // len(line))
    peak = peak_memory_until_too_large(itertools.repeat(chunk, 2 * limit // len(chunk)), limit)
    assert peak < 3 * limit, f"peak {peak / limit:.1f}x max_event_size"


@pytest.mark.parametrize("piece", [b"x", b"xy"])
def test_a_line_arriving_in_tiny_pieces_stays_within_a_few_times_max_event_size(piece: bytes) -> None:
    limit = 256 * 1024
    chunks = itertools.chain([b"data: "], itertools.repeat(piece, 2 * limit // len(piece)))
    peak = peak_memory_until_too_large(chunks, limit)
    assert peak < 3 * limit, f"peak {peak / limit:.1f}x max_event_size"


def test_event_at_exactly_max_event_size_is_accepted() -> None:
    block = b"data: " + b"z" * 13  # 19 bytes plus its LF: 20
    assert datas(block + b"\n\n", max_event_size=20) == ["z" * 13]
    with pytest.raises(EventTooLargeError):
        run([block + b"z\n\n"], max_event_size=20)


# -- cases in the style of the wpt and LaunchDarkly sse-contract-tests suites ----------------------


def test_comments_anywhere_with_any_line_end_are_ignored() -> None:
    long = b"x" * 2048
    stream = b"data:1\r:\x00\n:\r\ndata:2\n:" + long + b"\rdata:3\n:data:fail\r:" + long + b"\ndata:4\n\n"
    out = run([stream])
    assert [e.data for e in out.events] == ["1\n2\n3\n4"]
    assert run([stream[i : i + 7] for i in range(0, len(stream), 7)], bulk=False) == out


def test_comment_only_blocks_between_events_dispatch_nothing() -> None:
    assert datas(b": hi\n\ndata: a\n\n:\n: keep-alive\n\ndata: b\n\n:\n\n") == ["a", "b"]


def test_fields_in_reverse_order() -> None:
    out = parse(b"data: Hello\nid: abc\nevent: greeting\n\n")
    assert [(e.id, e.event, e.data) for e in out.events] == [("abc", "greeting", "Hello")]


def test_many_events_keep_their_order() -> None:
    stream = b"".join(b"id: %d\ndata: message %d\n\n" % (i, i) for i in range(300))
    for bulk in (True, False):
        events = run([stream[i : i + 1000] for i in range(0, len(stream), 1000)], bulk=bulk).events
        assert [e.data for e in events] == [f"message {i}" for i in range(300)]
        assert [e.id for e in events] == [str(i) for i in range(300)]


# -- decode_data ---------------------------------------------------------------------------------


class Unreadable(Exception):
    pass


def strict(text: str) -> str:
    """A decoder that cannot read one particular data value."""
    if text == "bad":
        raise Unreadable(text)
    return text.upper()


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "spec"])
@pytest.mark.parametrize("comment", [b"", b": c\n"], ids=["common blocks", "blocks with a comment"])
def test_a_decode_data_error_names_its_event_and_keeps_the_events_before_it(bulk: bool, comment: bytes) -> None:
    parser = EventParser(decode_data=strict)
    parser._bulk_enabled = bulk
    blocks = [comment + b"id: %d\ndata: %s\n\n" % (n, data) for n, data in enumerate([b"a", b"b", b"bad", b"c"])]
    with pytest.raises(DataDecodeError) as caught:
        parser.feed(b"".join(blocks))
    assert [(e.id, e.data) for e in caught.value.events] == [("0", "A"), ("1", "B")]
    assert caught.value.event_id == "2"
    assert isinstance(caught.value.__cause__, Unreadable)


def test_a_decode_data_error_in_a_later_feed_carries_only_that_feeds_events() -> None:
    parser = EventParser(decode_data=strict)
    assert [e.data for e in parser.feed(b"data: a\n\ndata: b")] == ["A"]
    with pytest.raises(DataDecodeError) as caught:
        parser.feed(b"\n\ndata: bad\n\n")
    assert [e.data for e in caught.value.events] == ["B"] and caught.value.event_id == ""


# -- feed_with_comments --------------------------------------------------------------------------


def test_feed_with_comments_reports_each_comment_line_in_stream_order_as_it_completes() -> None:
    parser = EventParser()
    assert parser.feed_with_comments(b": heartbeat\n") == ["heartbeat"]  # before its block ends
    assert parser.feed_with_comments(b"\n:keep\n\n: a\ndata: x\n:b\n\ndata: y\n\n") == [
        "keep",
        "a",
        "b",
        SSEResponse("", "message", "x", "a\nb", ": a\ndata: x\n:b"),
        SSEResponse("", "message", "y", "", "data: y"),
    ]
    assert [type(item) for item in parser.feed_with_comments(b":\n:  two spaces\n")] == [Comment, Comment]


def test_feed_reports_no_comments() -> None:
    assert EventParser().feed(b": heartbeat\n\n: a\ndata: x\n\n") == [
        SSEResponse("", "message", "x", "a", ": a\ndata: x")
    ]


def test_pending_size_is_the_unfinished_event_in_utf8_bytes() -> None:
    """What the connection reads bigger pieces for (a large event in progress), and only then."""
    parser = EventParser()
    assert parser.pending_size == 0
    parser.feed(b"id: 1\ndata: " + "é".encode() * 10_000)
    assert parser.pending_size == len(b"id: 1\n") + len(b"data: ") + 20_000
    parser.feed(b"\n\n")
    assert parser.pending_size == 0
