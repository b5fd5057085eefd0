"""Credentials reach the server unchanged and no output: the runner with hook tracing at DEBUG level,
and a plugin manager traced in the library."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sseplug import SSEClient, SSERequest, hookimpl
from sseplug.plugins import create_plugin_manager
from sseplug.server import Response, SSEServer
from sseplug.testing import DONE, collect

from . import runner_process as rp

TOKEN = "tok-5f1c9e"  # unique strings, so finding one in the output can only mean a leak
KEY = "key-8d2a7b"
COOKIE = "sid-3e6b0c"


def test_runner_sends_credentials_and_prints_none_with_tracing_at_debug(
    tmp_path: Path, sse_server: SSEServer
) -> None:
    stream = Response(
        headers={"Content-Type": "text/event-stream", "Set-Cookie": f"session={COOKIE}; HttpOnly"},
        body=[b"retry: 10\nid: 1\ndata: hello\n\n"],  # reconnect at once, to the 204
    )
    sse_server.script("/s", stream, DONE)
    config = tmp_path / "run.toml"
    config.write_text(
        '[runner]\nstate_dir = "state"\nshutdown_timeout = 5\n'
        f'[[connections]]\nid = "s"\nurl = "{sse_server.url("/s")}"\n'
        'headers = { Authorization = "Bearer ${TOKEN}", X-Api-Key = "${KEY}" }\n'
    )
    env = {"SSEPLUG_TRACE_PLUGINS": "1", "TOKEN": TOKEN, "KEY": KEY}
    proc = rp.start("--log-level", "DEBUG", "run", str(config), env=env, cwd=tmp_path)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        rp.kill(proc)
    assert proc.returncode == 0, err
    sent = sse_server.requests_for("/s")[0].headers
    assert (sent["authorization"], sent["x-api-key"]) == (f"Bearer {TOKEN}", KEY)
    assert '"data": "hello"' in out
    assert "sseplug_connection_opened" in err and "sseplug_auth_headers" in err  # tracing was on
    for name, secret in (("token", TOKEN), ("key", KEY), ("cookie", COOKIE)):
        assert secret not in out, f"the {name} is on stdout"
        leaked = [line for line in err.splitlines() if secret in line]
        assert leaked == [], f"the {name} is on stderr"


class TokenPlugin:
    """Adds credentials to every request, as a token-refreshing plugin would."""

    @hookimpl
    def sseplug_auth_headers(self) -> dict[str, str]:
        return {"Authorization": "Bearer zzz", "X-Session": "zzz-session"}


def test_traced_plugin_manager_logs_no_auth_header_a_plugin_returns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, sse_server: SSEServer
) -> None:
    monkeypatch.setenv("SSEPLUG_TRACE_PLUGINS", "1")
    caplog.set_level(logging.DEBUG)
    pm = create_plugin_manager(load_entry_points=False, extra=[("token", TokenPlugin())])
    sse_server.script("/s", Response(body=[b"data: 1\n\n"]), DONE)
    with SSEClient(plugin_manager=pm) as client:
        collect(client.connect("s", SSERequest(sse_server.url("/s"), retry=False)))
    assert sse_server.requests_for("/s")[0].headers["authorization"] == "Bearer zzz"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "sseplug_auth_headers" in logged  # the hook was traced
    assert [line for line in logged.splitlines() if "zzz" in line] == []


@pytest.mark.parametrize("status", [401, "refused"])
def test_a_token_in_a_url_from_the_environment_reaches_the_server_and_no_output(
    tmp_path: Path, sse_server: SSEServer, status: object
) -> None:
    """``?sig=`` would be hidden by its name; ``?x=`` only because its value came from ``${ENV}``:
    the ERROR line, the exit summary, the tracing and the hook log show ``${URL_SECRET}``."""
    sse_server.script("/s", Response(401, {"Content-Type": "text/plain"}, [b"no"], "length"))
    base = sse_server.url("/s") if status == 401 else "http://127.0.0.1:1/s"
    config = tmp_path / "run.toml"
    config.write_text(
        '[runner]\nstate_dir = "state"\nshutdown_timeout = 5\n'
        f'[[connections]]\nid = "s"\nurl = "{base}?x=${{URL_SECRET}}&n=2"\nmax_retries = 0\n'
    )
    proc = rp.start("--log-level", "DEBUG", "run", str(config), env={"SSEPLUG_TRACE_PLUGINS": "1", "URL_SECRET": TOKEN},
                    cwd=tmp_path)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        rp.kill(proc)
    assert proc.returncode == 1, err
    if status == 401:
        assert sse_server.requests_for("/s")[0].query["x"] == TOKEN  # sent as it is
    assert "x=${URL_SECRET}&n=2" in err  # the failure names the URL as written
    leaked = [line for line in (out + err).splitlines() if TOKEN in line]
    assert leaked == [], "the token is in the output"
