"""``sseplug check`` is a dry run; installed plugins stay inert in the runner until configured."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import socket
import subprocess
from collections.abc import Iterator
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
stream = "sseplug:{connection}"
dead_letter_stream = "sseplug:dead:{connection}"
[plugins.kafka]
bootstrap_servers = "127.0.0.1:%d"
topic = "sse.{connection}"
dead_letter_topic = "sse.dead"
"""


def check(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*rp.command(), "check", str(config)], capture_output=True, text=True, timeout=60,
                          cwd=config.parent, env={**os.environ, **(env or {})})


@contextlib.contextmanager
def listener() -> Iterator[socket.socket]:
    """A loopback port that listens and never accepts: whatever connects waits in its backlog."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock
    finally:
        sock.close()


def connected(sock: socket.socket) -> bool:
    """Whether anything connected to ``listener()``'s port (a non-blocking accept)."""
    sock.setblocking(False)
    try:
        sock.accept()[0].close()
    except BlockingIOError:
        return False
    return True


def tree(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def test_check_creates_nothing_and_connects_nowhere(tmp_path: Path) -> None:
    with listener() as trap:  # the stream, Redis and Kafka all point here: a connect would wait in its backlog
        port = trap.getsockname()[1]
        config = write_config(tmp_path, connection("a", f"http://127.0.0.1:{port}/s", 'sinks = ["jsonl", "kafka"]'),
                              f'http_listen = "127.0.0.1:{free_port()}"')
        config.write_text(config.read_text() + SINK_TABLES % (port, port))
        before = tree(tmp_path)
        done = check(config)
        assert done.returncode == 0, done.stderr
        assert f"{config}: OK, 1 connections" in done.stdout
        assert tree(tmp_path) == before == ["run.toml"]  # no state_dir, checkpoint db, jsonl or dead-letter file
        assert not connected(trap)


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


BROKEN_MODULE = """
from sseplug import hookimpl

@hookimpl
def sseplug_configure(config):
    config.plugin_config("broken")["limit"] + 1  # a plugin's own bug: a str plus an int
"""


def test_check_names_the_file_and_key_when_a_plugin_fails_otherwise(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text(BROKEN_MODULE)
    config = write_config(tmp_path, connection("a", "http://127.0.0.1:1/s"),
                          'plugins = { modules = ["handlers_missing", "broken"] }')
    done = check(config)
    assert done.returncode == 78 and f"{config}: runner.plugins.modules[0]: cannot import 'handlers_missing'" \
        in done.stderr, done.stderr
    config.write_text(config.read_text().replace('"handlers_missing", ', "") + '[plugins.broken]\nlimit = "3"\n')
    done = check(config)
    assert done.returncode == 78 and f"{config}: plugins.broken: plugin 'broken' failed to check its " \
        "settings: TypeError" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and tree(tmp_path) == ["broken.py", "run.toml"]


def test_check_names_http_listen_when_the_metrics_endpoint_cannot_import(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "prometheus_client"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("prometheus_client is broken here")\n')
    config = write_config(tmp_path / "shadow", connection("a", "http://127.0.0.1:1/s"),
                          f'http_listen = "127.0.0.1:{free_port()}"')
    done = check(config, env={"PYTHONPATH": os.pathsep.join(filter(None, [str(shadow.parent),
                                                                        os.environ.get("PYTHONPATH")]))})
    assert done.returncode == 78, done.stderr
    assert f"{config}: runner.http_listen: the HTTP endpoint cannot start: prometheus_client is broken here" \
        in done.stderr, done.stderr


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
    if not table:  # as if it were not installed: not a word from it, the request as sseplug alone sends it
        assert "skeleton" not in err and "authorization" not in request.headers, err


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


PROBE_MODULE = '''
from sseplug import hookimpl


class Probe:
    """Adds a header naming itself to every request: whether it acted shows at the server."""

    sseplug_sink = False

    def __init__(self, header, always_on):
        self.header = header
        if always_on:
            self.sseplug_always_on = True

    @hookimpl
    def sseplug_auth_headers(self):
        return {self.header: "1"}


always = Probe("X-Always", always_on=True)
quiet = Probe("X-Quiet", always_on=False)
'''


def install_probes(site: Path) -> dict[str, str]:
    """A distribution of two plugins, ``probe_always`` (``sseplug_always_on = True``) and
    ``probe_quiet``, installed in ``site``; the environment that puts ``site`` on the path."""
    site.mkdir()
    (site / "inert_probe.py").write_text(PROBE_MODULE)
    info = site / "inert_probe-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: inert-probe\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[sseplug]\nprobe_always = inert_probe:always\nprobe_quiet = inert_probe:quiet\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


@pytest.mark.parametrize("table", [False, True], ids=["no-table", "quiet-table"])
def test_an_installed_plugin_acts_only_with_its_table_unless_always_on(
    tmp_path: Path, sse_server: SSEServer, table: bool
) -> None:
    env = install_probes(tmp_path / "site")
    sse_server.script("/s", Response(body=[b"id: 1\ndata: a\n\n"]))
    config = write_config(tmp_path, connection("s", sse_server.url("/s"), 'reconnect = "on_error"'))
    if table:
        config.write_text(config.read_text() + "[plugins.probe_quiet]\n")
    status, lines, err = rp.finish(rp.start("run", str(config), cwd=tmp_path, env=env))
    assert status == 0 and [line["id"] for line in lines] == ["1"], err
    (request,) = sse_server.requests_for("/s")
    assert request.headers.get("x-always") == "1"  # sseplug_always_on: no table needed
    assert (request.headers.get("x-quiet") == "1") is table

    done = check(config, env=env)
    assert done.returncode == 0, done.stderr
    inactive = done.stdout.partition("installed but inactive without a [plugins.NAME] table: ")[2].strip()
    assert "probe_always" not in inactive and ("probe_quiet" in inactive) is not table, done.stdout


def test_sseplug_plugins_lists_the_installed_plugins_a_runner_leaves_inert(tmp_path: Path) -> None:
    env = install_probes(tmp_path / "site")
    done = subprocess.run([*rp.command(), "plugins", "--json"], capture_output=True, text=True, timeout=60, env={
        **os.environ, **env})
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    installed = {ep.name for ep in importlib.metadata.entry_points(group="sseplug")}  # this test's process
    assert installed | {"probe_always", "probe_quiet"} <= set(rows), sorted(rows)
    assert rows["probe_quiet"]["distribution"] == "inert-probe" and rows["probe_quiet"]["hooks"] == [
        "sseplug_auth_headers"]
