"""Failures are visible while the runner runs: the ERROR line, /ready, /status, per-connection metrics."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import gevent
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sseplug import SSERequest
from sseplug.connection import Connection
from sseplug.plugins import create_plugin_manager
from sseplug.run.metrics import MetricsServer
from sseplug.server import Response, SSEServer

from . import runner_process as rp
from .test_runner import connection, write_config
from .thirdparty import free_port


TICKS = b"".join(b"id: %d\nevent: tick\ndata: {\"n\": %d}\n\n" % (n, n) for n in range(1, 6))


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_a_failed_stream_is_reported_at_once_and_everywhere(tmp_path: Path, sse_server: SSEServer) -> None:
    port = free_port()
    sse_server.script("/bad", Response(401, {"Content-Type": "application/json"}, [b'{"error": "bad token"}'], "length"))
    sse_server.script("/good", Response(body=[TICKS], stall=60))
    good_url = sse_server.url("/good").replace("http://", "http://user:pw@") + "?token=s3cret&tenant=7"
    bad_url = sse_server.url("/bad").replace("http://", "http://user:pw@") + "?api_key=s3cret"
    config = write_config(
        tmp_path,
        connection("bad", bad_url, 'headers = { Authorization = "Bearer s3cret" }')
        + connection("good", good_url, 'events = ["tick"]\nwhere = "data.n > `2`"'),
        f'http_listen = "127.0.0.1:{port}"',
    )
    proc = rp.start("run", str(config), cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        line = rp.stderr_line(proc, "failed for good")
        seen_at = time.monotonic()
        (request,) = sse_server.requests_for("/bad")
        assert seen_at - request.received_at < 1.0  # at once, not at shutdown
        assert "connection 'bad'" in line and "HTTP 401" in line and "check the URL, method and credentials" in line
        assert sse_server.url("/bad") + "?api_key=<redacted>" in line and "s3cret" not in line and "pw@" not in line
        rp.read_events(proc, 3)  # the good stream's events 3, 4, 5 (1 and 2 filtered out)

        status, body = get(f"{base}/ready")
        assert status == 503
        ready = json.loads(body)
        assert ready["ready"] is False and [c["id"] for c in ready["waiting"]] == ["bad"]
        assert ready["waiting"][0]["state"] == "failed" and "HTTP 401" in ready["waiting"][0]["error"]
        assert "s3cret" not in body.decode() and "pw@" not in body.decode()

        status, body = get(f"{base}/status")
        by_id = {c["id"]: c for c in json.loads(body)["connections"]}
        good, bad = by_id["good"], by_id["bad"]
        assert status == 200 and good["state"] == "open" and bad["state"] == "failed"
        assert good["url"] == sse_server.url("/good") + "?token=<redacted>&tenant=7"
        assert (good["last_event_id"], good["events"], good["filtered"], good["bytes"]) == ("5", 5, 2, len(TICKS))
        assert good["reconnects"] == 0 and good["handler_errors"] == 0 and good["dead_letters"] == 0
        assert abs(good["last_event_time"] - time.time()) < 60 and good["last_error"] is None
        assert bad["last_error"].startswith("HTTPStatusError: server answered HTTP 401")
        assert "s3cret" not in body.decode() and "pw@" not in body.decode()

        status, body = get(f"{base}/metrics")
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(body.decode()) for s in family.samples}
        assert samples[("sseplug_events_total", (("connection", "good"),))] == 5
        assert samples[("sseplug_filtered_events_total", (("connection", "good"),))] == 2
        assert samples[("sseplug_connection_state", (("connection", "bad"), ("state", "failed")))] == 1
        assert samples[("sseplug_connection_state", (("connection", "good"), ("state", "failed")))] == 0
        assert samples[("sseplug_last_event_timestamp_seconds", (("connection", "good"),))] > 0
        assert get(f"{base}/health")[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        status, _, err = rp.finish(proc)
    assert status == 1 and "exit status 1: 1 connection(s) failed for good: ['bad']" in err
    assert "s3cret" not in err and "pw@" not in err


def test_ready_when_every_stream_is_open_or_ended_cleanly(tmp_path: Path, sse_server: SSEServer) -> None:
    port = free_port()
    sse_server.script("/done", Response(body=[b"data: x\n\n"]))
    sse_server.script("/open", Response(body=[b"data: y\n\n"], stall=60))
    config = write_config(tmp_path, connection("done", sse_server.url("/done"), 'reconnect = "on_error"')
                          + connection("open", sse_server.url("/open")), f'http_listen = "127.0.0.1:{port}"')
    proc = rp.start("run", str(config), cwd=tmp_path)
    try:
        rp.read_events(proc, 2)
        deadline = time.monotonic() + 10
        while get(f"http://127.0.0.1:{port}/ready")[0] != 200:
            assert time.monotonic() < deadline, "never ready"
            gevent.sleep(0.05)
        assert json.loads(get(f"http://127.0.0.1:{port}/ready")[1]) == {"ready": True, "waiting": []}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert rp.finish(proc)[0] == 0


def test_label_values_are_escaped_whatever_the_connection_id() -> None:
    """Library users name connections freely: quotes, backslashes and newlines survive a scrape."""
    odd = 'a"b\\c\nd'
    plugins = create_plugin_manager(load_entry_points=False)
    connection_ = Connection(odd, SSERequest("http://127.0.0.1:1/"), http_for=lambda url: None,  # type: ignore[arg-type, return-value]
                             plugins=plugins)
    connection_.events_total = 7
    server = MetricsServer(("127.0.0.1", 0), lambda: [connection_])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(server)
    text = generate_latest(registry).decode()
    assert 'connection="a\\"b\\\\c\\nd"' in text
    values: dict[str, Any] = {s.labels["connection"]: s.value for family in text_string_to_metric_families(text)
                              if family.name == "sseplug_events" for s in family.samples}
    assert values == {odd: 7}
