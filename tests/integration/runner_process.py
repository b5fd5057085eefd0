"""The real ``sseplug`` command in a subprocess, read line by line with bounds on count and time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import gevent


def command() -> list[str]:
    """The installed ``sseplug`` script next to this Python, else ``python -m sseplug``."""
    script = Path(sys.executable).with_name("sseplug")
    if script.exists():
        return [str(script)]
    found = shutil.which("sseplug")
    return [found] if found else [sys.executable, "-m", "sseplug"]


def start(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[str]:
    """Start ``sseplug ARGS`` with stdout and stderr piped (text)."""
    return subprocess.Popen(
        [*command(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def read_events(proc: subprocess.Popen[str], count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The next ``count`` JSON lines of ``proc``'s stdout (fewer if it ends first)."""
    assert proc.stdout is not None
    lines: list[dict[str, Any]] = []
    with gevent.Timeout(timeout, AssertionError(f"{count} lines not printed within {timeout}s: {lines}")):
        while len(lines) < count:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(json.loads(line))
    return lines


def stderr_line(proc: subprocess.Popen[str], needle: str, timeout: float = 15.0) -> str:
    """The next stderr line of ``proc`` holding ``needle`` (the lines before it are skipped)."""
    assert proc.stderr is not None
    with gevent.Timeout(timeout, AssertionError(f"no stderr line with {needle!r} within {timeout}s")):
        while True:
            line = proc.stderr.readline()
            assert line, f"sseplug exited before printing {needle!r}"
            if needle in line:
                return line


def finish(proc: subprocess.Popen[str], timeout: float = 20.0) -> tuple[int, list[dict[str, Any]], str]:
    """Wait for ``proc`` to exit: its status, the rest of its JSON lines, its stderr."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=5)
        raise AssertionError(f"sseplug did not exit within {timeout}s; stderr:\n{err}") from None
    return proc.returncode, [json.loads(line) for line in out.splitlines() if line.strip()], err


def kill(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    """SIGKILL ``proc`` by pid, reap it, and return the JSON lines it printed that were not read yet.

    A line cut short by the kill is left out: its event was not checkpointed, so it comes again.
    """
    if proc.poll() is None:
        proc.kill()
    out, _ = proc.communicate(timeout=10)
    return [json.loads(line) for line in out.splitlines(keepends=True) if line.endswith("\n") and line.strip()]
