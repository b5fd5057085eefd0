"""README.rst is a front door: short, what sseplug is first, the two set-up commands in its first
literal block (``.ci/run`` runs the second), examples that are valid, and an index of the docs
that names every page."""

from __future__ import annotations

import re
from pathlib import Path

from sseplug.run.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.rst").read_text(encoding="utf-8")


def blocks(directive: str) -> list[str]:
    """The bodies of the README's ``.. code-block:: DIRECTIVE`` blocks, dedented."""
    found = []
    for match in re.finditer(rf"^\.\. code-block:: {directive}\n\n((?:(?:    [^\n]*)?\n)+)", README, re.MULTILINE):
        found.append("\n".join(line[4:] for line in match.group(1).splitlines()))
    return found


def test_it_is_short_and_says_what_sseplug_is_first() -> None:
    assert len(README.splitlines()) <= 150
    first = README.split("\n\n")[1]
    assert first.startswith("sseplug consumes Server-Sent Events")


def test_the_first_literal_block_holds_the_two_set_up_commands() -> None:
    block = re.search(r"::\n\s*\n((?:[ \t]+[^\n]*\n|\s*\n)+)", README).group(1)  # as .ci/run reads it
    commands = [line.strip()[2:] for line in block.splitlines() if line.strip().startswith("$ ")]
    assert commands == ["pip install -e . && sseplug demo", "tests/install.sh && python -m pytest"]


def test_the_python_examples_compile() -> None:
    examples = blocks("python")
    assert len(examples) == 3
    for example in examples:
        compile(example, "README.rst", "exec")


def test_the_config_example_is_valid(tmp_path: Path) -> None:
    (text,) = blocks("toml")
    config = parse_config(text, path=tmp_path / "sseplug.toml", environ={"ORDERS_TOKEN": "t"},
                          known_plugins={"jsonl", "stdout", "json"})
    (orders,) = config.connections
    assert orders.sinks == ("jsonl",) and orders.where == "data.status != 'test'"


def test_the_index_links_every_page_and_only_pages_that_exist() -> None:
    linked = set(re.findall(r"<(docs/[^>]+\.rst)>`_", README))
    pages = {str(page.relative_to(ROOT)) for page in (ROOT / "docs").rglob("*.rst") if "_build" not in page.parts}
    assert linked <= pages, linked - pages
    assert pages - linked <= {"docs/index.rst"}, f"add them to the README's index: {pages - linked}"
