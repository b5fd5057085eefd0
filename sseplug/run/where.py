"""A connection's ``where`` filter: a JMESPath expression over an event's ``data``, ``event`` and ``id``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jmespath
from jmespath.exceptions import (
    ArityError,
    IncompleteExpressionError,
    JMESPathError,
    LexerError,
    ParseError,
    UnknownFunctionError,
    VariadictArityError,
)

from ..models import SSEResponse

__all__ = ["compile_where"]


def compile_where(expression: str) -> Callable[[SSEResponse], bool]:
    """The predicate of ``expression``: true when its result is not one of JMESPath's false
    values (``null``, ``false``, ``""``, ``[]``, ``{}``). ``data`` is the event's data, decoded
    from JSON when it is still a JSON text. A bad expression raises ``ValueError`` saying what
    and at which column of the expression (1-based, as the TOML parser counts)."""
    try:
        compiled = jmespath.compile(expression)
    except JMESPathError as error:
        column = getattr(error, "lex_position", None)
        if isinstance(error, LexerError):
            reason = error.message
        elif isinstance(error, IncompleteExpressionError):
            reason, column = "the expression ends too early", len(expression)  # past its last character
        elif isinstance(error, ParseError):
            reason = f"unexpected {error.token_value!r}"
        else:
            reason = str(error)
        if isinstance(column, int):
            reason += f" at column {column + 1}"
        raise ValueError(f"invalid JMESPath expression {expression!r}: {reason}") from None
    try:  # functions are looked up when evaluated: a probe finds unknown ones and wrong arities now
        compiled.search({"data": {}, "event": "message", "id": ""})
    except (UnknownFunctionError, ArityError, VariadictArityError) as error:
        raise ValueError(f"invalid JMESPath expression {expression!r}: {error}") from None
    except JMESPathError:
        pass  # a type error on the probe's empty data: real events decide

    def where(event: SSEResponse) -> bool:
        """Whether ``event`` passes the expression."""
        data: Any = event.data
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                pass  # text stays text
        result = compiled.search({"data": data, "event": event.event, "id": event.id})
        return not (result is None or result is False or result == "" or result == [] or result == {})

    return where
