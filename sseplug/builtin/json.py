"""Built-in plugin ``json``: event data that parses as JSON becomes the decoded value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..hookspecs import hookimpl
from ..models import SSEResponse

__all__ = ["decode", "sseplug_deserialize"]

_loads: Callable[[str], Any]
try:  # the [fast] extra
    from orjson import JSONDecodeError as _DecodeError
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - exercised where orjson is absent
    from json import JSONDecodeError as _DecodeError  # type: ignore[assignment]  # either class, one name
    from json import loads as _loads

_JSON_START = frozenset('{["-0123456789tfn')  # anything else cannot be JSON: skip the attempt


def decode(text: str) -> Any:
    """The JSON value of ``text``, or ``None`` when it is not JSON (``[DONE]``, plain words)."""
    if not text or text[0] not in _JSON_START:
        return None
    try:
        return _loads(text)
    except _DecodeError:
        return None


@hookimpl(trylast=True)
def sseplug_deserialize(event: SSEResponse) -> Any:
    """JSON data decoded; no answer (the text stays) when it is not JSON or is JSON ``null``."""
    return decode(event.data)


sseplug_deserialize.text_decoder = decode  # type: ignore[attr-defined]  # see PluginManager.text_decoder
