"""``sseplug record`` and ``sseplug serve --replay``, and the serve_recording fixture, end to end."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import gevent
import pytest

from sseplug import SSEClient, SSERequest
from sseplug.recording import Recording, RecordingError
from sseplug.server import Response, SSEServer
from sseplug.testing import collect

from . import runner_process as rp
from .thirdparty import free_port

# CRLF and CR line ends, a comment, a byte that is not UTF-8, and a pause of 0.6 s
BODY = [b": hi\r\n\r\n", b"id: 1\r\ndata: caf\xc3\xa9 \xff\r\n\r\n", 0.6, b"id: 2\rdata: b\r\r", b"id: 3\ndata: c\n\n"]


def record(url: str, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*rp.command(), "record", url, "-o", str(out), *args], capture_output=True, text=True,
                          timeout=30)


def raw_tail(url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*rp.command(), "tail", url, "--raw", "--reconnect", "on_error", *args],
                          capture_output=True, timeout=30)


def test_a_recording_keeps_every_byte_and_the_timing(tmp_path: Path, sse_server: SSEServer) -> None:
    sse_server.script("/s", Response(body=BODY))
    done = record(sse_server.url("/s"), tmp_path / "s.rec", "--reconnect", "on_error")
    assert done.returncode == 0 and f"bytes in {tmp_path / 's.rec'}" in done.stderr
    text = (tmp_path / "s.rec").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == "# sseplug recording 1" and lines[1].endswith(" open 200 text/event-stream")
    assert lines[-1].endswith(" close eof") and "\\udcff" in text and "café" in text  # readable, binary-safe
    recording = Recording.load(tmp_path / "s.rec")
    assert recording.body() == b"".join(piece for piece in BODY if isinstance(piece, bytes))
    gaps = [b.at - a.at for a, b in zip(recording.pieces, recording.pieces[1:])]
    assert max(gaps) >= 0.5  # the server's pause is in the file


def test_serve_replay_sends_the_recorded_bytes_with_their_timing_and_resumes_after_last_event_id(
    tmp_path: Path, sse_server: SSEServer
) -> None:
    sse_server.script("/s", Response(body=BODY))
    assert record(sse_server.url("/s"), tmp_path / "s.rec", "--reconnect", "on_error").returncode == 0
    port = free_port()
    server = subprocess.Popen([*rp.command(), "serve", "--port", str(port), "--replay", str(tmp_path / "s.rec")],
                              stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        with gevent.Timeout(15):
            assert "replays" in server.stderr.readline()
        url = f"http://127.0.0.1:{port}/"
        started = time.monotonic()
        whole = raw_tail(url)
        assert whole.returncode == 0 and whole.stdout == Recording.load(tmp_path / "s.rec").body()
        assert time.monotonic() - started >= 0.5  # the recorded pause, kept
        resumed = raw_tail(url, "--last-event-id", "1")
        assert resumed.stdout == b"id: 2\rdata: b\r\rid: 3\ndata: c\n\n"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)


def test_record_from_a_server_nobody_here_wrote(tmp_path: Path, starlette_server: str) -> None:
    done = record(f"{starlette_server}/numbers?count=3", tmp_path / "n.rec", "--reconnect", "on_error")
    assert done.returncode == 0, done.stderr
    body = Recording.load(tmp_path / "n.rec").body()
    assert body.count(b"event: number") == 3 and b"id: 3" in body


def test_the_fixture_serves_a_recording_to_a_client_resuming_like_a_browser(
    tmp_path: Path, serve_recording: Callable[..., str], sse_client: SSEClient
) -> None:
    (tmp_path / "incident.rec").write_text(
        "# sseplug recording 1\n0.000 open 200 text/event-stream\n"
        '0.001 bytes "id: 1\\ndata: a\\n\\nid: 2\\ndata: b\\n\\n"\n0.002 bytes "id: 3\\ndata: c\\n\\n"\n0.003 close eof\n',
        encoding="utf-8",
    )
    url = serve_recording(tmp_path / "incident.rec")
    got = collect(sse_client.connect("r", SSERequest(url, reconnect="on_error", last_event_id="2")))
    assert [(e.id, e.data) for e in got] == [("3", "c")]
    looped = collect(sse_client.connect("l", SSERequest(serve_recording(tmp_path / "incident.rec", loop=True))), 7)
    assert [e.data for e in looped] == ["a", "b", "c", "a", "b", "c", "a"]


@pytest.mark.parametrize(
    ("content", "message"),
    [("0.1 bytes nope\n", "line 1: a bytes record holds one JSON string"),
     ("# ok\nsoon open 200\n", "line 2: expected the seconds first, got 'soon'"),
     ("0.1 write \"x\"\n", "line 1: unknown kind 'write'")],
)
def test_a_malformed_recording_is_refused_naming_the_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "bad.rec").write_text(content)
    with pytest.raises(RecordingError, match=message):
        Recording.load(tmp_path / "bad.rec")
    done = subprocess.run([*rp.command(), "serve", "--port", str(free_port()), "--replay", str(tmp_path / "bad.rec")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and message in done.stderr


def test_record_stops_at_count_and_keeps_what_came_before_a_failure(tmp_path: Path, sse_server: SSEServer) -> None:
    done = record(sse_server.url("/feed/x?count=100&interval=0.01"), tmp_path / "c.rec", "-n", "3")
    assert done.returncode == 0 and Recording.load(tmp_path / "c.rec").body().count(b"event: tick") >= 3
    sse_server.script("/gone", Response(body=[b"id: 1\ndata: a\n\n"]), Response(404, {"Content-Type": "text/plain"}))
    failed = record(sse_server.url("/gone"), tmp_path / "f.rec")
    assert failed.returncode == 1 and "HTTP 404" in failed.stderr
    assert b"data: a" in Recording.load(tmp_path / "f.rec").body()


def test_ctrl_c_ends_a_recording_normally(tmp_path: Path, sse_server: SSEServer) -> None:
    out = tmp_path / "i.rec"
    proc = subprocess.Popen([*rp.command(), "record", sse_server.url("/feed/x?count=1000&interval=0.05"), "-o",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while not (out.exists() and b"event: tick" in out.read_bytes()):
            assert time.monotonic() < deadline, "nothing recorded in 15 s"
            gevent.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        rp.kill(proc)
    assert Recording.load(out).body().startswith(b"retry: 200\n\n: hello\n\n")
