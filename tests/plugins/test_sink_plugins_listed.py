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


def test_sseplug_check_validates_both_tables_connecting_nowhere(tmp_path: Path) -> None:
    """Port 1 has no server: a check that connected would fail. A bad value is exit status 78 with
    the file and the key; no password or header value written in the file is printed."""
    config = tmp_path / "run.toml"
    tables = ('[plugins.postgres]\ndsn = "postgresql://u:pw-hunter2x@127.0.0.1:1/db"\n'
              '[plugins.http]\nurl = "https://127.0.0.1:1/hooks/{connection}"\n'
              'headers = { Authorization = "Bearer hk-hunter2x" }\n')
    for extra, status in (("", 0), ('format = "xml"\n', 78)):
        config.write_text('[[connections]]\nid = "c"\nurl = "http://127.0.0.1:1/s"\nsinks = ["postgres", "http"]\n'
                          + tables + extra)
        done = subprocess.run([*rp.command(), "check", str(config)], capture_output=True, text=True, timeout=60,
                              cwd=tmp_path)
        output = done.stdout + done.stderr
        assert done.returncode == status, output
        assert "hunter2x" not in output and not (tmp_path / ".sseplug").exists()
        if status == 0:
            assert "OK, 1 connections; plugins: " in done.stdout and "http" in done.stdout and "postgres" in done.stdout
        else:
            assert "plugins.http.format" in done.stderr and str(config) in done.stderr
