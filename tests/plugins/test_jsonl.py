"""The ``jsonl`` plugin (sseplug-jsonl) against real loopback streams: lines, flush order, rotation, config."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gevent
import pytest

import sseplug_jsonl
from sseplug import SSEClient, SSERequest, SSEResponse, hookimpl
from sseplug.run.config import Config, parse_config
from sseplug.errors import ConfigError
from sseplug.builtin import deadletter
from sseplug.plugins import PluginManager, create_plugin_manager
from sseplug.server import Response, SSEServer
from sseplug.testing import DONE
from sseplug_jsonl import JsonlSink

from . import sink_kit

TIMEOUT = 5.0

drain = functools.partial(sink_kit.drain, timeout=TIMEOUT, limit=1000)


def make_config(tmp_path: Path, table: str | None = 'path = "events.jsonl"', *, at: str = "run.toml") -> Config:
    """A validated runner config at ``tmp_path/at`` with ``[plugins.jsonl]`` holding ``table``."""
    return sink_kit.make_config(tmp_path, table, plugin="jsonl", at=at)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of ``path`` as JSON; a line that does not parse fails the test."""
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), f"torn last line in {path}"
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def sink(register_plugin: Callable[..., object]) -> Iterator[JsonlSink]:
    """A fresh sink registered as ``jsonl`` for this test, closed afterwards."""
    plugin = JsonlSink()
    yield from sink_kit.registered(register_plugin, plugin, "jsonl", plugin.close)


def event(id: str = "1", data: Any = "x", kind: str = "message") -> SSEResponse:
    """An event as a connection hands it to the handlers."""
    return SSEResponse(id=id, event=kind, data=data)


def conn(connection_id: str = "c", last_event_id: str = "") -> Any:
    """A stand-in connection with what the sink reads (``id``, ``last_event_id``)."""
    return SimpleNamespace(id=connection_id, last_event_id=last_event_id)


# -- lines over a real stream ---------------------------------------------------------------------


def test_every_event_written_once_in_order_with_decoded_data(
    tmp_path: Path, sse_server: SSEServer, sink: JsonlSink, sse_client_for: Callable[..., SSEClient]
) -> None:
    body = [
        b"retry: 10\n\n: ping\n\n",
        b'id: 1\ndata: {"n": 1}\n\n',
        b"id: 2\nevent: note\ndata: caf\xc3\xa9\n\n",
        b"id: 3\ndata: [DONE]\n\n",
        b'data: "quoted"\n\nid: 4\ndata: [1,\ndata: 2]\n\n',
    ]
    sse_server.script("/s", Response(body=body), DONE)
    client = sse_client_for(make_config(tmp_path))
    got = drain(client, "orders", sse_server.url("/s"))
    client.shutdown()  # unconfigure: flush and close
    assert read_lines(tmp_path / "events.jsonl") == [
        {"connection": "orders", "id": e.id, "event": e.event, "data": e.data} for e in got
    ]
    assert [(e.id, e.event, e.data) for e in got] == [
        ("1", "message", {"n": 1}),
        ("2", "note", "café"),
        ("3", "message", "[DONE]"),
        ("3", "message", "quoted"),
        ("4", "message", [1, 2]),
    ]
    assert "café" in (tmp_path / "events.jsonl").read_text(encoding="utf-8")  # ensure_ascii=False


def test_concurrent_connections_write_whole_lines_each_in_order(
    tmp_path: Path, sse_server: SSEServer, sink: JsonlSink, sse_client_for: Callable[..., SSEClient]
) -> None:
    client = sse_client_for(make_config(tmp_path))
    names = [f"feed{index}" for index in range(4)]
    jobs = [gevent.spawn(drain, client, name, sse_server.url(f"/feed/{name}?count=40&interval=0")) for name in names]
    gevent.joinall(jobs, timeout=TIMEOUT, raise_error=True)
    assert all(job.successful() for job in jobs)
    client.shutdown()
    lines = read_lines(tmp_path / "events.jsonl")
    assert len(lines) == 4 * 40
    for name in names:
        mine = [line for line in lines if line["connection"] == name]
        assert [line["data"] for line in mine] == [{"feed": name, "seq": seq} for seq in range(1, 41)]
        assert [line["id"] for line in mine] == [str(seq) for seq in range(1, 41)]


def test_lines_are_flushed_before_any_checkpoint_is_saved(
    tmp_path: Path,
    sse_server: SSEServer,
    sink: JsonlSink,
    register_plugin: Callable[..., object],
    sse_client_for: Callable[..., SSEClient],
) -> None:
    path = tmp_path / "events.jsonl"

    class CheckpointProbe:
        """Registered after jsonl, so pluggy would run it first were jsonl not ``tryfirst``."""

        def __init__(self) -> None:
            self.seen_while_handling: list[int] = []
            self.seen_at_checkpoint: list[tuple[str, list[str]]] = []

        @hookimpl(trylast=True)
        def sseplug_handle_event(self) -> None:  # after jsonl wrote the line
            self.seen_while_handling.append(len(read_lines(path)))

        @hookimpl
        def sseplug_checkpoint_save(self, last_event_id: str) -> None:
            self.seen_at_checkpoint.append((last_event_id, [line["id"] for line in read_lines(path)]))

    probe = CheckpointProbe()
    register_plugin(probe, "probe")
    body = [
        b"retry: 10\n\n",
        b"id: 1\ndata: a\n\n",
        0.05,
        b"id: 2\ndata: b\n\nid: 3\ndata: c\n\n",
        0.05,
        b"id: 4\ndata: d\n\n",
    ]
    sse_server.script("/s", Response(body=body), DONE)  # type: ignore[arg-type]
    client = sse_client_for(make_config(tmp_path))
    assert [e.id for e in drain(client, "s", sse_server.url("/s"))] == ["1", "2", "3", "4"]
    assert probe.seen_while_handling == [0, 1, 1, 3]  # buffered until the batch's checkpoint
    assert probe.seen_at_checkpoint == [("1", ["1"]), ("3", ["1", "2", "3"]), ("4", ["1", "2", "3", "4"])]


def test_events_without_ids_are_flushed_at_once(
    tmp_path: Path, sse_server: SSEServer, sink: JsonlSink, sse_client_for: Callable[..., SSEClient]
) -> None:
    sse_server.script("/s", Response(body=[b"retry: 10\n\n", b"data: a\n\ndata: b\n\n", 30.0]))
    client = sse_client_for(make_config(tmp_path))
    stream = client.connect("s", SSERequest(sse_server.url("/s")))
    with gevent.Timeout(TIMEOUT):
        assert [next(stream).data, next(stream).data] == ["a", "b"]
    # no id, so no checkpoint_save comes; the lines are in the file all the same
    assert [line["data"] for line in read_lines(tmp_path / "events.jsonl")] == ["a", "b"]


# -- rotation -----------------------------------------------------------------------------------


def test_rotation_by_max_bytes_keeps_whole_lines_and_backups(
    tmp_path: Path, sse_server: SSEServer, sink: JsonlSink, sse_client_for: Callable[..., SSEClient]
) -> None:
    client = sse_client_for(make_config(tmp_path, 'path = "out/events.jsonl"\nmax_bytes = 1024\nbackups = 2'))
    drain(client, "r", sse_server.url("/feed/r?count=120&interval=0"))
    client.shutdown()
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    files = [out / "events.jsonl.2", out / "events.jsonl.1", out / "events.jsonl"]  # oldest first
    assert all(0 < f.stat().st_size <= 1024 for f in files)
    kept = [line["data"]["seq"] for f in files for line in read_lines(f)]
    assert kept == list(range(kept[0], 121)) and kept[0] > 1  # a contiguous tail, oldest rotated out
    # every full file was rotated only because the next line would not fit
    for older in files[:2]:
        assert older.stat().st_size + len(json.dumps(read_lines(older)[-1])) + 1 > 1024


def test_backups_zero_starts_the_file_over(tmp_path: Path) -> None:
    plugin = JsonlSink()
    plugin.sseplug_configure(make_config(tmp_path, 'path = "e.jsonl"\nmax_bytes = 1024\nbackups = 0'))
    for seq in range(1, 101):
        plugin.sseplug_handle_event(event(str(seq), "x" * 40), conn())
    plugin.sseplug_unconfigure()
    assert [p.name for p in tmp_path.iterdir() if p.name != "run.toml"] == ["e.jsonl"]
    ids = [line["id"] for line in read_lines(tmp_path / "e.jsonl")]
    assert ids[-1] == "100" and 0 < (tmp_path / "e.jsonl").stat().st_size <= 1024


def test_a_line_larger_than_max_bytes_gets_a_file_of_its_own(tmp_path: Path) -> None:
    plugin = JsonlSink()
    plugin.sseplug_configure(make_config(tmp_path, 'path = "e.jsonl"\nmax_bytes = 1024\nbackups = 3'))
    for seq, size in enumerate([10, 3000, 10], start=1):
        plugin.sseplug_handle_event(event(str(seq), "x" * size), conn())
    plugin.sseplug_unconfigure()
    assert [[line["id"] for line in read_lines(tmp_path / name)] for name in ("e.jsonl.2", "e.jsonl.1", "e.jsonl")] == [
        ["1"], ["2"], ["3"]
    ]


# -- file handling ------------------------------------------------------------------------------


def test_relative_path_starts_at_the_config_file_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    plugin = JsonlSink()
    plugin.sseplug_configure(make_config(tmp_path, 'path = "logs/e.jsonl"', at="conf/run.toml"))
    plugin.sseplug_handle_event(event(), conn())
    plugin.sseplug_unconfigure()
    assert read_lines(tmp_path / "conf" / "logs" / "e.jsonl") == [
        {"connection": "c", "id": "1", "event": "message", "data": "x"}
    ]
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_appends_and_ends_a_torn_last_line(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_bytes(b'{"id": "0"}\n{"connection": "c", "id": "1", "ev')
    plugin = JsonlSink()
    plugin.sseplug_configure(make_config(tmp_path, 'path = "e.jsonl"'))
    plugin.sseplug_handle_event(event("1"), conn())
    plugin.sseplug_unconfigure()
    lines = (tmp_path / "e.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines[:2] == ['{"id": "0"}', '{"connection": "c", "id": "1", "ev']
    assert json.loads(lines[2])["id"] == "1" and len(lines) == 3


def test_data_json_cannot_hold_is_written_as_text(tmp_path: Path) -> None:
    plugin = JsonlSink()
    plugin.sseplug_configure(make_config(tmp_path, 'path = "e.jsonl"'))
    plugin.sseplug_handle_event(event("1", {"raw": b"\x00", "set": {1}}), conn())
    plugin.sseplug_handle_event(event("2", "lone \ud800 surrogate"), conn())  # as JSON "\ud800" decodes
    plugin.sseplug_unconfigure()
    first, second = read_lines(tmp_path / "e.jsonl")
    assert first["data"] == {"raw": "b'\\x00'", "set": "{1}"}
    assert second["data"] == "lone \ud800 surrogate"


def test_fsync_runs_when_flushing_for_a_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(sseplug_jsonl.os, "fsync", synced.append)
    plugin = JsonlSink()
    plugin.sseplug_configure(make_config(tmp_path, 'path = "e.jsonl"\nfsync = true'))
    plugin.sseplug_handle_event(event("1"), conn(last_event_id=""))
    assert synced == []
    plugin.sseplug_checkpoint_save()
    plugin.sseplug_checkpoint_save()  # nothing new: no second fsync
    assert len(synced) == 1
    plugin.sseplug_unconfigure()


def test_checkpoint_save_is_tryfirst(sseplug_plugins: PluginManager, sink: JsonlSink) -> None:
    impls = sseplug_plugins.hook.sseplug_checkpoint_save.get_hookimpls()
    assert [impl.plugin_name for impl in impls if impl.tryfirst] == ["jsonl"]


# -- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("", "path"),
        ("path = 3", "path"),
        ('path = ""', "path"),
        ('path = "e.jsonl"\nmax_bytes = 1023', "max_bytes"),
        ('path = "e.jsonl"\nmax_bytes = true', "max_bytes"),
        ('path = "e.jsonl"\nmax_bytes = "1MB"', "max_bytes"),
        ('path = "e.jsonl"\nmax_bytes = 2048.0', "max_bytes"),
        ('path = "e.jsonl"\nbackups = -1', "backups"),
        ('path = "e.jsonl"\nbackups = 1.5', "backups"),
        ('path = "e.jsonl"\nfsync = "yes"', "fsync"),
        ('path = "e.jsonl"\nfsync = 1', "fsync"),
        ('path = "e.jsonl"\nmaxbytes = 2048', "maxbytes"),
        ('path = "."', "path"),  # a directory cannot be opened for appending
    ],
)
def test_bad_config_raises_config_error_naming_the_key(tmp_path: Path, table: str, key: str) -> None:
    plugin = JsonlSink()
    error = sink_kit.configure_error(plugin, make_config(tmp_path, table))
    assert error.key == f"plugins.jsonl.{key}" and error.path == str(tmp_path / "run.toml")
    assert plugin.path is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("", "missing key 'path'; e.g. path = \"events.jsonl\" (relative to the config file)"),
        ('path = ""', "expected a file path, got ''; e.g. path = \"events.jsonl\""),
        ('path = "e.jsonl"\nmax_bytes = 1023',
         "expected an integer >= 1024, got 1023 (integer); e.g. max_bytes = 104857600 (leave it out to never rotate)"),
        ('path = "e.jsonl"\nbackups = 1.5', "expected an integer >= 0, got 1.5 (float); e.g. backups = 5"),
        ('path = "e.jsonl"\nfsync = 1', "expected true or false, got 1 (integer); e.g. fsync = false"),
        ('path = "e.jsonl"\nmaxbytes = 2048', "unknown key 'maxbytes' in [plugins.jsonl] (did you mean 'max_bytes'?); "
                                              "known keys: path, max_bytes, backups, fsync, dead_letter_path"),
    ],
)
def test_config_errors_say_what_was_expected_and_give_an_example(tmp_path: Path, table: str, message: str) -> None:
    assert sink_kit.configure_error(JsonlSink(), make_config(tmp_path, table)).message == message


def test_bad_config_fails_when_the_plugins_are_configured(
    tmp_path: Path, sink: JsonlSink, sseplug_plugins: PluginManager
) -> None:
    with pytest.raises(ConfigError, match=r"plugins\.jsonl\.backups"):
        sseplug_plugins.configure(make_config(tmp_path, 'path = "e.jsonl"\nbackups = "5"'))
    assert [p.name for p in tmp_path.iterdir()] == []


def test_library_use_without_config_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sse_server: SSEServer,
    sink: JsonlSink,
    sse_client_for: Callable[..., SSEClient],
) -> None:
    monkeypatch.chdir(tmp_path)
    client = sse_client_for(None)
    assert len(drain(client, "lib", sse_server.url("/feed/lib?count=5&interval=0"))) == 5
    client.shutdown()
    assert list(tmp_path.iterdir()) == [] and sink.path is None


def test_config_without_a_jsonl_table_leaves_the_plugin_inactive(tmp_path: Path) -> None:
    plugin = JsonlSink()
    plugin.sseplug_configure(make_config(tmp_path, None))
    plugin.sseplug_handle_event(event(), conn())
    plugin.sseplug_unconfigure()
    assert list(tmp_path.iterdir()) == []


def test_a_path_template_gives_each_connection_its_own_file(tmp_path: Path) -> None:
    config = parse_config('[[connections]]\nid = "a"\nurl = "http://127.0.0.1:9/"\n'
                          '[[connections]]\nid = "b"\nurl = "http://127.0.0.1:9/"\n'
                          '[plugins.jsonl]\npath = "out/{connection}.jsonl"\n', path=tmp_path / "run.toml")
    plugin = JsonlSink()
    plugin.sseplug_configure(config)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jsonl", "b.jsonl"]  # opened up front
    plugin.sseplug_handle_event(event("1", "x"), conn("a"))
    plugin.sseplug_handle_event(event("1", "y"), conn("b"))
    plugin.sseplug_handle_event(event("2", "z"), conn("late"))  # not in the config: opened on first use
    plugin.sseplug_unconfigure()
    assert [line["data"] for line in read_lines(tmp_path / "out" / "a.jsonl")] == ["x"]
    assert [line["data"] for line in read_lines(tmp_path / "out" / "b.jsonl")] == ["y"]
    assert [line["connection"] for line in read_lines(tmp_path / "out" / "late.jsonl")] == ["late"]


@pytest.mark.parametrize(
    ("table", "key", "message"),
    [('path = "out/{conection}.jsonl"', "path", "unknown placeholder {conection}"),
     ('path = "out/{connection.jsonl"', "path", "write {connection} for the connection id"),
     ('path = "e.jsonl"\ndead_letter_path = "d/{id}.jsonl"', "dead_letter_path", "unknown placeholder {id}")],
)
def test_bad_templates_are_config_errors(tmp_path: Path, table: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        JsonlSink().sseplug_configure(make_config(tmp_path, table))
    assert caught.value.key == f"plugins.jsonl.{key}" and message in caught.value.message


@pytest.mark.parametrize("blocker", ["directory", "file"])
def test_a_dead_letter_path_that_cannot_be_created_is_a_config_error_up_front(tmp_path: Path, blocker: str) -> None:
    if blocker == "directory":
        (tmp_path / "dead" / "c.jsonl").mkdir(parents=True)  # a directory where the file would go
    else:
        (tmp_path / "dead").write_text("")  # a file where the directory would go
    with pytest.raises(ConfigError) as caught:
        JsonlSink().sseplug_configure(make_config(tmp_path, 'path = "e.jsonl"\ndead_letter_path = "dead/{connection}.jsonl"'))
    assert caught.value.key == "plugins.jsonl.dead_letter_path" and "dead/c.jsonl" in caught.value.message


def test_dead_letters_go_to_dead_letter_path_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(sseplug_jsonl.os, "fsync", synced.append)
    plugin = JsonlSink()
    plugin.sseplug_configure(make_config(tmp_path, 'path = "e.jsonl"\ndead_letter_path = "dead/{connection}.jsonl"'))
    assert not (tmp_path / "dead").exists()  # created by the first dead letter: its existence means one
    poison = SSEResponse("7", "message", {"n": 7}, "", "id: 7\ndata: {\"n\": 7}")
    assert plugin.sseplug_dead_letter(poison, conn("c"), "kafka", RuntimeError("broker down"), 4) is True
    assert len(synced) == 1  # on the disk before the connection checkpoints past it
    plugin.sseplug_unconfigure()
    (letter,) = read_lines(tmp_path / "dead" / "c.jsonl")
    assert {k: letter[k] for k in ("connection", "plugin", "attempts", "error")} == {
        "connection": "c", "plugin": "kafka", "attempts": 4, "error": "RuntimeError: broker down"}
    assert letter["event"] == {"id": "7", "event": "message", "data": {"n": 7}, "raw": 'id: 7\ndata: {"n": 7}'}
    without = JsonlSink()
    without.sseplug_configure(make_config(tmp_path, 'path = "e.jsonl"'))
    assert without.sseplug_dead_letter(poison, conn("c"), "kafka", RuntimeError("x"), 1) is None
    without.sseplug_unconfigure()


def with_builtin_dead_letters(sink: JsonlSink, config: Config) -> PluginManager:
    """A configured manager holding the runner's built-in ``deadletter`` (last resort) and ``sink``."""
    pm = create_plugin_manager(builtins=("deadletter",), load_entry_points=False, extra=[("jsonl", sink)])
    pm.configure(config)
    return pm


def test_sseplug_dead_letter_answers_first_with_dead_letter_path_else_leaves_it_to_the_builtin(tmp_path: Path) -> None:
    poison = SSEResponse("7", "message", {"n": 7}, "", 'id: 7\ndata: {"n": 7}')
    letter = {"event": poison, "connection": conn("c"), "plugin": "kafka", "error": RuntimeError("down"), "attempts": 2}
    builtin_file = tmp_path / ".sseplug" / deadletter.FILENAME  # the config's default state_dir
    pm = with_builtin_dead_letters(JsonlSink(), make_config(tmp_path, 'path = "e.jsonl"\ndead_letter_path = "dead.jsonl"'))
    try:
        assert pm.hook.sseplug_dead_letter(**letter) is True
    finally:
        pm.unconfigure()
    (stored,) = read_lines(tmp_path / "dead.jsonl")
    assert (stored["connection"], stored["plugin"], stored["attempts"], stored["error"]) == ("c", "kafka", 2,
                                                                                             "RuntimeError: down")
    assert stored["event"]["id"] == "7" and stored["time"].endswith("Z")
    assert not builtin_file.exists()  # firstresult: the built-in was not asked

    pm = with_builtin_dead_letters(JsonlSink(), make_config(tmp_path, 'path = "e.jsonl"'))
    try:
        assert pm.hook.sseplug_dead_letter(**letter) is True  # the built-in's answer: the sink passed
    finally:
        pm.unconfigure()
    assert [line["event"]["id"] for line in read_lines(builtin_file)] == ["7"]
    assert len(read_lines(tmp_path / "dead.jsonl")) == 1


def test_sseplug_dead_letter_raises_when_the_dead_letter_cannot_be_stored(tmp_path: Path) -> None:
    pm = with_builtin_dead_letters(JsonlSink(), make_config(
        tmp_path, 'path = "e.jsonl"\ndead_letter_path = "dead/{connection}.jsonl"'))
    (tmp_path / "dead" / "late.jsonl").mkdir(parents=True)  # a connection whose file is a directory
    try:
        with pytest.raises(IsADirectoryError):
            pm.hook.sseplug_dead_letter(event=event("1"), connection=conn("late"), plugin="kafka",
                                        error=RuntimeError("down"), attempts=1)
    finally:
        pm.unconfigure()
    assert not (tmp_path / ".sseplug").exists()  # not passed on to the built-in: the connection stops


def test_dry_run_validates_and_creates_nothing(tmp_path: Path) -> None:
    table = 'path = "out/{connection}.jsonl"\ndead_letter_path = "dead/{connection}.jsonl"'
    plugin = JsonlSink()
    plugin.sseplug_configure(dataclasses.replace(make_config(tmp_path, table), dry_run=True))
    assert list(tmp_path.iterdir()) == [] and repr(plugin) == "<JsonlSink inactive>"
    assert plugin.sseplug_dead_letter(event(), conn(), "kafka", RuntimeError("x"), 1) is None
    with pytest.raises(ConfigError) as caught:
        plugin.sseplug_configure(dataclasses.replace(make_config(tmp_path, 'path = "{id}.jsonl"'), dry_run=True))
    assert caught.value.key == "plugins.jsonl.path" and caught.value.path == str(tmp_path / "run.toml")


def test_entry_point_target_is_a_sink() -> None:
    assert isinstance(sseplug_jsonl.plugin, JsonlSink)
