"""``sseplug check`` is a dry run; installed plugins stay inert in the runner until configured."""

from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path

import pytest

from sseplug import hookimpl
from sseplug.plugins import create_plugin_manager
from sseplug.run.config import parse_config
from sseplug.run.runner import inactive_plugins
from sseplug.server import Response, SSEServer

from . import runner_process as rp
from .test_runner import connection, write_config
from .thirdparty import free_port

SINK_TABLES = """
[plugins.jsonl]
path = "out/{connection}.jsonl"
dead_letter_path = "out/dead.jsonl"
[plugins.redis]
url = "redis://127.0.0.1:%d/0"
[plugins.kafka]
bootstrap_servers = "127.0.0.1:%d"
topic = "sse.{connection}"
"""


def check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*rp.command(), "check", str(config)], capture_output=True, text=True, timeout=60,
                          cwd=config.parent)


def tree(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def test_check_creates_nothing_and_connects_nowhere(tmp_path: Path) -> None:
    dead = free_port()  # nothing listens: a connect attempt would fail the check
    config = write_config(tmp_path, connection("a", f"http://127.0.0.1:{dead}/s", 'sinks = ["jsonl", "kafka"]'),
                          f'http_listen = "127.0.0.1:{free_port()}"')
    config.write_text(config.read_text() + SINK_TABLES % (dead, dead))
    before = tree(tmp_path)
    done = check(config)
    assert done.returncode == 0, done.stderr
    assert f"{config}: OK, 1 connections" in done.stdout
    assert tree(tmp_path) == before  # no state_dir, no checkpoint db, no jsonl or dead-letter file


@pytest.mark.parametrize(
    ("extra", "key", "message"),
    [('[plugins.jsonl]\npath = 3\n', "plugins.jsonl.path", "expected a string"),
     ('[plugins.jsonl]\npath = "out/{conection}.jsonl"\n', "plugins.jsonl.path", "{conection}"),
     ('[plugins.kafka]\nbootstrap_servers = "127.0.0.1:1"\ntopic = "sse.{id}"\n', "plugins.kafka.topic", "{id}")],
)
def test_check_names_the_file_and_key_of_a_bad_plugin_table(tmp_path: Path, extra: str, key: str, message: str) -> None:
    config = write_config(tmp_path, connection("a", "http://127.0.0.1:1/s"))
    config.write_text(config.read_text() + extra)
    done = check(config)
    assert done.returncode == 78 and str(config) in done.stderr and key in done.stderr, done.stderr
    assert message in done.stderr
    assert tree(tmp_path) == ["run.toml"]


def test_check_refuses_a_route_to_a_plugin_that_is_not_active(tmp_path: Path) -> None:
    config = write_config(tmp_path, connection("a", "http://127.0.0.1:1/s", 'sinks = ["jsonl"]'))
    done = check(config)
    assert done.returncode == 78 and "connections[0].sinks[0]" in done.stderr
    assert "give it a [plugins.jsonl] table" in done.stderr


def skeleton_installed() -> bool:
    return any(ep.name == "skeleton" for ep in importlib.metadata.entry_points(group="sseplug"))


@pytest.mark.skipif(not skeleton_installed(), reason="examples/plugin-skeleton is not installed (tests/install.sh)")
@pytest.mark.parametrize("table", [False, True], ids=["no-table-inert", "table-active"])
def test_the_installed_skeleton_acts_only_with_its_table(tmp_path: Path, sse_server: SSEServer, table: bool) -> None:
    sse_server.script("/s", Response(body=[b"id: 1\ndata: a\n\n"]))
    config = write_config(tmp_path, connection("s", sse_server.url("/s"), 'reconnect = "on_error"'))
    if table:
        config.write_text(config.read_text() + "[plugins.skeleton]\n")
    proc = rp.start("run", str(config), cwd=tmp_path, env={"SKELETON_TOKEN": "t0ken"})
    status, lines, err = rp.finish(proc)
    assert status == 0 and [line["id"] for line in lines] == ["1"], err
    (request,) = sse_server.requests_for("/s")
    assert (request.headers.get("authorization") == "Bearer t0ken") is table
    assert ("sseplug_skeleton: connection s: event id='1'" in err) is table


def test_an_always_on_plugin_acts_without_a_table(tmp_path: Path) -> None:
    class AlwaysOn:
        sseplug_always_on = True

        @hookimpl
        def sseplug_handle_event(self) -> None:
            pass

    class Quiet:
        @hookimpl
        def sseplug_handle_event(self) -> None:
            pass

    pm = create_plugin_manager(load_entry_points=False, extra=[("always", AlwaysOn()), ("quiet", Quiet()),
                                                                 ("tabled", Quiet())])
    pm.distributions.update({name: (f"dist-{name}", "1.0") for name in ("always", "quiet", "tabled")})
    config = parse_config('[[connections]]\nid = "a"\nurl = "http://127.0.0.1:1/"\n[plugins.tabled]\n',
                          path=tmp_path / "c.toml", environ={})
    assert inactive_plugins(pm, config) == ["quiet"]
