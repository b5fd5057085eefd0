"""The runner as a pipeline, in real runner subprocesses: routes, filters, poison events under each action."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sseplug.server import Response, SSEServer

from . import runner_process as rp
from .test_runner import checkpoint, connection, write_config

# A local hook module (runner.plugins.modules): a sink that records what it handles in
# <connection>.seen and raises on data "boom" (always, or the first FAILS times).
POISON = '''
import os
from pathlib import Path
from sseplug import hookimpl

FAILS = int(os.environ.get("POISON_FAILS", "-1"))
tried = {}

@hookimpl
def sseplug_handle_event(event, connection):
    with Path(f"{connection.id}.seen").open("a") as seen:
        seen.write(f"{event.id}:{event.data}\\n")
    if event.data == "boom":
        tried[event.id] = tried.get(event.id, 0) + 1
        if FAILS < 0 or tried[event.id] <= FAILS:
            raise RuntimeError(f"cannot store event {event.id}")
'''

BROKEN_DEAD_LETTERS = '''
from sseplug import hookimpl

@hookimpl
def sseplug_dead_letter(event):
    raise OSError("the dead-letter queue is down")
'''

STREAM = [b"id: 1\ndata: a\n\n", b"id: 2\nevent: quote\ndata: b\n\n", b"id: 3\ndata: boom\n\n", b"id: 4\ndata: c\n\n"]


def run_poison(tmp_path: Path, sse_server: SSEServer, errors: str, modules: str = '"poison"',
               fails: int = -1) -> tuple[int, str, list[str]]:
    """Run the runner over STREAM once (reconnect = "on_error"); its status, stderr, and what the sink saw."""
    (tmp_path / "poison.py").write_text(POISON)
    (tmp_path / "brokendl.py").write_text(BROKEN_DEAD_LETTERS)
    sse_server.script("/s", Response(body=STREAM))
    extra = f'reconnect = "on_error"\nsinks = ["poison"]\nerrors = {errors}\n'
    config = write_config(tmp_path, connection("s", sse_server.url("/s"), extra),
                          f"plugins = {{ modules = [{modules}] }}")
    proc = rp.start("run", str(config), cwd=tmp_path, env={"POISON_FAILS": str(fails)})
    status, _, err = rp.finish(proc)
    return status, err, (tmp_path / "s.seen").read_text().split()


def test_a_poison_event_stops_the_stream_after_the_retries_by_default(tmp_path: Path, sse_server: SSEServer) -> None:
    status, err, seen = run_poison(tmp_path, sse_server, "{ backoff = 0.01 }")
    assert status == 1 and seen == ["1:a", "2:b", "3:boom", "3:boom", "3:boom", "3:boom"]  # 1 + 3 retries
    assert "plugin 'poison' raised in sseplug_handle_event at event id '3'" in err
    assert "(attempt 3 of 4), retrying in 0.04s" in err
    assert checkpoint(tmp_path, "s") == "2"  # a restart begins with the poison event again


def test_a_transient_failure_is_retried_in_process_and_nothing_is_lost(tmp_path: Path, sse_server: SSEServer) -> None:
    status, err, seen = run_poison(tmp_path, sse_server, "{ backoff = 0.01 }", fails=2)
    assert status == 0 and seen == ["1:a", "2:b", "3:boom", "3:boom", "3:boom", "4:c"], err
    assert checkpoint(tmp_path, "s") == "4"


def test_skip_logs_counts_and_goes_on(tmp_path: Path, sse_server: SSEServer) -> None:
    status, err, seen = run_poison(tmp_path, sse_server, '{ retries = 1, backoff = 0.01, action = "skip" }')
    assert status == 0 and seen == ["1:a", "2:b", "3:boom", "3:boom", "4:c"]
    assert "poison failed 2 times on event id '3'; skipped" in err and checkpoint(tmp_path, "s") == "4"


def test_dead_letter_writes_the_state_dir_file_then_goes_on(tmp_path: Path, sse_server: SSEServer) -> None:
    status, err, seen = run_poison(tmp_path, sse_server, '{ retries = 0, action = "dead_letter" }')
    assert status == 0 and seen == ["1:a", "2:b", "3:boom", "4:c"], err
    (letter,) = [json.loads(line) for line in (tmp_path / "state" / "dead-letter.jsonl").read_text().splitlines()]
    assert (letter["connection"], letter["plugin"], letter["attempts"]) == ("s", "poison", 1)
    assert letter["error"] == "RuntimeError: cannot store event 3" and letter["event"]["id"] == "3"
    assert checkpoint(tmp_path, "s") == "4"


def test_a_failing_dead_letter_store_stops_the_stream(tmp_path: Path, sse_server: SSEServer) -> None:
    status, err, seen = run_poison(tmp_path, sse_server, '{ retries = 0, action = "dead_letter" }',
                                   modules='"poison", "brokendl"')
    assert status == 1 and seen == ["1:a", "2:b", "3:boom"]
    assert "plugin 'brokendl' raised in sseplug_dead_letter at event id '3'" in err and "queue is down" in err
    assert checkpoint(tmp_path, "s") == "2" and not (tmp_path / "state" / "dead-letter.jsonl").exists()


def test_event_type_and_where_filters_keep_what_they_name(tmp_path: Path, sse_server: SSEServer) -> None:
    events = [b'id: %d\nevent: %s\ndata: {"domain": "%s"}\n\n' % (n, kind, domain) for n, kind, domain in
              [(1, b"trade", b"prod"), (2, b"quote", b"prod"), (3, b"trade", b"canary"), (4, b"trade", b"prod")]]
    sse_server.script("/s", Response(body=events))
    extra = 'reconnect = "on_error"\nevents = ["trade"]\nwhere = "data.domain != \'canary\'"\n'
    config = write_config(tmp_path, connection("s", sse_server.url("/s"), extra))
    status, lines, err = rp.finish(rp.start("run", str(config), cwd=tmp_path))
    assert status == 0 and [line["id"] for line in lines] == ["1", "4"], err
    assert checkpoint(tmp_path, "s") == "4"  # filtered events are checkpointed past


@pytest.mark.parametrize(
    ("sinks", "message"),
    [('["json"]', "plugin 'json' handles no events"),
     ('["sqlite", "stdout"]', "plugin 'sqlite' handles no events")],
)
def test_a_route_to_a_plugin_that_handles_no_events_is_a_config_error(
    tmp_path: Path, sse_server: SSEServer, sinks: str, message: str
) -> None:
    config = write_config(tmp_path, connection("s", sse_server.url("/s"), f"sinks = {sinks}"))
    status, _, err = rp.finish(rp.start("run", str(config), cwd=tmp_path))
    assert status == 78 and message in err and "connections[0].sinks[0]" in err and str(config) in err
