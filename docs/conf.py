"""Sphinx configuration of the sseplug documentation (``sphinx-build -W docs docs/_build/html``)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "_ext"), str(HERE.parent)]

import sseplug  # noqa: E402

project = "sseplug"
author = "the sseplug developers"
copyright = "2026, the sseplug developers"
release = version = sseplug.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.doctest", "sseplug_reference"]
exclude_patterns = ["_build"]
nitpicky = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
html_theme = "furo"  # as urllib3, pip and attrs; a test extra (setup.py)
html_title = f"sseplug {release}"
html_static_path: list[str] = []

# The examples run for real (``sphinx-build -b doctest``): against the embedded loopback server.
doctest_global_setup = """
from gevent import monkey
monkey.patch_all()
from sseplug.server import SSEServer
server = SSEServer().start()
"""
doctest_global_cleanup = """
server.stop()
"""
