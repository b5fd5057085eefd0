"""The config reference, generated from the spec of every key (``config_spec.SPEC``): what each key
must be, its default (from the config classes, and ``SSERequest`` for the request keys), what it
means and an example. ``docs/_ext`` renders ``config_reference()`` on docs/reference/config.rst.
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Any

from ..models import number_range
from .config import DEFAULT_ERRORS, RunnerConfig, connection_defaults, defaults_of
from .config_reader import Required, toml
from .config_spec import PLUGIN_TABLE, SPEC

__all__ = ["KEYS", "config_reference", "default_of"]

KEYS: dict[str, str] = {spec.path: spec.meaning for spec in SPEC}
"""What each key means, keyed as errors name it (``runner.pool_size``, ``connections[].url``)."""

_HEADINGS = {"connections[]": "[[connections]]", "plugins": "[plugins.NAME]"}


def default_of(path: str) -> Any:
    """The default of the key at ``path`` (``dataclasses.MISSING`` when it must be given), from the config classes."""
    table, _, name = path.rpartition(".")
    if table == "runner.plugins":
        return list(getattr(RunnerConfig(), name))
    if table == "runner.errors":
        return getattr(DEFAULT_ERRORS, name)
    defaults = {"runner": defaults_of(RunnerConfig), "connections[]": connection_defaults()}.get(table, {})
    default = defaults.get(name, dataclasses.MISSING)
    return dataclasses.MISSING if isinstance(default, Required) else default


def config_reference() -> list[str]:
    """The reference as reStructuredText lines: a section per table, each key with what it must be,
    its default, what it means and an example."""
    out: list[str] = []
    for table in dict.fromkeys(spec.table for spec in SPEC):
        heading = _HEADINGS.get(table, f"[{table}]")
        out += [heading, "-" * len(heading), ""]
        for spec in SPEC:
            if spec.table == table:
                shown = "optional" if spec.kind is PLUGIN_TABLE else _shown(default_of(spec.path))
                what = (spec.table == "connections[]" and number_range(spec.name)) or spec.kind.what  # SSERequest's
                out += [f"``{spec.name}``: {what}; {shown}", f"    {spec.meaning}"]
                if spec.example is not None:
                    out.append(f"    Example: ``{spec.name} = {spec.example}``")
                out.append("")
    return out


def _shown(default: Any) -> str:
    if default is dataclasses.MISSING:
        return "required"
    if default is None:
        return "optional"
    if default is DEFAULT_ERRORS:
        return "default: those of [runner.errors]"
    return f"default ``{_toml(default)}``"


def _toml(value: Any) -> str:
    """A default as TOML writes it."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (list, tuple)):
        return f"[{', '.join(map(_toml, value))}]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{name} = {_toml(item)}" for name, item in value.items()) + " }" if value else "{}"
    return toml(str(value) if isinstance(value, Path) else value)
