"""The test kit ``sseplug.testing``: pytest loads it in every run (``pytest11``), so loading it must
import nothing heavy; the gevent patches stay an opt-in plugin of their own."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

HEAVY = ("gevent", "urllib3", "pluggy")


def heavy_modules(statement: str) -> tuple[list[str], list[str]]:
    """In a fresh interpreter: the heavy modules ``import sseplug`` imports, then those ``statement`` adds."""
    script = (
        "import json, sys\n"
        f"heavy = lambda: {{m for m in sys.modules if m.split('.')[0] in {HEAVY!r}}}\n"
        "import sseplug\n"
        "before = heavy()\n"
        f"{statement}\n"
        "print(json.dumps([sorted(before), sorted(heavy() - before)]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    by_sseplug, added = json.loads(result.stdout)
    return by_sseplug, added


def test_loading_the_kit_imports_nothing_heavy() -> None:
    by_sseplug, by_kit = heavy_modules("import sseplug.testing")
    assert by_kit == []
    assert [m for m in by_sseplug if not m.startswith("pluggy")] == []  # pluggy: sseplug.hookspecs' hookimpl


def test_the_gevent_patches_are_not_a_pytest11_entry_point() -> None:
    plugins = {ep.value for ep in entry_points(group="pytest11") if ep.dist and ep.dist.name == "sseplug"}
    assert plugins == {"sseplug.testing"}
