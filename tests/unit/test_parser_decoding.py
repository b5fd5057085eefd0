"""The parser's UTF-8 decoding (``utf_8_decode`` per chunk, one leading BOM dropped) against the
``utf-8-sig`` incremental decoder it replaced: the same events on any bytes, any chunking."""

from __future__ import annotations

import codecs

from hypothesis import given, settings
from hypothesis import strategies as st

from sseplug import EventParser

BYTES = st.sampled_from(
    [b"\xef", b"\xbb", b"\xbf", b"\xef\xbb\xbf", b"data: ", b"d", b"\n", b"\r", b"\n\n", b"\xc3", b"\xa9", b"\xf0\x9f",
     b"\xa6\x80", b"\xff", b"\x80", b"id: 1\n", b"event: e\n", b"x", b"\xe2\x82", b"\xac", b"\xed\xa0\x80"]
)


def events(chunks: list[bytes]) -> list[object]:
    parser = EventParser()
    out: list[object] = []
    for chunk in chunks:
        out += parser.feed(chunk)
    return out


@settings(max_examples=1000, deadline=None)
@given(st.lists(BYTES, max_size=30), st.lists(st.integers(min_value=0), max_size=8))
def test_chunks_decode_as_the_utf_8_sig_incremental_decoder_does(tokens: list[bytes], cuts: list[int]) -> None:
    blob = b"".join(tokens)
    points = sorted({cut % (len(blob) + 1) for cut in cuts})
    chunks = [blob[a:b] for a, b in zip([0, *points], [*points, len(blob)])]
    reference = codecs.getincrementaldecoder("utf-8-sig")("replace")
    text = "".join(reference.decode(chunk) for chunk in chunks)
    # the reference's text, encoded again behind one BOM (which the parser drops), in one chunk
    assert events(chunks) == events([codecs.BOM_UTF8 + text.encode()])
