"""The bulk path in C against the regex bulk path: identical events, ids, retry and errors on
random streams, random chunking, failing decoders and size limits (a differential fuzz test)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sseplug import EventParser, SSEResponse
from sseplug import parser as parser_module
from sseplug.builtin import json as json_plugin
from sseplug.errors import EventTooLargeError
from sseplug.parser import DataDecodeError

TOKENS = st.sampled_from(
    [b"id: 7\n", b"id:\n", b"id: a\x00b\n", b"event: tick\n", b"event:\n", b"data: x\n", b"data:y\n", b"data\n",
     b"data: \n", b": c\n", b"retry: 5\n", b"\n", b"\n\n", b"\r\n", b"\r", b"data: caf\xc3\xa9\n", b"data: \xf0\x9f\xa6\x80\n",
     b"data: bad\n", b"event: other\n", b"foo: bar\n", b"idx: 1\n", b"data:  two\n", b"data: 1\ndata: 2\n",
     b'data: {"a": [1]}\n', b"data: -0.5e3\n", b"data: 007\n", b"data: true\n", b"data:  null \n", b"data: [DONE]\n",
     b'data: {"a":\n', b"data: 1e\n", b"data: \"x\"\n", b"data: falsey\n",
     # batched JSON (one loads per run of events): values that are one by their brackets but not
     # JSON, two values on a line, brackets in strings, escapes, a decoder's other error
     b'data: {"a": 1}\n', b'data: ["x", {"b": "]"}]\n', b'data: "a\\"b"\n', b'data: {"a":1} {"b":2}\n',
     b"data: [1],[2]\n", b'data: {"a": bad}\n', b'data: {"a":}\n', b'data: ["\\u00e9", "\xc3\xa9"]\n', b"data: [[[]]]\n",
     b"data: [1]]\n", b'data: ["]\n', b'data:  {"k": null} \n']
)


def decoder(text: str) -> Any:
    if "bad" in text:
        raise ValueError(f"cannot decode {text!r}")
    return text.upper() if len(text) % 2 else None


def strict_loads(text: str) -> Any:
    """A JSON decoder whose other errors are not "not JSON": "bad" raises a KeyError."""
    if "bad" in text:
        raise KeyError(text)
    return json_plugin.loads(text)


# the json plugin's decoder, which the C core runs from its json_loads pair (no Python frame),
# and one over a decoder raising something else than its "not JSON" error
JSON_DECODERS = [json_plugin.decode, json_plugin.make_decoder(strict_loads, json_plugin.JSONDecodeError)]


def outcome(chunks: list[bytes], use_c: bool, views: bool = False, **options: Any) -> tuple[Any, ...]:
    """What the parser makes of ``chunks``; with ``views``, each chunk is fed as a view of one
    reused buffer (as ``Body`` reads large events), scribbled over after each feed."""
    buffer = bytearray(max(map(len, chunks), default=0))
    with mock.patch.object(parser_module, "_cbulk", parser_module._cbulk if use_c else None):
        parser = EventParser(**options)
        events: list[Any] = []
        try:
            for chunk in chunks:
                if not views:
                    events += parser.feed(chunk)
                    continue
                buffer[: len(chunk)] = chunk
                events += parser.feed(memoryview(buffer)[: len(chunk)])
                buffer[:] = b"\xff" * len(buffer)  # nothing may keep a view of it
        except (DataDecodeError, EventTooLargeError) as error:
            cause = error.__cause__
            failure = (type(error).__name__, str(error), list(error.events), type(cause).__name__, str(cause))
            return events, failure
        return events, parser.last_event_id, parser.retry


@pytest.mark.skipif(parser_module._cbulk is None, reason="sseplug._cparser is not built (test_the_c_bulk_path_is_built fails then)")
@settings(max_examples=600, deadline=None)
@given(st.lists(TOKENS, max_size=40), st.lists(st.integers(min_value=0), max_size=6),
       st.sampled_from([None, decoder, *JSON_DECODERS]), st.sampled_from([16 * 1024 * 1024, 40, 8]))
def test_c_and_regex_bulk_paths_agree_on_everything(
    tokens: list[bytes], cuts: list[int], decode: Any, limit: int
) -> None:
    blob = b"".join(tokens)
    points = sorted({c % (len(blob) + 1) for c in cuts})
    chunks = [blob[a:b] for a, b in zip([0, *points], [*points, len(blob)])]
    options = {"decode_data": decode, "max_event_size": limit}
    assert outcome(chunks, True, **options) == outcome(chunks, False, **options) == outcome(
        chunks, True, views=True, **options)


JSON_LINES = st.text(alphabet=st.sampled_from(list('0123456789-+.eE tfnrueals{}[]",:\txN\\\xe9\xa0\x00')), max_size=14)


@pytest.mark.skipif(parser_module._cbulk is None, reason="sseplug._cparser is not built")
@settings(max_examples=1500, deadline=None)
@given(st.lists(JSON_LINES, min_size=1, max_size=3), st.sampled_from([0, 1]))
def test_the_c_json_checks_answer_as_the_json_plugin(lines: list[str], loads_kind: int) -> None:
    """Data of one to three lines (joined by LF, as the decoder sees them) through the C core's
    json checks and through the plugin's decode: the same value, or the same text kept, or the
    same error."""
    decode = JSON_DECODERS[loads_kind]
    text = "\n".join(lines)
    try:
        value = decode(text)
        expected: Any = text if value is None else value
    except KeyError as error:
        expected = repr(error)
    try:
        (event,) = EventParser(decode_data=decode).feed("".join(f"data: {line}\n" for line in lines).encode() + b"\n")
        got: Any = event.data
    except DataDecodeError as error:
        got = repr(error.__cause__)
    assert type(got) is type(expected) and (got == expected or got != got), (text, got, expected)


@pytest.mark.skipif(parser_module._cbulk is None, reason="sseplug._cparser is not built")
@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(JSON_LINES, st.sampled_from(['{"a": [1, "]"]}', '["x"', '"y"]', '[1],[2]', '"\\""', "{}",
                                                        '{"a": "bad"}', '[' * 300 + ']' * 300])), max_size=150),
       st.sampled_from([0, 1]), st.lists(st.integers(min_value=0), max_size=4))
def test_batched_json_decoding_answers_as_one_by_one(lines: list[str], loads_kind: int, cuts: list[int]) -> None:
    """Runs of one-line JSON events (the C core decodes each run with one loads of a list): the
    same events, ids and errors as the regex path's decode per event, for valid, invalid and
    deceptive data (two values that make one list item, brackets in strings, deep nesting)."""
    blob = b"".join(f"id: {i}\ndata: {line}\n\n".encode() for i, line in enumerate(lines))
    points = sorted({c % (len(blob) + 1) for c in cuts})
    chunks = [blob[a:b] for a, b in zip([0, *points], [*points, len(blob)])]
    options = {"decode_data": JSON_DECODERS[loads_kind]}
    assert outcome(chunks, True, **options) == outcome(chunks, False, **options)


@pytest.mark.skipif(parser_module._cbulk is None, reason="sseplug._cparser is not built")
@pytest.mark.parametrize("loads_kind", [0, 1])
def test_batches_longer_than_the_c_cores_batch_answer_as_one_by_one(loads_kind: int) -> None:
    """More one-line JSON events in one chunk than the C core batches at once (1,024), with data
    that is one value by its brackets but not JSON past the first batch, then a decoder's other
    error: the same events and error as the regex path."""
    lines = [f'{{"seq": {i}}}' for i in range(2600)]
    lines[1500] = '{"seq": }'
    lines[2500] = '{"bad": 1}'
    blob = b"".join(f"id: {i}\ndata: {line}\n\n".encode() for i, line in enumerate(lines))
    options = {"decode_data": JSON_DECODERS[loads_kind]}
    assert outcome([blob], True, **options) == outcome([blob], False, **options)


@pytest.mark.skipif(parser_module._cbulk is None, reason="sseplug._cparser is not built")
def test_events_of_atomic_values_are_left_to_the_collector_untracked() -> None:
    """Text (or a number) as data: no cycle can run through the event, so the C core creates it
    untracked, as the collector would at its first pass; decoded objects keep it tracked."""
    import gc

    text, obj = EventParser().feed(b"data: x\n\ndata: {}\n\n"), EventParser(decode_data=json_plugin.decode).feed(
        b"data: x\n\ndata: {}\n\n")
    assert [gc.is_tracked(event) for event in text] == [False, False]
    assert [gc.is_tracked(event) for event in obj] == [False, True]
    assert all(type(event) is SSEResponse for event in text + obj)


def test_the_c_bulk_path_is_built() -> None:
    """CI builds it (setup.py's optional extension); SSEPLUG_PURE_PYTHON=1 is the way to leave it out."""
    assert parser_module._cbulk is not None or os.environ.get("SSEPLUG_PURE_PYTHON") == "1"


def test_pure_python_switch() -> None:
    code = "import sseplug.parser as p; print(p._cbulk is None)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "SSEPLUG_PURE_PYTHON": "1"})
    assert out.stdout.strip() == "True"


def test_text_beyond_one_byte_characters_takes_the_regex_path() -> None:
    """The C scan reads 1-byte strings only: 🦀 (4 bytes in UTF-8) goes to the regex, same events."""
    blob = "id: 1\ndata: 🦀\n\nid: 2\ndata: é\n\n".encode()
    assert outcome([blob], True) == outcome([blob], False)
    assert [e.data for e in outcome([blob], True)[0]] == ["🦀", "é"]


CHUNK_PIECES = st.sampled_from(
    [b"3\r\nabc\r\n", b"0\r\n\r\n", b"00\r\n\r\n", b"A\r\n0123456789\r\n", b"a;x=1\r\nabcdefghij\r\n",
     b"1 \r\nz\r\n", b"2\nab\n", b"2\r\nabXX\r\n", b"ffffffffffffffff\r\n", b"00000000000000001\r\nq\r\n",
     b"000000000000000001\r\nq\r\n", b"\r\n", b"4\r\n\r\n\r\n\r\n", b"g\r\n", b"5\r\nab", b"cde\r\n", b"T: v\r\n"]
)


@pytest.mark.skipif(parser_module._cbulk is None, reason="sseplug._cparser is not built")
@settings(max_examples=1500, deadline=None)
@given(st.lists(CHUNK_PIECES, max_size=12), st.lists(st.integers(min_value=0), max_size=5))
def test_c_whole_chunks_decode_as_the_python_decoder(pieces: list[bytes], cuts: list[int]) -> None:
    """The body's decoder with its whole-chunks loop in C against ``ChunkedDecoder``: the same
    payload, ``done`` and errors, whatever the bytes and their split into reads."""
    from sseplug._body import Dechunker
    from sseplug._chunked import ChunkedDecoder

    assert Dechunker is not ChunkedDecoder
    blob = b"".join(pieces)
    points = sorted({cut % (len(blob) + 1) for cut in cuts})
    reads = [blob[a:b] for a, b in zip([0, *points], [*points, len(blob)])]

    def decoded(decoder: ChunkedDecoder) -> tuple[Any, ...]:
        out = []
        try:
            for data in reads:
                out.append(decoder.feed(data))
        except Exception as error:
            return out, type(error).__name__, str(error)
        return out, decoder.done

    assert decoded(Dechunker()) == decoded(ChunkedDecoder())
