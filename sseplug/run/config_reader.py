"""Typed reads of one table of a TOML config, and the parts of every config error message: what was
expected, what the file holds (redacted when it is a secret), an example, the near miss."""

from __future__ import annotations

import enum
import json
import string
from collections.abc import Callable, Collection, Mapping
from typing import Any, NoReturn, TypeVar

from ..errors import ConfigError, did_you_mean
from ..models import expected_integer, expected_seconds
from ..redaction import FromEnvironment, Secret
from .environment import join_key

__all__ = ["REQUIRED", "Required", "TableReader", "fail", "one_of", "show", "table", "toml"]

_TOML_TYPES = {bool: "boolean", int: "integer", float: "float", str: "string"}


class Required(enum.Enum):
    """The type of ``REQUIRED``: an enum, so that type checkers tell it from any default."""

    REQUIRED = enum.auto()


REQUIRED = Required.REQUIRED  # the default of a key that must be given
_D = TypeVar("_D")
_C = TypeVar("_C")


class TableReader:
    """Typed reads of one table of the config file, keyed ``PREFIX.KEY``: each returns the key's value,
    else ``default``; without a default the key is required. A problem raises ``ConfigError`` saying
    what was expected, what the file holds and an example (``example``, else the default)."""

    __slots__ = ("table", "prefix", "path")

    def __init__(self, table: Mapping[str, Any], prefix: str, path: str | None = None) -> None:
        self.table = table
        self.prefix = prefix
        self.path = path

    def error(self, key: str, message: str) -> ConfigError:
        """The ``ConfigError`` for ``key`` of this table, to raise for a rule of one's own."""
        return ConfigError(message, key=join_key(self.prefix, key), path=self.path)

    def check_keys(self, known: Collection[str]) -> None:
        """Raise ``ConfigError`` for the first key of the table that is not in ``known``."""
        for key in self.table:
            if key not in known:
                if not self.prefix:
                    where = "at the top level"
                elif self.prefix.endswith("]"):
                    where = f"in {self.prefix}"  # an item of an array of tables: connections[0]
                else:
                    where = f"in [{self.prefix}]"
                raise self.error(
                    key, f"unknown key {key!r} {where}{did_you_mean(key, known)}; known keys: {', '.join(known)}"
                )

    def string(self, key: str, default: _D | Required = REQUIRED, *, example: str | None = None) -> str | _D:
        """A string."""
        value: str | _D = self._read(key, default, example, lambda v: None if isinstance(v, str) else "a string")
        return value

    def template(self, key: str, default: _D | Required = REQUIRED, *, example: str | None = None) -> str | _D:
        """A string that may name ``{connection}``, which ``template.format(connection=id)`` fills
        in with a connection's id (``{{`` and ``}}`` stand for braces); any other placeholder is
        an error."""
        value = self.string(key, default, example=example)
        if not isinstance(value, str):
            return value
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as error:
            raise self.error(
                key, f"{value!r}: {error}; write {{connection}} for the connection id, {{{{ and }}}} for braces"
            ) from None
        unknown = sorted(names - {"connection"})
        if unknown:
            raise self.error(key, f"unknown placeholder {{{unknown[0]}}} in {value!r}; {{connection}} is the only placeholder")
        return value

    def strings(
        self, key: str, default: _D | Required = REQUIRED, *, separator: str | None = None, example: str | None = None
    ) -> tuple[str, ...] | _D:
        """An array of strings; with ``separator``, also one string of them joined by it (parts stripped)."""
        if key not in self.table:
            return self._default(key, default, example)
        value = self.table[key]
        if separator is not None and isinstance(value, str):
            return tuple(part.strip() for part in value.split(separator))
        if not isinstance(value, list):
            alone = "" if separator is None else f" (or one string of them separated by {separator!r})"
            raise self._wrong(key, f"an array of strings{alone}", default, example)
        for index, item in enumerate(value):
            if not isinstance(item, str):
                message = f"expected a string, got {show(item)}"
                raise ConfigError(message, key=f"{join_key(self.prefix, key)}[{index}]", path=self.path)
        return tuple(value)

    def boolean(self, key: str, default: _D | Required = REQUIRED) -> bool | _D:
        """``true`` or ``false``."""
        value: bool | _D = self._read(key, default, None, lambda v: None if isinstance(v, bool) else "true or false")
        return value

    def integer(
        self,
        key: str,
        default: _D | Required = REQUIRED,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
        example: str | None = None,
    ) -> int | _D:
        """An integer, from ``minimum`` to ``maximum`` when given."""
        value: int | _D = self._read(
            key, default, example, lambda v: expected_integer(v, minimum=minimum, maximum=maximum)
        )
        return value

    def number(self, key: str, default: _D | Required = REQUIRED, *, example: str | None = None) -> float | _D:
        """An integer or a float, as written: of any value (its user checks the range)."""
        value: float | _D = self._read(
            key, default, example, lambda v: "a number" if isinstance(v, bool) or not isinstance(v, (int, float)) else None
        )
        return value

    def seconds(
        self, key: str, default: _D | Required = REQUIRED, *, minimum: float | None = None, example: str | None = None
    ) -> float | _D:
        """A finite number of seconds > 0, or >= ``minimum`` when given, as a float."""
        value: float | _D = self._read(key, default, example, lambda v: expected_seconds(v, minimum=minimum), float)
        return value

    def one_of(
        self, key: str, choices: Collection[_C], default: _D | Required = REQUIRED, *, example: str | None = None
    ) -> _C | _D:
        """One of ``choices``, of its TOML type too (``true`` is not ``1``, nor is ``"1"``)."""

        def expected(value: Any) -> str | None:
            return None if any(type(c) is type(value) and c == value for c in choices) else one_of(choices)

        value: _C | _D = self._read(key, default, example, expected)
        return value

    def _read(
        self,
        key: str,
        default: Any,
        example: str | None,
        expected: Callable[[Any], str | None],
        convert: Callable[[Any], Any] = lambda value: value,
    ) -> Any:
        """The key's value made by ``convert``, else ``default``; ``expected(value)`` says what it
        should be when it is not (the words of the error), else ``None``."""
        if key not in self.table:
            return self._default(key, default, example)
        value = self.table[key]
        what = expected(value)
        if what is not None:
            raise self._wrong(key, what, default, example)
        return convert(value)

    def _default(self, key: str, default: _D | Required, example: str | None) -> _D:
        if isinstance(default, Required):
            raise self.error(key, f"missing key {key!r}{_example(key, None, example)}")
        return default

    def _wrong(self, key: str, what: str, default: object, example: str | None) -> ConfigError:
        shown = show(self.table[key])
        return self.error(key, f"expected {what}, got {shown}{_example(key, default, example)}")


def fail(key: str, message: str) -> NoReturn:
    """Raise the ``ConfigError`` of ``key`` (the caller that knows the file adds its path)."""
    raise ConfigError(message, key=key)


def table(value: Any, key: str, what: str) -> dict[str, Any]:
    """``value`` when it is a table; else the error of ``key``, which says to write ``what``."""
    if not isinstance(value, dict):
        fail(key, f"expected a table, got {show(value)}; write {what}")
    return value


def one_of(choices: Collection[Any]) -> str:
    """``one of "a", "b"``: the choices as TOML writes them."""
    return f"one of {', '.join(map(toml, choices))}"


def _example(key: str, default: object, example: str | None) -> str:
    """``; e.g. KEY = VALUE`` with ``example``, else with the default when it is worth showing."""
    if example is None and default is not None and not isinstance(default, Required):
        example = toml(default)
    return "" if example is None else f"; e.g. {key} = {example}"


def toml(value: Any) -> str:
    """A string, boolean or number as TOML writes it."""
    return json.dumps(value) if isinstance(value, (bool, str)) else str(value)


def show(value: Any) -> str:
    """A value of the file in a message: as TOML writes it and its type; a secret stays redacted."""
    if isinstance(value, (Secret, FromEnvironment)):
        return f"{value!r} (string)"  # a value from the environment: shown redacted, or as written
    if isinstance(value, (dict, list)):
        return "a table" if isinstance(value, dict) else "an array"
    return f"{toml(value)} ({_TOML_TYPES.get(type(value), type(value).__name__)})"
