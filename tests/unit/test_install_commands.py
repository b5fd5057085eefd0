"""Every ``pip install`` command the project shows (README, docs, plugin READMEs, error hints)
names things that exist in a checkout: no package that is not published."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "README.rst", *sorted((ROOT / "docs").glob("*.rst")), *sorted(ROOT.glob("plugins/*/README.rst")),
           *sorted(ROOT.glob("examples/*/README.rst")), *sorted((ROOT / "sseplug").rglob("*.py")),
           *sorted(ROOT.glob("examples/*/tests/*.py"))]
PUBLISHED = {"sseplug"}  # not yet: every other name must be a path of the checkout


def commands() -> list[tuple[str, str]]:
    found = []
    for path in SOURCES:
        for match in re.finditer(r"pip install ([^`\n]+)", path.read_text(encoding="utf-8")):
            found.append((str(path.relative_to(ROOT)), match.group(1).strip().rstrip(".;:)")))
    return found


def test_install_commands_name_paths_of_the_checkout() -> None:
    found = commands()
    assert len(found) >= 6, found  # the scan sees the README's and the plugins' commands
    problems = []
    for where, command in found:
        words = [word for word in shlex.split(command.split("&&")[0]) if not word.startswith("-") or word == "-"]
        for word in words:
            target = re.sub(r"\[.*\]$", "", word)
            if target not in PUBLISHED and not (ROOT / target).exists():
                problems.append(f"{where}: `pip install {command}`: {word!r} is neither a path here nor published")
    assert not problems, "\n".join(problems)
