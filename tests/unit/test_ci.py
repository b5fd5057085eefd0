"""CI runs the README's test command first, then the matrix; the matrix's minimum leg pins the
lowest version setup.py declares for every runtime dependency."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def declared_floors() -> dict[str, str]:
    """``install_requires`` of setup.py: name -> the version after ``>=``."""
    setup = (ROOT / "setup.py").read_text(encoding="utf-8")
    requires = re.search(r"install_requires=\[([^\]]*)\]", setup).group(1)  # type: ignore[union-attr]
    return dict(re.findall(r'"([A-Za-z0-9_.-]+)>=([^",;]+)"', requires))


def test_constraints_min_pins_every_declared_floor() -> None:
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "constraints-min.txt").read_text(), re.MULTILINE))
    floors = declared_floors()
    assert len(floors) >= 7 and set(pins) == set(floors)
    for name, floor in floors.items():
        assert pins[name].split(".")[: len(floor.split("."))] == floor.split(".") or pins[name] == floor, name


def test_ci_runs_the_readme_test_command_then_the_matrix() -> None:
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert run.index('bash -c "$cmd"') < run.index(".ci/matrix\n")
    matrix = (ROOT / ".ci" / "matrix").read_text(encoding="utf-8")
    assert "legs=(3.12 3.13 3.11-min)" in matrix and "-c constraints-min.txt" in matrix
    assert "pytest tests/unit tests/integration" in matrix
