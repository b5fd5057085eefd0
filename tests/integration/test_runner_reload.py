"""Live reload: SIGHUP re-reads the config; only what changed is touched (a real runner subprocess)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import gevent

from sseplug.server import SSEServer

from . import runner_process as rp
from .test_runner import checkpoint, connection, write_config


def feed(sse_server: SSEServer, name: str, extra: str = "") -> str:
    """A connection to a long, slow /feed stream."""
    return connection(name, sse_server.url(f"/feed/{name}?count=100000&interval=0.2"), extra)


def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        gevent.sleep(0.05)


def test_sighup_adds_removes_restarts_and_keeps_connections(tmp_path: Path, sse_server: SSEServer) -> None:
    config = write_config(tmp_path, feed(sse_server, "keep") + feed(sse_server, "drop") + feed(sse_server, "edit"))
    proc = rp.start("run", str(config), cwd=tmp_path)
    try:
        pid_line = rp.stderr_line(proc, "reload the config with: kill -HUP")
        assert f"kill -HUP {proc.pid}" in pid_line
        wait_until(lambda: all(sse_server.open_streams(f"/feed/{n}") == 1 for n in ("keep", "drop", "edit")))
        rp.read_events(proc, 6)
        config.write_text(config.read_text().replace(feed(sse_server, "drop"), "")
                          .replace(feed(sse_server, "edit"), feed(sse_server, "edit", 'headers = { X-Tenant = "2" }'))
                          + feed(sse_server, "new"))
        proc.send_signal(signal.SIGHUP)
        summary = rp.stderr_line(proc, "reloaded")
        assert "1 added ['new'], 1 removed ['drop'], 1 changed ['edit'], 1 unchanged" in summary
        wait_until(lambda: sse_server.open_streams("/feed/new") == 1 and sse_server.open_streams("/feed/drop") == 0)
        keep, drop, edit = (sse_server.requests_for(f"/feed/{n}") for n in ("keep", "drop", "edit"))
        assert len(keep) == 1 and len(drop) == 1  # the untouched stream kept its response
        assert [r.headers.get("x-tenant") for r in edit] == [None, "2"]
        resumed_from = edit[1].headers["last-event-id"]
        assert int(resumed_from) >= 1 and checkpoint(tmp_path, "drop") is not None  # saved when it stopped

        config.write_text(config.read_text() + 'where = "data.["\n')  # invalid: the running config stays
        proc.send_signal(signal.SIGHUP)
        refused = rp.stderr_line(proc, "reload refused")
        assert "connections[2].where" in refused and str(config) in refused
        gevent.sleep(0.5)
        assert len(sse_server.requests_for("/feed/keep")) == 1 and sse_server.open_streams("/feed/new") == 1

        proc.send_signal(signal.SIGTERM)
        status, _, err = rp.finish(proc)
        assert status == 0, err
    finally:
        rp.kill(proc)
