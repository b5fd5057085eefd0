"""``sseplug tail``: the real command in a subprocess against real loopback servers."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
from pathlib import Path

import gevent
import pytest

from sseplug.server import DROP, Response, SSEServer

from . import runner_process as rp
from .test_llm_streams import private_ca  # noqa: F401  (a fixture)

TICKS = [b": hi\n\n", b'id: 1\nevent: tick\ndata: {"n": 1}\n\n', b"id: 2\nevent: note\ndata: plain text\n\n",
         b'id: 3\nevent: tick\ndata: {"n": 3}\n\n']


def tail(*args: str, env: dict[str, str] | None = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*rp.command(), "tail", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_events_print_as_readable_blocks_when_piped(sse_server: SSEServer) -> None:
    sse_server.script("/s", Response(body=TICKS))
    done = tail(sse_server.url("/s"), "--reconnect", "on_error")
    assert done.returncode == 0, done.stderr
    blocks = done.stdout.split("\n\n")
    assert blocks[0].startswith("tick  id=1  ") and blocks[0].split("\n")[1:] == ["{", '  "n": 1', "}"]
    assert blocks[1].startswith("note  id=2  ") and blocks[1].endswith("\nplain text")
    assert "\x1b[" not in done.stdout  # no colour codes in a pipe


def test_json_lines_count_event_and_where_filters(sse_server: SSEServer) -> None:
    sse_server.script("/s", Response(body=TICKS))
    url = sse_server.url("/s")
    lines = [json.loads(line) for line in tail(url, "--json", "--reconnect", "on_error").stdout.splitlines()]
    assert lines == [{"id": "1", "event": "tick", "data": {"n": 1}}, {"id": "2", "event": "note", "data": "plain text"},
                     {"id": "3", "event": "tick", "data": {"n": 3}}]
    picked = tail(url, "--json", "--event", "tick", "--where", "data.n > `1`", "--reconnect", "on_error")
    assert [json.loads(line)["id"] for line in picked.stdout.splitlines()] == ["3"]
    first = tail(url, "--json", "-n", "1")  # the stream would reconnect for ever: --count ends it
    assert first.returncode == 0 and [json.loads(line)["id"] for line in first.stdout.splitlines()] == ["1"]


def test_comments_and_raw_bytes(sse_server: SSEServer) -> None:
    sse_server.script("/s", Response(body=TICKS))
    url = sse_server.url("/s")
    shown = tail(url, "--comments", "--json", "--reconnect", "on_error").stdout.splitlines()
    assert json.loads(shown[0]) == {"comment": "hi"} and len(shown) == 4
    raw = subprocess.run([*rp.command(), "tail", url, "--raw", "--reconnect", "on_error"], capture_output=True,
                         timeout=20)
    assert raw.returncode == 0 and raw.stdout == b"".join(TICKS)


def test_a_dropped_stream_resumes_with_last_event_id_as_the_library_does(sse_server: SSEServer) -> None:
    sse_server.script("/s", Response(body=[*TICKS[:3], DROP]), Response(body=[b'retry: 10\nid: 3\ndata: "c"\n\n']),
                      Response(204))
    done = tail(sse_server.url("/s"), "--json", "--last-event-id", "0")
    assert done.returncode == 0 and [json.loads(line)["id"] for line in done.stdout.splitlines()] == ["1", "2", "3"]
    assert [r.headers.get("last-event-id") for r in sse_server.requests_for("/s")] == ["0", "2", "3"]


def test_an_llm_post_with_a_json_body_ends_at_done(sse_server: SSEServer) -> None:
    sse_server.script("/chat", Response(body=[b'data: {"t": "a"}\n\n', b"data: [DONE]\n\n"], stall=30))
    done = tail(sse_server.url("/chat"), "--json-body", '{"stream": true}', "--end-data", "[DONE]", "--json",
                "-H", "Authorization: Bearer ${TAIL_TOKEN}", env={"TAIL_TOKEN": "s3cret"})
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["data"] for line in done.stdout.splitlines()] == [{"t": "a"}, "[DONE]"]
    (request,) = sse_server.requests_for("/chat")
    assert (request.method, request.body, request.headers["authorization"]) == ("POST", b'{"stream":true}',
                                                                              "Bearer s3cret")
    assert request.headers["content-type"] == "application/json"


def test_a_failed_stream_is_one_clear_line_and_exit_1(sse_server: SSEServer) -> None:
    sse_server.script("/s", Response(401, {"Content-Type": "text/plain"}, [b"bad token"], "length"))
    done = tail(sse_server.url("/s"), "-H", "Authorization: Bearer ${TAIL_TOKEN}", env={"TAIL_TOKEN": "s3cret"})
    assert done.returncode == 1 and done.stdout == ""
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("sseplug tail:")]
    assert "HTTP 401" in line and "s3cret" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [(["-H", "no colon"], "-H 'no colon': expected 'Name: value'"),
     (["-H", "X-Key: ${UNSET_FOR_TAIL}"], "-H X-Key: environment variable UNSET_FOR_TAIL is not set"),
     (["--where", "data.["], "--where: invalid JMESPath expression 'data.[': the expression ends too early at column 7"),
     (["--where", "data..x"], "--where: invalid JMESPath expression 'data..x': unexpected '.' at column 6"),
     (["--json-body", "{nope"], "--json-body: not JSON"),
     (["-n", "0"], "--count: expected a number >= 1"),
     (["--cacert", "missing.pem"], "--cacert: 'missing.pem' does not exist"),
     (["-H", "X-Name: 日本"], "-H: 'X-Name': the value holds characters an HTTP header cannot carry")],
)
def test_bad_options_exit_2_naming_the_option(sse_server: SSEServer, args: list[str], message: str) -> None:
    done = tail(sse_server.url("/s"), *args)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_ctrl_c_exits_130(sse_server: SSEServer) -> None:
    proc = subprocess.Popen([*rp.command(), "tail", sse_server.url("/feed/x?count=1000&interval=0.05"), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        with gevent.Timeout(15):
            proc.stdout.readline()  # streaming
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 130
    finally:
        rp.kill(proc)


def test_json_data_is_coloured_on_a_terminal(sse_server: SSEServer) -> None:
    sse_server.script("/s", Response(body=TICKS[:2]))
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*rp.command(), "tail", sse_server.url("/s"), "--reconnect", "on_error"],
                            stdout=follower, stderr=subprocess.DEVNULL, env={**os.environ, "TERM": "xterm-256color"})
    os.close(follower)
    try:
        assert proc.wait(20) == 0  # a few hundred bytes: the terminal's buffer holds them
        os.set_blocking(leader, False)
        output = b""
        while True:
            try:
                piece = os.read(leader, 65536)
            except (BlockingIOError, OSError):  # nothing more, or the terminal closed with the process
                break
            if not piece:
                break
            output += piece
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert b"\x1b[" in output and b"tick" in output and b'"n"' in output


def test_tls_with_cacert_or_insecure(private_ca: tuple[SSEServer, object, Path]) -> None:
    server, _, ca_file = private_ca
    url = server.url("/s")
    trusted = tail(url, "--cacert", str(ca_file), "--json", "--reconnect", "on_error")
    assert trusted.returncode == 0 and json.loads(trusted.stdout)["data"] == "secure", trusted.stderr
    unknown = tail(url, "--json", "--reconnect", "on_error")
    assert unknown.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in unknown.stderr
    insecure = tail(url, "--insecure", "--json", "--reconnect", "on_error")
    assert insecure.returncode == 0 and json.loads(insecure.stdout)["data"] == "secure", insecure.stderr


def test_tail_against_a_server_nobody_here_wrote(starlette_server: str) -> None:
    done = tail(f"{starlette_server}/numbers?count=3", "--json", "--last-event-id", "1", "--reconnect", "on_error")
    assert done.returncode == 0, done.stderr
    assert [(line["id"], line["event"]) for line in map(json.loads, done.stdout.splitlines())] == [
        ("2", "number"), ("3", "number")]
