"""``${ENV}`` references in a parsed config document, expanded from the environment; errors name the key."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..redaction import FromEnvironment, Secret

__all__ = ["expand", "join_key"]

_REFERENCE = re.compile(r"\$(?:(\$)|\{([^}]*)(\}?))")
_REFERENCE_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:[-?])(.*))?", re.DOTALL)
_HEADERS_KEY = re.compile(r"connections\[[0-9]+\]\.headers(?![A-Za-z0-9_-])")  # the table and its values
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_REFERENCE_FORMS = "write ${NAME}, ${NAME:-default} or ${NAME:?message}, and $$ for a literal $"


def expand(document: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """``document`` with ``${NAME}``, ``${NAME:-default}``, ``${NAME:?message}`` and ``$$`` expanded in
    every string (keys are left alone); a header value built from the environment becomes a
    ``Secret``, any other such value a ``FromEnvironment`` (its repr shows ``${NAME}``, not the
    value). A reference that cannot be expanded raises ``ConfigError`` naming its key."""
    return {name: _expand_tree(item, join_key("", name), environ) for name, item in document.items()}


def join_key(prefix: str, name: str) -> str:
    """The dotted key of ``name`` inside ``prefix``, quoted as TOML quotes it when not bare."""
    shown = name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)
    return f"{prefix}.{shown}" if prefix else shown


def _expand_tree(value: Any, key: str, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _expand(value, key, environ)
    if isinstance(value, dict):
        return {name: _expand_tree(item, join_key(key, name), environ) for name, item in value.items()}
    if isinstance(value, list):
        return [_expand_tree(item, f"{key}[{index}]", environ) for index, item in enumerate(value)]
    return value


def _expand(text: str, key: str, environ: Mapping[str, str]) -> str:
    used: dict[str, str] = {}  # the values taken from the environment, by name

    def replace(match: re.Match[str]) -> str:
        """The expansion of one reference, remembering the value taken from the environment."""
        expanded = value_of(match)
        if match.group(2) is not None:
            used[match.group(2).split(":")[0]] = expanded
        return expanded

    def value_of(match: re.Match[str]) -> str:
        """What one ``$$`` or ``${...}`` reference stands for; a ``ConfigError`` when it cannot be expanded."""
        if match.group(1):
            return "$"
        inner, closed = match.group(2), match.group(3)
        reference = _REFERENCE_BODY.fullmatch(inner)
        if not closed or reference is None:
            shown = f"${{{inner}}}" if closed else f"${{{inner}"
            raise ConfigError(f"malformed environment reference {shown!r}; {_REFERENCE_FORMS}", key=key)
        name, operator, argument = reference.groups()
        value = environ.get(name)
        if operator == ":-":
            return value or argument
        if operator == ":?":
            if not value:
                message = f"environment variable {name} is unset or empty: {argument or 'it is required'}"
                raise ConfigError(message, key=key)
            return value
        if value is None:
            hint = f"set it, or write ${{{name}:-default}} to fall back to a default"
            raise ConfigError(f"environment variable {name} is not set; {hint}", key=key)
        return value

    if "$" not in text:
        return text
    expanded = _REFERENCE.sub(replace, text)
    if not used:  # only $$
        return expanded
    if _HEADERS_KEY.match(key):
        return Secret(expanded)  # a header taken from the environment is a credential, as a rule
    return FromEnvironment(expanded, text, used)
