"""The postgres and http sinks show where plugins show: ``sseplug plugins`` and the config reference
(generated from each plugin module's ``SETTINGS``), and the docs index links their pages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import sseplug_http
import sseplug_postgres

from ..integration import runner_process as rp

ROOT = Path(__file__).resolve().parents[2]


def test_sseplug_plugins_lists_both_with_their_distributions_and_hooks() -> None:
    done = subprocess.run([*rp.command(), "plugins", "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["postgres"]["distribution"] == "sseplug-postgres"
    assert rows["http"]["distribution"] == "sseplug-http"
    for name in ("postgres", "http"):
        assert {"sseplug_configure", "sseplug_handle_event", "sseplug_checkpoint_save",
                "sseplug_dead_letter"} <= set(rows[name]["hooks"])
    assert "sseplug_checkpoint_load" in rows["postgres"]["hooks"]  # the checkpoint lives in the table


def test_the_config_reference_has_a_section_per_plugin_with_every_key() -> None:
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        import sseplug_reference
    finally:
        sys.path.remove(str(ROOT / "docs" / "_ext"))
    lines = "\n".join(sseplug_reference.Config.plugin_tables())
    for module in (sseplug_postgres, sseplug_http):
        section = lines.split(f"[plugins.{module.NAME}]", 1)[1]
        assert f":doc:`../{module.NAME}`" in section
        assert all(f"``{key}``" in section for key in module.SETTINGS)
    index = (ROOT / "docs" / "index.rst").read_text()
    assert "   postgres\n" in index and "   http\n" in index
