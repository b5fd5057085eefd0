"""The documentation site builds clean (warnings are errors), its examples run, and it documents
every hook, config key, CLI command and public name."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sseplug
from sseplug import hookspecs
from sseplug.run.cli import COMMANDS
from sseplug.run.reference import KEYS

ROOT = Path(__file__).resolve().parents[2]


def sphinx(builder: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder,
                           str(ROOT / "docs"), str(out)], capture_output=True, text=True, timeout=240, cwd=ROOT)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The text of every built HTML page."""
    out = tmp_path_factory.mktemp("html")
    done = sphinx("html", out)
    assert done.returncode == 0, done.stderr
    pages = [html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8"))) for page in out.rglob("*.html")]
    return "\n".join(pages)


@pytest.mark.timeout(300)
def test_the_examples_in_the_docs_run(tmp_path: Path) -> None:
    done = sphinx("doctest", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 failures in tests" in (tmp_path / "output.txt").read_text()


@pytest.mark.timeout(300)
def test_every_hook_config_key_command_and_public_name_is_documented(site: str) -> None:
    hooks = [name for name in dir(hookspecs) if name.startswith("sseplug_") and callable(getattr(hookspecs, name))]
    names = [*hooks, *hookspecs.PLUGIN_ATTRIBUTES, *sseplug.__all__, *(f"sseplug {c}" for c in COMMANDS),
             "serve_recording", "sse_server", "register_plugin", "fast_retry", "hook_recorder", "sse_client_for"]
    missing = [name for name in names if name not in site]
    missing += [key for key in KEYS if key.rpartition(".")[2] not in site]
    assert not missing, f"not in the docs: {missing}"
