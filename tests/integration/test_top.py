"""``sseplug top`` in a real terminal (tmux: keys sent, the pane captured) against a real runner."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gevent
import pytest

from sseplug.server import Response, SSEServer

from . import runner_process as rp
from .test_runner import connection, write_config
from .thirdparty import free_port


@pytest.fixture
def tmux() -> Iterator[Callable[..., str]]:
    """``tmux(*args)``: tmux on a server of this test's own; killed afterwards."""
    assert shutil.which("tmux"), "tmux is not installed: run tests/install.sh"
    socket = f"sseplug-test-{os.getpid()}"

    def run(*args: str) -> str:
        return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout

    yield run
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, timeout=10)


def wait_for_pane(tmux: Callable[..., str], needle: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        pane = tmux("capture-pane", "-p", "-t", "top")
        if needle in pane:
            return pane
        assert time.monotonic() < deadline, f"{needle!r} never showed; the pane:\n{pane}"
        gevent.sleep(0.1)


def test_top_shows_a_running_runner_sorts_and_quits_on_q(
    tmp_path: Path, sse_server: SSEServer, tmux: Callable[..., str]
) -> None:
    port = free_port()
    sse_server.script("/denied", Response(401, {"Content-Type": "text/plain"}, [b"no"], "length"))
    config = write_config(
        tmp_path,
        connection("alpha", sse_server.url("/feed/a?count=100000&interval=0.05"))
        + connection("zeta", sse_server.url("/denied")),
        f'http_listen = "127.0.0.1:{port}"',
    )
    runner = rp.start("run", str(config), cwd=tmp_path)
    try:
        rp.read_events(runner, 3)
        # the terminal's own size, not a COLUMNS the test process may have inherited
        command = f"env -u COLUMNS -u LINES {' '.join(rp.command())} top http://127.0.0.1:{port}; echo EXIT=$?; sleep 60"
        tmux("new-session", "-d", "-s", "top", "-x", "170", "-y", "30", command)
        pane = wait_for_pane(tmux, "zeta")
        assert "2 connections: 1 failed, 1 open" in pane and "sort: id" in pane
        rows = [line for line in pane.splitlines() if "alpha" in line or "zeta" in line]
        assert "open" in rows[0] and "alpha" in rows[0] and "failed" in rows[1] and "zeta" in rows[1]
        assert "HTTPStatusError" in rows[1] and "401" in pane  # why it failed, not only that it did
        assert "lease" not in pane  # no fleet: no lease column
        pane = wait_for_pane(tmux, "▁█")  # a second sample: the sparkline rises with alpha's events
        tmux("send-keys", "-t", "top", "s")
        pane = wait_for_pane(tmux, "sort: state")
        tmux("send-keys", "-t", "top", "r")
        pane = wait_for_pane(tmux, "sort: state (reversed)")
        rows = [line for line in pane.splitlines() if "alpha" in line or "zeta" in line]
        assert "zeta" in rows[1] or "zeta" in rows[0]
        tmux("send-keys", "-t", "top", "q")
        wait_for_pane(tmux, "EXIT=0")
    finally:
        runner.send_signal(signal.SIGTERM)
        rp.finish(runner)


def test_top_says_so_when_the_runner_is_not_reachable() -> None:
    port = free_port()
    done = subprocess.run([*rp.command(), "top", f"http://127.0.0.1:{port}"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert f"cannot read http://127.0.0.1:{port}/status" in line and "runner.http_listen" in line


def test_top_shows_the_lease_of_each_fleet_connection_and_why_one_waits() -> None:
    from rich.console import Console

    from sseplug.run.top import View

    row = {"id": "a", "state": "open", "events": 5, "last_event_time": None, "reconnects": 0,
           "handler_errors": 0, "dead_letters": 0, "last_error": None, "lease": True}
    waiting = {**row, "id": "b", "state": "standby", "lease": True,
               "last_error": "NetworkError: cannot connect (connection 'b')"}
    console = Console(record=True, width=220)
    view = View()
    view.update([row, waiting], 0.0)
    console.print(view.render("http://127.0.0.1:1", [row, waiting]))
    text = console.export_text()
    cells = [line.split("│") for line in text.splitlines()]
    lines = {cell[1].strip(): "│".join(cell) for cell in cells if len(cell) > 2 and cell[1].strip() in ("a", "b")}
    assert "lease" in text and "held" in lines["a"] and "NetworkError" not in lines["a"]
    assert "held" in lines["b"] and "NetworkError: cannot connect" in lines["b"]
