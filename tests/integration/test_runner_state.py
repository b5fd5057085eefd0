"""One runner per state directory, and a plugin failing at shutdown: real ``sseplug run`` processes."""

from __future__ import annotations

import signal
from pathlib import Path

import sseplug_redis
from sseplug.plugins import BUILTINS, create_plugin_manager
from sseplug.run.config import parse_config
from sseplug.run.runner import keep_one_checkpoint_store
from sseplug.server import SSEServer

from . import runner_process as rp
from .test_runner import checkpoint, connection, write_config

FEED = "/feed/locked?count=100000&interval=0.05"


def test_a_second_runner_on_the_same_state_dir_refuses_and_a_killed_one_never_blocks_its_restart(
    tmp_path: Path, sse_server: SSEServer
) -> None:
    config = write_config(tmp_path, connection("c", sse_server.url(FEED)))
    first = rp.start("run", str(config))
    try:
        rp.read_events(first, 3)
        second = rp.start("run", str(config))
        status, lines, err = rp.finish(second, timeout=20)
        assert status == 78 and lines == [], err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert f"the state directory {tmp_path / 'state'} is in use by another sseplug run (pid {first.pid})" in err
        assert "runner.state_dir" in err and str(config) in err
        printed = rp.read_events(first, 2)
    finally:
        printed += rp.kill(first)  # SIGKILL: the lock dies with the process
    restarted = rp.start("run", str(config))
    try:
        (line,) = rp.read_events(restarted, 1)
        assert int(line["id"]) == int(printed[-1]["id"]) + 1  # resumed from the checkpoint, not refused
    finally:
        rp.kill(restarted)


FAILS_AT_SHUTDOWN = """
from sseplug import hookimpl

@hookimpl
def sseplug_unconfigure():
    raise OSError(28, "No space left on device")
"""


def test_a_plugin_failing_while_shutting_down_is_one_error_line_and_exit_1(
    tmp_path: Path, sse_server: SSEServer
) -> None:
    (tmp_path / "fullDisk.py").write_text(FAILS_AT_SHUTDOWN)
    config = write_config(tmp_path, connection("c", sse_server.url(FEED)), 'plugins = { modules = ["fullDisk"] }')
    proc = rp.start("run", str(config))
    printed = rp.read_events(proc, 3)
    proc.send_signal(signal.SIGTERM)
    status, rest, err = rp.finish(proc)
    printed += rest
    assert status == 1 and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if " ERROR " in line]
    assert errors[0].endswith("plugin 'fullDisk' failed while shutting down: OSError: [Errno 28] No space left on "
                              "device; checkpoints saved before it stay, so the next start resumes from them"), errors
    assert len(errors) == 2 and "exit status 1: plugin(s) failed while shutting down: ['fullDisk']" in errors[1]
    assert checkpoint(tmp_path, "c") == printed[-1]["id"]  # the built-in store closed after it failed
    restarted = rp.start("run", str(config))
    try:
        (line,) = rp.read_events(restarted, 1)
        assert int(line["id"]) == int(printed[-1]["id"]) + 1
    finally:
        rp.kill(restarted)


def test_a_plugin_keeping_the_checkpoints_replaces_the_sqlite_store_and_its_lock(tmp_path: Path) -> None:
    """``sseplug_checkpoint_store``: with a configured redis plugin, the runner drops the sqlite
    store (a fleet's runners on one machine may share a state_dir); without one, sqlite stays."""
    text = '[runner]\nstate_dir = "state"\n[[connections]]\nid = "c"\nurl = "http://127.0.0.1:9/"\n'
    for table, kept in (("", True), ('[plugins.redis]\nurl = "redis://127.0.0.1:9/0"\n', False)):
        pm = create_plugin_manager(builtins=BUILTINS, load_entry_points=False,
                                   extra=[("redis", sseplug_redis.RedisLeases())])
        pm.configure(parse_config(text + table, path=tmp_path / "run.toml"))
        assert pm.get_plugin("redis").sseplug_checkpoint_store is not kept
        keep_one_checkpoint_store(pm)
        assert (pm.get_plugin("sqlite") is not None) is kept
        pm.unconfigure()
