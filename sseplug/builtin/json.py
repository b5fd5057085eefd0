"""Built-in plugin ``json``: event data that parses as JSON becomes the decoded value.

Before calling the decoder (orjson), the text is checked cheaply and exactly: JSON that starts
with a digit or ``-`` is a number, and one starting with ``t``, ``f`` or ``n`` is a literal, so
those are matched in full first; digit-led text that is not JSON (``00000001-line0``, CSV rows,
ids) costs a regex match instead of a raised exception. Only objects, arrays and strings reach
the decoder unchecked. The results are the decoder's on every text (property-tested). The
parser's C core runs the same checks from ``decode.json_loads`` (no Python call per event).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from orjson import JSONDecodeError, loads

from ..hookspecs import hookimpl
from ..models import SSEResponse

__all__ = ["decode", "make_decoder", "sseplug_deserialize"]

_WHITESPACE = " \t\n\r"  # JSON's whitespace
_NUMBER = re.compile(r"[ \t\n\r]*-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?[ \t\n\r]*")
_LITERALS = frozenset({"true", "false", "null"})


def make_decoder(loads: Callable[[str], Any], error: type[Exception]) -> Callable[[str], Any]:
    """``decode`` over another strict JSON decoder (``loads`` raising ``error`` on non-JSON)."""

    def decode(text: str) -> Any:
        """The JSON value of ``text``, or ``None`` when it is not JSON (``[DONE]``, plain words)."""
        if not text:
            return None
        first = text[0]
        if first in _WHITESPACE:
            stripped = text.lstrip(_WHITESPACE)
            if not stripped:
                return None
            first = stripped[0]
        if first in "-0123456789":
            if _NUMBER.fullmatch(text) is None:
                return None
        elif first in "tfn":
            if text.strip(_WHITESPACE) not in _LITERALS:
                return None
        elif first not in '{["':
            return None
        try:
            return loads(text)
        except error:  # an object, array or string that is not JSON; a number out of range
            return None

    # the parser's C core runs these very checks and loads itself when it finds this pair
    # (sseplug/_cparser.c's json_worth; the differential test in tests/unit/test_cparser.py)
    decode.json_loads = (loads, error)  # type: ignore[attr-defined]
    return decode


decode = make_decoder(loads, JSONDecodeError)


@hookimpl(trylast=True)
def sseplug_deserialize(event: SSEResponse) -> Any:
    """JSON data decoded; no answer (the text stays) when it is not JSON or is JSON ``null``."""
    return decode(event.data)


sseplug_deserialize.text_decoder = decode  # type: ignore[attr-defined]  # see PluginManager.text_decoder
