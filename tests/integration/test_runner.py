"""The ``sseplug`` runner as users run it: the real script in a subprocess, loopback servers."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import gevent
import pytest

from sseplug.server import Response, SSEServer
from sseplug.testing import DONE

from . import runner_process as rp
from .thirdparty import free_port


def write_config(tmp_path: Path, connections: str, runner: str = "") -> Path:
    path = tmp_path / "run.toml"
    path.write_text(f'[runner]\nstate_dir = "state"\nshutdown_timeout = 5\n{runner}\n{connections}')
    return path


def connection(cid: str, url: str, extra: str = "") -> str:
    return f'[[connections]]\nid = "{cid}"\nurl = "{url}"\n{extra}\n'


def checkpoint(tmp_path: Path, cid: str) -> str | None:
    with sqlite3.connect(tmp_path / "state" / "checkpoints.sqlite3") as db:
        row = db.execute("SELECT last_event_id FROM checkpoints WHERE connection = ?", (cid,)).fetchone()
    return None if row is None else row[0]


def by_connection(lines: list[dict]) -> dict[str, list[int]]:
    ids: dict[str, list[int]] = defaultdict(list)
    for line in lines:
        ids[line["connection"]].append(int(line["id"]))
    return ids


# -- delivery across crashes and stops -------------------------------------------------------------


FAST_RETRY = """
from sseplug import hookimpl

@hookimpl(tryfirst=True)
def sseplug_retry_decision():
    return 0.05  # the drops are the point here, not the backoff (which doubles per drop)
"""


def test_sigkill_at_several_moments_then_restart_loses_no_event(tmp_path: Path, sse_server: SSEServer) -> None:
    count = 60
    (tmp_path / "fastretry.py").write_text(FAST_RETRY)
    config = write_config(tmp_path, connection("a", sse_server.url(f"/feed/a?count={count}&interval=0.01"))
                          + connection("b", sse_server.url(f"/flaky/b?count={count}&drop_every=7&interval=0.01")),
                          'plugins = { modules = ["fastretry"] }')
    printed: list[list[dict]] = []
    for moment in (5, 17, 31):  # kill after this many printed lines
        proc = rp.start("run", str(config), cwd=tmp_path)
        printed.append(rp.read_events(proc, moment) + rp.kill(proc))  # what was printed before the kill counts
    status, rest, err = rp.finish(rp.start("run", str(config), cwd=tmp_path))
    printed.append(rest)
    assert status == 0, err
    seen: dict[str, list[int]] = defaultdict(list)
    for run in printed:
        for cid, ids in by_connection(run).items():
            assert ids == sorted(ids), f"run out of order for {cid}: {ids}"
            seen[cid] += ids
    for cid in ("a", "b"):
        assert set(seen[cid]) == set(range(1, count + 1)), f"{cid} lost events"
        # a kill can only repeat the batch printed but not yet checkpointed: one read's worth of
        # events (one or two at this pace; more only when this machine is very busy)
        duplicates = len(seen[cid]) - count
        assert duplicates <= 15, f"{cid}: {duplicates} duplicates for 3 kills"


def test_sigterm_exits_0_and_next_start_resumes_after_last_printed(tmp_path: Path, sse_server: SSEServer) -> None:
    config = write_config(tmp_path, connection("a", sse_server.url("/feed/a?count=500&interval=0.02")))
    proc = rp.start("run", str(config), cwd=tmp_path)
    first = rp.read_events(proc, 10)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    status, rest, err = rp.finish(proc, timeout=10)
    assert status == 0, err
    assert time.monotonic() - started < 6  # shutdown_timeout is 5 s
    last = int((first + rest)[-1]["id"])
    assert checkpoint(tmp_path, "a") == str(last)
    proc = rp.start("run", str(config), cwd=tmp_path)
    resumed = rp.read_events(proc, 3)
    rp.kill(proc)
    assert [int(line["id"]) for line in resumed] == [last + 1, last + 2, last + 3]
    assert sse_server.requests_for("/feed/a")[1].headers["last-event-id"] == str(last)


def test_id_only_blocks_are_checkpointed(tmp_path: Path, sse_server: SSEServer) -> None:
    sse_server.script("/s", Response(body=[b"id: 1\ndata: a\n\n", b"id: 9\n\n"]), DONE)
    status, lines, err = rp.finish(rp.start("run", str(write_config(tmp_path, connection("s", sse_server.url("/s")))),
                                            cwd=tmp_path))
    assert status == 0, err
    assert [line["id"] for line in lines] == ["1"] and checkpoint(tmp_path, "s") == "9"
    assert sse_server.requests_for("/s")[1].headers["last-event-id"] == "9"


# -- bad configs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[connections]]\nid = 'a'\nurl = 'http://127.0.0.1:1/s'\nbroken = = 1\n", "invalid TOML"),
        ("[[connections]]\nid = 'a'\n", "connections[0].url"),
        ("[[connections]]\nid = 'a'\nurl = 'ftp://127.0.0.1/s'\n", "connections[0].url"),
        ("[runner]\npool_sise = 3\n[[connections]]\nid = 'a'\nurl = 'http://127.0.0.1:1/s'\n", "pool_sise"),
        ("[[connections]]\nid = 'a'\nurl = 'http://127.0.0.1:1/s'\n[[connections]]\nid = 'a'\nurl = 'http://127.0.0.1:1/t'\n",
         "connections[1].id"),
        ("[runner]\npool_size = 0\n[[connections]]\nid = 'a'\nurl = 'http://127.0.0.1:1/s'\n", "runner.pool_size"),
        ("[runner]\npool_size = 'ten'\n[[connections]]\nid = 'a'\nurl = 'http://127.0.0.1:1/s'\n", "runner.pool_size"),
        ("[[connections]]\nid = 'a'\nurl = 'http://127.0.0.1:1/s'\nheaders = { A = '${SSEPLUG_TEST_UNSET}' }\n",
         "SSEPLUG_TEST_UNSET"),
        ("[runner]\nplugins = { disable = ['nope'] }\n[[connections]]\nid = 'a'\nurl = 'http://127.0.0.1:1/s'\n",
         "runner.plugins.disable[0]"),
    ],
    ids=["syntax", "no-url", "ftp-url", "unknown-key", "duplicate-id", "pool-zero", "pool-text", "unset-var",
         "unknown-plugin"],
)
def test_bad_config_exits_78_with_one_precise_message(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    for command in ("run", "check"):
        status, lines, err = rp.finish(rp.start(command, str(path), cwd=tmp_path))
        assert status == 78, err
        assert str(path) in err and expected in err
        assert lines == [] and err.count("error:") == 1


def test_missing_config_file_exits_78(tmp_path: Path) -> None:
    status, _, err = rp.finish(rp.start("run", str(tmp_path / "nope.toml")))
    assert status == 78 and "does not exist" in err


def test_check_opens_no_connection(tmp_path: Path, sse_server: SSEServer) -> None:
    config = write_config(tmp_path, connection("a", sse_server.url("/feed/a")))
    proc = rp.start("check", str(config), cwd=tmp_path)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "OK, 1 connections" in out and "sqlite" in out
    assert sse_server.requests == []


def test_plugins_lists_builtins_with_hooks(tmp_path: Path) -> None:
    out = rp.start("plugins", "--json").communicate(timeout=20)[0]
    rows = {row["name"]: row for row in json.loads(out)}
    assert {"json", "retry", "stdout", "sqlite"} <= set(rows)
    assert rows["sqlite"]["hooks"] == ["sseplug_checkpoint_load", "sseplug_checkpoint_save", "sseplug_configure",
                                       "sseplug_unconfigure"]


# -- failures --------------------------------------------------------------------------------------


FAILING_PLUGIN = '''
from sseplug import hookimpl

@hookimpl
def sseplug_handle_event(event, connection):
    if event.id == "3":
        raise RuntimeError("cannot store event 3")
'''


def install_fake_plugin(root: Path, name: str, source: str) -> dict[str, str]:
    """A plugin distribution on PYTHONPATH, found through the ``sseplug`` entry point group."""
    dist = root / f"{name}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[sseplug]\n{name} = {name}_plugin\n")
    (root / f"{name}_plugin.py").write_text(source)
    return {"PYTHONPATH": str(root)}


def test_handler_that_raises_is_logged_and_nothing_is_checkpointed_past(tmp_path: Path, sse_server: SSEServer) -> None:
    env = install_fake_plugin(tmp_path / "site", "failplug", FAILING_PLUGIN)
    config = write_config(tmp_path, connection("orders", sse_server.url("/feed/o?count=5&interval=0")) + "[plugins.failplug]\n",
                          "errors = { backoff = 0.01 }")  # the default redeliveries, without their seconds of backoff
    status, _, err = rp.finish(rp.start("run", str(config), env=env, cwd=tmp_path))
    assert status == 1
    assert "plugin 'failplug'" in err and "connection 'orders'" in err and "event id '3'" in err
    assert checkpoint(tmp_path, "orders") == "2"  # events 1 and 2 were handled; 3 was not
    status, _, err = rp.finish(rp.start("run", str(config), env=env, cwd=tmp_path))
    assert sse_server.requests_for("/feed/o")[-1].headers["last-event-id"] == "2"  # retried, not skipped


def test_event_past_max_event_size_fails_only_its_connection(tmp_path: Path, sse_server: SSEServer) -> None:
    sse_server.script("/big", Response(body=[b"id: 1\ndata: ok\n\n", b"data: " + b"x" * 4000 + b"\n\n"]))
    config = write_config(tmp_path, connection("big", sse_server.url("/big"), "max_event_size = 1024")
                          + connection("fine", sse_server.url("/feed/f?count=5&interval=0.05")))
    status, lines, err = rp.finish(rp.start("run", str(config), cwd=tmp_path))
    assert status == 1
    assert "'big'" in err and "max_event_size (1024 bytes)" in err
    ids = by_connection(lines)
    assert ids["big"] == [1] and ids["fine"] == [1, 2, 3, 4, 5]


def test_stalled_server_reconnects_with_last_event_id_after_read_timeout(
    tmp_path: Path, sse_server: SSEServer
) -> None:
    sse_server.script("/s", Response(body=[b"retry: 10\n\nid: 4\ndata: a\n\n"], stall=30),
                      Response(body=[b"id: 5\ndata: b\n\n"]), DONE)
    config = write_config(tmp_path, connection("s", sse_server.url("/s"), "read_timeout = 0.5"))
    status, lines, err = rp.finish(rp.start("run", str(config), cwd=tmp_path))
    assert status == 0, err
    assert [line["id"] for line in lines] == ["4", "5"]
    assert sse_server.requests_for("/s")[1].headers["last-event-id"] == "4"


def test_metrics_counts_match_the_events_printed(tmp_path: Path, sse_server: SSEServer) -> None:
    port = free_port()
    body = b"".join(b"id: %d\ndata: %d\n\n" % (i, i) for i in range(1, 21))
    sse_server.script("/m", Response(body=[body], stall=30))
    config = write_config(tmp_path, connection("m", sse_server.url("/m")), f'http_listen = "127.0.0.1:{port}"')
    proc = rp.start("run", str(config), cwd=tmp_path)
    try:
        lines = rp.read_events(proc, 20)
        base = f"http://127.0.0.1:{port}"
        with gevent.Timeout(10):
            metrics = urllib.request.urlopen(f"{base}/metrics").read().decode()
            health = urllib.request.urlopen(f"{base}/health").status
            ready = urllib.request.urlopen(f"{base}/ready").status
    finally:
        proc.send_signal(signal.SIGTERM)
        status, _, err = rp.finish(proc)
    assert len(lines) == 20 and status == 0, err
    assert 'sseplug_events_total{connection="m"} 20.0' in metrics
    assert f'sseplug_bytes_total{{connection="m"}} {float(len(body))}' in metrics
    assert 'sseplug_connections{state="open"} 1.0' in metrics
    assert (health, ready) == (200, 200)


def test_demo_ends_by_itself_with_events_a_reconnect_and_a_resume() -> None:
    status, lines, err = rp.finish(rp.start("demo"), timeout=30)
    assert status == 0, err
    assert len(lines) >= 10 and {line["connection"] for line in lines} == {"news", "flaky"}
    assert "with Last-Event-ID: 3" in err and "news resumed with Last-Event-ID: 5" in err


def test_jsonl_sink_replaces_stdout_and_flushes_before_each_checkpoint(tmp_path: Path, sse_server: SSEServer) -> None:
    config = write_config(tmp_path, connection("j", sse_server.url("/feed/j?count=5&interval=0"))
                          + '[plugins.jsonl]\npath = "out/events.jsonl"\n')
    status, lines, err = rp.finish(rp.start("run", str(config), cwd=tmp_path))
    assert status == 0, err
    assert lines == []  # an enabled sink takes the stdout sink's place
    written = [json.loads(line) for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    assert [(w["connection"], w["id"], w["data"]["seq"]) for w in written] == [("j", str(i), i) for i in range(1, 6)]
    assert checkpoint(tmp_path, "j") == "5"


def test_logs_go_to_stderr_as_json_and_stdout_holds_only_events(tmp_path: Path, sse_server: SSEServer) -> None:
    config = write_config(tmp_path, connection("a", sse_server.url("/feed/a?count=3&interval=0")))
    status, lines, err = rp.finish(rp.start("--log-format", "json", "run", str(config), cwd=tmp_path))
    assert status == 0 and len(lines) == 3
    records = [json.loads(line) for line in err.splitlines()]
    assert any(r["logger"] == "sseplug.run.runner" and r["message"].startswith("stats:") for r in records)
    assert {"time", "level", "logger", "message"} <= set(records[0])


def test_example_config_is_valid() -> None:
    example = Path(__file__).parents[2] / "examples" / "config.toml"
    proc = rp.start("check", str(example))
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "OK, 2 connections" in out


NOT_A_SINK = '''
from sseplug import hookimpl

sseplug_sink = False  # it looks at events, but stores none of them

@hookimpl
def sseplug_handle_event(event):
    pass
'''


def test_a_handler_that_is_not_a_sink_keeps_the_stdout_sink(tmp_path: Path, sse_server: SSEServer) -> None:
    env = install_fake_plugin(tmp_path / "site", "watcher", NOT_A_SINK)
    config = write_config(tmp_path, connection("w", sse_server.url("/feed/w?count=3&interval=0")) + "[plugins.watcher]\n")
    status, lines, err = rp.finish(rp.start("run", str(config), env=env, cwd=tmp_path))
    assert status == 0, err
    assert [line["id"] for line in lines] == ["1", "2", "3"]


def test_serve_runs_the_embedded_server_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc = rp.start("serve", "--port", str(port))
    try:
        body = b""
        with gevent.Timeout(15):
            while not body:
                try:
                    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/feed/x?count=2&interval=0").read()
                except OSError:
                    gevent.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert b"id: 1\nevent: tick\n" in body and b"id: 2\n" in body
    assert proc.returncode == 0 and f"127.0.0.1:{port}" in err


def test_local_hook_modules_from_the_config(tmp_path: Path, sse_server: SSEServer) -> None:
    example = Path(__file__).parents[2] / "examples" / "handlers.py"
    (tmp_path / "handlers.py").write_text(example.read_text())
    config = write_config(tmp_path, connection("h", sse_server.url("/feed/h?count=4&interval=0")),
                          'plugins = { modules = ["handlers"] }')
    status, lines, err = rp.finish(rp.start("run", str(config), cwd=tmp_path / ".."))
    assert status == 0, err
    assert [line["id"] for line in lines] == ["1", "2", "3", "4"]  # not a sink: stdout stays
    assert "h: 4 events" in err  # the module's summary at exit
    config.write_text(config.read_text().replace('"handlers"', '"no_such_module"'))
    status, _, err = rp.finish(rp.start("run", str(config), cwd=tmp_path))
    assert status == 78 and "runner.plugins.modules[0]: cannot import 'no_such_module'" in err
    (tmp_path / "raising.py").write_text("import os\n\nvalue = undefined_name + 1\n")
    config.write_text(config.read_text().replace('"no_such_module"', '"raising"'))
    status, _, err = rp.finish(rp.start("run", str(config), cwd=tmp_path))
    assert status == 78, err  # the module's own failing line is named
    assert f"cannot import 'raising' (NameError: name 'undefined_name' is not defined, at {tmp_path / 'raising.py'}:3)" in err
