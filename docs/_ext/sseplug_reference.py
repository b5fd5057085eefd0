"""Sphinx directives that generate the reference pages from the code, the one source of truth.

``.. sseplug-hooks::`` every hook of ``sseplug.hookspecs`` with its signature, options and
docstring, and the plugin attributes; ``.. sseplug-config::`` every runner config key of
``sseplug.run.config_spec.SPEC`` (``sseplug.run.reference.config_reference``); ``.. sseplug-cli::``
the help of every ``sseplug`` command, from its argparse parser.
"""

from __future__ import annotations

import argparse
import inspect
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx.util.nodes import nested_parse_with_titles


class _Generated(Directive):
    """Parses the reStructuredText lines ``lines()`` returns, as if they were in the page."""

    def lines(self) -> list[str]:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(self.lines(), source=f"<{self.name}>"), container)
        return list(container.children)


def _title(text: str, underline: str) -> list[str]:
    return [text, underline * len(text), ""]


def _indented(text: str) -> list[str]:
    return ["    " + line if line else "" for line in text.splitlines()]


class Hooks(_Generated):
    def lines(self) -> list[str]:
        from sseplug import hookspecs

        out: list[str] = []
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction):
            if not name.startswith("sseplug_"):
                continue
            options = getattr(function, "sseplug_spec", {}) or {}
            flags = [flag for flag in ("firstresult", "historic") if options.get(flag)]
            out += _title(name, "-")
            signature = str(inspect.signature(function)).replace("'", "")
            out += ["::", "", f"    {name}{signature}", ""]
            if flags:
                out += [f"*{', '.join(flags)}*", ""]
            out += inspect.getdoc(function).splitlines() + [""]
        out += _title("Plugin attributes", "-")
        for name, text in hookspecs.PLUGIN_ATTRIBUTES.items():
            out += [f"``{name}``", *_indented(text), ""]
        return out


class Config(_Generated):
    def lines(self) -> list[str]:
        from sseplug.run.reference import config_reference

        return config_reference() + self.plugin_tables()

    @staticmethod
    def plugin_tables() -> list[str]:
        """A section per installed plugin whose module documents its table in ``SETTINGS``
        (key -> meaning, default included), linked to its page when the docs have one."""
        import importlib
        from importlib.metadata import entry_points
        from pathlib import Path

        out: list[str] = []
        for ep in sorted(entry_points(group="sseplug"), key=lambda ep: ep.name):
            settings = getattr(importlib.import_module(ep.module), "SETTINGS", None)
            if not isinstance(settings, dict):
                continue
            out += _title(f"[plugins.{ep.name}]", "-")
            if (Path(__file__).parents[1] / f"{ep.name}.rst").exists():
                source = ep.dist.name if ep.dist else ep.module
                out += [f"From the ``{ep.name}`` plugin ({source}); see :doc:`../{ep.name}`.", ""]
            for key, meaning in settings.items():
                out += [f"``{key}``", *_indented(meaning), ""]
        return out


class Cli(_Generated):
    def lines(self) -> list[str]:
        from sseplug.run.cli import build_parser

        parser = build_parser()
        parser.prog = "sseplug"
        out = ["::", "", *_indented(parser.format_help()), ""]
        subparsers = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
        for name, sub in subparsers.choices.items():
            out += _title(f"sseplug {name}", "-")
            out += ["::", "", *_indented(sub.format_help()), ""]
        return out


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("sseplug-hooks", Hooks)
    app.add_directive("sseplug-config", Config)
    app.add_directive("sseplug-cli", Cli)
    return {"parallel_read_safe": True}
