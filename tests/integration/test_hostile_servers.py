"""Servers that misbehave on purpose must never freeze, crash, bloat or leak sseplug (issue 12).

Bounds on time here are generous (seconds where the behaviour takes milliseconds): each test
tells "bounded" from "for ever" or "thousands", never measures speed.
"""

from __future__ import annotations

import logging
import signal
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import gevent
import pytest
import trustme
import urllib3

from sseplug import SSEClient, SSERequest, SSEResponse, hookimpl
from sseplug.errors import NetworkError, PluginError, RedirectError, RetriesExhaustedError
from sseplug.models import MAX_WAIT
from sseplug.parser import MAX_RETRY_MS
from sseplug.plugins import PluginManager
from sseplug.redaction import Secret
from sseplug.server import DROP, Response, SSEServer
from sseplug.testing import DONE, collect

from . import hostile
from . import runner_process as rp
from .test_runner import checkpoint, connection, write_config
from .thirdparty import free_port





# -- fairness ----------------------------------------------------------------------------------


@pytest.mark.parametrize("iterate", [False, True], ids=["handlers", "iterator"])
def test_a_flooding_stream_leaves_timers_and_other_streams_their_turn(
    sse_server: SSEServer, sse_client: SSEClient, iterate: bool
) -> None:
    sse_server.script("/slow", Response(body=[x for n in range(20) for x in (0.05, b"data: %d\n\n" % n)]))
    lags: list[float] = []

    def tick() -> None:  # a timer elsewhere in the process: how late does it fire?
        for _ in range(30):
            asked = time.monotonic()
            gevent.sleep(0.05)
            lags.append(time.monotonic() - asked - 0.05)

    with hostile.flood_server(seconds=6) as url:
        flood = sse_client.connect("flood", SSERequest(url, retry=False), iterate=iterate)
        drain = gevent.spawn(lambda: sum(1 for _ in flood)) if iterate else None
        with gevent.Timeout(1, AssertionError("the flood did not start")):
            while flood.connection.events_total < 100_000:
                gevent.sleep(0.01)
        ticker = gevent.spawn(tick)
        slow = collect(sse_client.connect("slow", SSERequest(sse_server.url("/slow"), retry=False)), timeout=5)
        ticker.join(5)
        assert flood.state == "open" and flood.is_open  # still flooding meanwhile
        sse_client.close("flood")
        if drain is not None:
            drain.join(5)
    assert [e.data for e in slow] == list(range(20))
    assert len(lags) == 30 and max(lags) < 0.5, f"timer lags under a flood: max {max(lags):.3f}s"


# -- Last-Event-ID -----------------------------------------------------------------------------


@pytest.mark.parametrize("event_id", ["日本", "🦀-7", "café"])
def test_last_event_id_is_sent_as_utf8(sse_server: SSEServer, sse_client: SSEClient, fast_retry: None,
                                       event_id: str) -> None:
    sse_server.script("/s", Response(body=[f"id: {event_id}\ndata: a\n\n".encode(), DROP]), DONE)
    got = collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    assert [(e.id, e.data) for e in got] == [(event_id, "a")]
    resumed = sse_server.requests_for("/s")[1].headers["last-event-id"]  # the server decodes Latin-1
    assert resumed.encode("latin-1").decode("utf-8") == event_id


def test_a_plugin_header_http_cannot_carry_fails_with_a_plugin_error_before_any_request(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Callable[..., object]
) -> None:
    class Auth:
        @hookimpl
        def sseplug_auth_headers(self) -> dict[str, str]:
            return {"Authorization": "Bearer 日本-token"}

    register_plugin(Auth(), "auth")
    sse_server.script("/s", DONE)
    with pytest.raises(Exception, match="sseplug_auth_headers returned header 'Authorization': the value holds") as failure:
        collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    assert type(failure.value).__name__ == "PluginError" and "token" not in str(failure.value)
    assert sse_server.requests_for("/s") == []  # it was an internal error (a crash) before


def test_a_checkpoint_no_header_can_carry_fails_with_a_plugin_error(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Callable[..., object]
) -> None:
    class Store:
        @hookimpl(tryfirst=True)
        def sseplug_checkpoint_load(self) -> str:
            return "1\r\nX-Injected: yes"

    register_plugin(Store(), "store")
    sse_server.script("/s", DONE)
    with pytest.raises(Exception, match="Last-Event-ID header can carry") as failure:
        collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    assert type(failure.value).__name__ == "PluginError" and sse_server.requests_for("/s") == []


# -- redirects ---------------------------------------------------------------------------------


@pytest.fixture
def two_faced() -> Iterator[tuple[hostile.TwoFacedServer, urllib3.PoolManager]]:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with hostile.TwoFacedServer(context) as server, ca.cert_pem.tempfile() as ca_file:
        yield server, urllib3.PoolManager(ca_certs=ca_file)


def test_credentials_are_dropped_when_https_redirects_to_http_on_the_same_host_and_port(
    two_faced: tuple[hostile.TwoFacedServer, urllib3.PoolManager], sseplug_plugins: PluginManager,
    register_plugin: Callable[..., object],
) -> None:
    class Auth:
        @hookimpl
        def sseplug_auth_headers(self) -> dict[str, str]:
            return {"X-Session": "s3ss"}

    register_plugin(Auth(), "auth")
    server, http = two_faced
    plain = server.url("/plain")  # http://127.0.0.1:PORT/plain
    secure = plain.replace("http://", "https://").replace("/plain", "/secure")
    server.script("/secure", Response(302, {"Location": plain}))
    server.script("/plain", Response(body=[b"data: downgraded\n\n"]))
    credentials = {"Authorization": "Bearer t0ken", "Cookie": "s=c00kie", "Proxy-Authorization": "Basic cHJ4"}
    with SSEClient(plugin_manager=sseplug_plugins, http=http) as client:
        headers = {**credentials, "X-Api-Key": Secret("k3y"), "X-Trace": "t"}  # Secret: from ${ENV}
        got = collect(client.connect("s", SSERequest(secure, headers=headers, retry=False)))
    assert [e.data for e in got] == ["downgraded"]
    first, second = server.requests_for("/secure")[0], server.requests_for("/plain")[0]
    sent = {"authorization", "cookie", "proxy-authorization", "x-api-key", "x-session"}
    assert sent <= set(first.headers)
    assert not sent & set(second.headers)
    assert second.headers["x-trace"] == "t"


def test_credentials_stay_on_a_same_origin_redirect(sse_server: SSEServer, sse_client: SSEClient) -> None:
    sse_server.script("/old", Response(307, {"Location": sse_server.url("/new")}))
    sse_server.script("/new", DONE)
    collect(sse_client.connect("s", SSERequest(sse_server.url("/old"), headers={"Authorization": "Bearer t"})))
    assert sse_server.requests_for("/new")[0].headers["authorization"] == "Bearer t"


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("http://[::1", "malformed Location 'http://\\[::1'"),
        ("http://127.0.0.1:99999/x", "malformed Location 'http://127.0.0.1:99999/x'"),
        ("ftp://127.0.0.1/feed", "redirect to 'ftp://127.0.0.1/feed', which is not an http:// or https:// URL"),
        ("javascript:alert(1)", "which is not an http:// or https:// URL"),
        ("http://:8080/no-host", "which is not an http:// or https:// URL with a host"),
    ],
)
def test_a_redirect_that_cannot_be_followed_is_a_redirect_error_and_not_retried(
    sse_server: SSEServer, sse_client: SSEClient, fast_retry: None, location: str, expected: str
) -> None:
    sse_server.script("/s", Response(302, {"Location": location}))
    with pytest.raises(RedirectError, match=expected):
        collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    assert len(sse_server.requests_for("/s")) == 1


# -- server-controlled waits -------------------------------------------------------------------


def test_retry_0_with_one_event_per_response_is_paced_not_hammered(
    sse_server: SSEServer, sse_client: SSEClient
) -> None:
    sse_server.script("/s", Response(body=[b"retry: 0\ndata: x\n\n"]))
    stream = sse_client.connect("s", SSERequest(sse_server.url("/s")), iterate=False)
    gevent.sleep(2.0)
    sse_client.close("s")
    requests = len(sse_server.requests_for("/s"))
    # the default policy: 10 ms floor doubled per reconnect with full jitter, about 10 in 2 s
    assert 3 <= requests <= 40, f"{requests} requests in 2 s"
    assert stream.error is None  # a server closing after its events is not failing: no give-up


def test_a_small_server_retry_is_honoured_for_the_first_reconnects(
    sse_server: SSEServer, sse_client: SSEClient
) -> None:
    sse_server.script("/s", Response(body=[b"retry: 20\ndata: x\n\n"]), Response(body=[b"data: y\n\n"]), DONE)
    got = collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    assert [e.data for e in got] == ["x", "y"]
    first, second, third = sse_server.requests_for("/s")
    assert second.received_at - first.received_at < 0.5  # at most 20 ms: not the default 1 s
    assert third.received_at - second.received_at < 0.5  # at most 40 ms


@pytest.mark.parametrize("json_plugin", [True, False], ids=["json", "no-json"])
@pytest.mark.parametrize("digits", [400, 5000])
def test_an_absurd_retry_value_neither_ends_the_stream_nor_loses_its_event(
    sse_server: SSEServer, sse_client: SSEClient, sseplug_plugins: PluginManager, fast_retry: None,
    digits: int, json_plugin: bool,
) -> None:
    if not json_plugin:
        sseplug_plugins.unregister(name="json")
    sse_server.script("/s", Response(body=[b"retry: " + b"9" * digits + b"\ndata: 1\n\n", b"data: after\n\n"]), DONE)
    got = collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    assert [e.data for e in got] == [1 if json_plugin else "1", "after"]
    assert got[0].retry == MAX_RETRY_MS


def test_a_decoder_that_raises_is_blamed_and_the_events_before_it_are_kept(
    sse_server: SSEServer, sse_client: SSEClient, sseplug_plugins: PluginManager
) -> None:
    def decode(text: str) -> object:
        if text == "boom":
            raise ValueError("cannot decode boom")
        return text.upper()

    class Upper:
        @hookimpl
        def sseplug_deserialize(self, event: SSEResponse) -> object:
            return decode(event.data)

    Upper.sseplug_deserialize.text_decoder = decode  # type: ignore[attr-defined]
    sseplug_plugins.unregister(name="json")
    sseplug_plugins.register(Upper(), "upper")
    sse_server.script("/s", Response(body=[b"id: 1\ndata: a\n\nid: 2\ndata: boom\n\nid: 3\ndata: c\n\n"]))
    got: list[SSEResponse] = []
    with pytest.raises(PluginError) as failure, gevent.Timeout(10):
        for event in sse_client.connect("s", SSERequest(sse_server.url("/s"))):
            got.append(event)
    assert [(e.id, e.data) for e in got] == [("1", "A")]
    assert (failure.value.plugin, failure.value.hook, failure.value.event_id) == ("upper", "sseplug_deserialize", "2")
    assert "ValueError: cannot decode boom" in str(failure.value)


@pytest.mark.parametrize("value", ["99999999999", "9" * 401, "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_retry_after_is_capped_and_the_cap_logged(
    sse_server: SSEServer, sse_client: SSEClient, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    sse_server.script("/s", Response(503, {"Retry-After": value, "Content-Type": "text/html"}))
    caplog.set_level(logging.INFO, logger="sseplug")
    stream = sse_client.connect("s", SSERequest(sse_server.url("/s")), iterate=False)
    with gevent.Timeout(5, AssertionError("never started waiting")):
        while stream.connection.state != "waiting":
            gevent.sleep(0.01)
    sse_client.close("s")
    messages = [record.getMessage() for record in caplog.records]
    assert any(f"reconnecting in {MAX_WAIT:.2f}s" in message for message in messages), messages
    assert any("Retry-After" in message and "waiting 21600 s instead" in message for message in messages)


# -- the response head -------------------------------------------------------------------------


@pytest.mark.parametrize("handler", [hostile.silent, hostile.dripping_head], ids=["silent", "dripping"])
def test_a_response_head_must_be_complete_within_head_timeout(
    sse_client: SSEClient, handler: Callable[..., None]
) -> None:
    with hostile.raw_server(handler) as base:
        started = time.monotonic()
        with pytest.raises(NetworkError, match=r"no complete response head within head_timeout \(1 s\)"):
            collect(sse_client.connect("s", SSERequest(f"{base}/s", head_timeout=1, retry=False)), timeout=10)
    assert time.monotonic() - started < 5


def test_a_late_head_is_a_network_error_and_retried(sse_client: SSEClient, fast_retry: None) -> None:
    connections: list[object] = []

    def count_then_hang(sock: object) -> None:
        connections.append(sock)
        hostile.silent(sock)  # type: ignore[arg-type]

    with hostile.raw_server(count_then_hang) as base:
        request = SSERequest(f"{base}/s", head_timeout=0.3, max_retries=2)
        with pytest.raises(RetriesExhaustedError) as failure:
            collect(sse_client.connect("s", request), timeout=10)
    assert isinstance(failure.value.__cause__, NetworkError) and len(connections) == 3


# -- the runner --------------------------------------------------------------------------------

COUNTING_SINK = '''
from sseplug import hookimpl

@hookimpl
def sseplug_handle_event(event):
    pass  # a sink that keeps up with any flood (the stdout sink would block on a full pipe)
'''


def test_the_runner_answers_health_and_stops_on_sigterm_under_a_flood(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "quiet_sink.py").write_text(COUNTING_SINK)
    with hostile.flood_server(seconds=20) as url:
        config = write_config(tmp_path, connection("flood", url, "retry = false"),
                              f'http_listen = "127.0.0.1:{port}"\nplugins = {{ modules = ["quiet_sink"], disable = ["skeleton"] }}')
        proc = rp.start("run", str(config), cwd=tmp_path)
        try:
            answered = []
            with gevent.Timeout(10, AssertionError(f"/health never answered: {answered}")):
                while len(answered) < 5:  # five answers in a row while the flood runs
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as reply:
                            answered.append(reply.status)
                    except OSError:
                        answered.clear()
                        gevent.sleep(0.1)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            status, _, err = rp.finish(proc, timeout=10)
        finally:
            rp.kill(proc)
    assert answered == [200] * 5 and status == 0, err
    assert time.monotonic() - started < 8


def test_a_runner_checkpoint_with_a_utf8_id_resumes_after_restart(tmp_path: Path, sse_server: SSEServer) -> None:
    sse_server.script("/s", Response(body=["id: 日本\ndata: a\n\n".encode()]), DONE)
    config = write_config(tmp_path, connection("u", sse_server.url("/s")))
    for run in range(2):  # the second run starts from the stored checkpoint
        status, lines, err = rp.finish(rp.start("run", str(config), cwd=tmp_path))
        assert status == 0, err
    assert checkpoint(tmp_path, "u") == "日本"
    sent = [r.headers.get("last-event-id") for r in sse_server.requests_for("/s")]
    assert [value.encode("latin-1").decode("utf-8") for value in sent[1:]] == ["日本", "日本"]
