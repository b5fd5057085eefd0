"""The ``sseplug`` command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sseplug`` command."""
    parser = argparse.ArgumentParser(prog="sseplug", description="Consume Server-Sent Events streams.")
    parser.add_argument("--version", action="version", version=f"sseplug {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sseplug`` console script; returns the exit status."""
    build_parser().parse_args(argv)
    return 0
