"""The json plugin's decoder: exactly the decoder's answer on any text, without raising on the
digit-led or word-led texts that are not JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sseplug.builtin import json as json_plugin


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # the standard library would accept NaN and Infinity


def stdlib_loads(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def reference(loads: Callable[[str], Any], text: str) -> Any:
    """What the plugin must answer: the decoder's value (None for JSON null), None when it raises."""
    try:
        return loads(text)
    except ValueError:
        return None


DECODERS = {"orjson": (orjson.loads, orjson.JSONDecodeError), "stdlib": (stdlib_loads, ValueError)}
JSONISH = st.text(alphabet=st.sampled_from(list('0123456789-+.eE tfnrueals{}[]",:\n\t\rxN\\')), max_size=12)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)


@pytest.mark.parametrize("name", sorted(DECODERS))
@settings(max_examples=800, deadline=None)
@given(text=st.one_of(JSONISH, st.text(max_size=12), VALUES.map(json.dumps),
                      VALUES.map(lambda v: " " + json.dumps(v, indent=1) + "\n")))
def test_the_answer_is_the_decoders_on_any_text(name: str, text: str) -> None:
    loads, error = DECODERS[name]
    decode = json_plugin.make_decoder(loads, error)
    expected = reference(loads, text)
    got = decode(text)
    assert got == expected or (got != got and expected != expected), (text, got, expected)  # NaN aside


@pytest.mark.parametrize("text", ["00000001-line0", "1,2,3", "12:00", "2026-12-04", "true story", "nullable",
                                  "-", "1.", "Infinity", "NaN", "[DONE]"[1:], "tick 4"])
def test_texts_that_are_not_json_never_reach_the_decoder(text: str) -> None:
    with mock.patch.object(json_plugin, "loads", side_effect=AssertionError("called")) as loads:
        decode = json_plugin.make_decoder(json_plugin.loads, orjson.JSONDecodeError)
        assert decode(text) is None
    assert not loads.called


def test_json_values_are_decoded() -> None:
    assert [json_plugin.decode(t) for t in ['{"a": 1}', " [1, 2]", "-0.5e3", '"s"', "true", " null "]] == [
        {"a": 1}, [1, 2], -500.0, "s", True, None]
