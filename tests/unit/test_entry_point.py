"""The ``sseplug`` command patches gevent in its entry point, never on import: importing
``sseplug.run.cli`` (Sphinx autodoc, a test, a wrapper script) leaves the process as it was."""

from __future__ import annotations

import subprocess
import sys

import pytest


def python(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter, with warnings as errors (a late patch warns)."""
    return subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60)


def test_importing_the_cli_does_not_monkey_patch() -> None:
    done = python("import sys, gevent.monkey, sseplug.run.cli\n"
                  "print(gevent.monkey.is_module_patched('socket'), 'ssl' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]  # not patched, and ssl left for main() to import patched


@pytest.mark.parametrize("entry", ["from sseplug.run.cli import main; main(['plugins', '--json'])",
                                   "import runpy; runpy.run_module('sseplug', run_name='__main__')"])
def test_the_entry_points_patch_first(entry: str) -> None:
    code = ("import sys, atexit, gevent.monkey\n"
            "atexit.register(lambda: print('patched:', gevent.monkey.is_module_patched('socket'), file=sys.stderr))\n"
            f"sys.argv = ['sseplug', 'plugins', '--json']\n{entry}")
    done = python(code)
    assert "patched: True" in done.stderr and "Monkey-patching" not in done.stderr, done.stderr
    assert '"name": "json"' in done.stdout
