"""The ``http`` plugin (sseplug-http) against a real receiving service (Flask under werkzeug, in its own
process) that fails on purpose: 503 twice, a 429 with Retry-After, a hang past the timeout, a 400 for
one batch, a restart. The events it took, deduplicated by key, are exactly the stream's events."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import gevent
import pytest

import sseplug_http
from sseplug import SSEClient, SSEResponse, hookimpl
from sseplug.errors import PluginError
from sseplug.server import Response, SSEServer
from sseplug.testing import DONE
from sseplug_http import HttpSink, event_key

from . import sink_kit
from .http_receiver import Receiver
from .sink_kit import HubWatch, wait_until

TIMEOUT = 20.0
MAX_HUB_STALL = 0.5  # far above a busy machine's noise, far below a blocking request (1.5 s)
TOKEN = "hk-62b0f9a4"  # unique: finding it in any output can only mean a leak

make_config = functools.partial(sink_kit.make_config, plugin="http")
drain = functools.partial(sink_kit.drain, timeout=TIMEOUT, limit=10_000)


@pytest.fixture
def sink(register_plugin: Callable[..., object]) -> Iterator[HttpSink]:
    plugin = HttpSink()
    yield from sink_kit.registered(register_plugin, plugin, "http", plugin.sseplug_unconfigure)


@pytest.fixture
def receivers(tmp_path: Path) -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(*args: str, tls: tuple[str, str] | None = None) -> Receiver:
        receiver = Receiver(tmp_path, *args, tls=tls).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


class CheckpointSpy:
    """A checkpoint store (``trylast``, as the built-in sqlite): at each save, what the receiver had."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.saves: list[tuple[str, set[str]]] = []

    @hookimpl(trylast=True)
    def sseplug_checkpoint_save(self, last_event_id: str) -> None:
        taken = {event["id"] for request in self.receiver.received() if request["path"] != "/dead"
                 for event in request["events"]}
        self.saves.append((last_event_id, taken))


def test_the_events_taken_deduplicated_by_key_are_exactly_the_streams_through_every_failure(
    tmp_path: Path, sse_server: SSEServer, sink: HttpSink, receivers: Callable[..., Receiver],
    sse_client_for: Callable[..., SSEClient], register_plugin: Callable[..., object], fast_retry: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """503 twice, a 429 with Retry-After: 1, a hang past the 1 s timeout, a 400 for the batch holding
    event 120 (its events dead-lettered to /dead), and a restart of the receiver mid-stream."""
    receiver = receivers("--fail", "503,503,429,hang", "--reject-id", "120", "--hang", "2")
    spy = CheckpointSpy(receiver)
    register_plugin(spy, "spy")
    table = (f'url = "{receiver.url("/in-{connection}")}"\ndead_letter_url = "{receiver.url("/dead")}"\n'
             f'headers = {{ Authorization = "Bearer {TOKEN}" }}\nbatch_max = 20\ntimeout = 1\nmax_wait = 2')
    config = make_config(tmp_path, table, ids=("w",),
                         extra='sinks = ["http"]\nerrors = { retries = 0, action = "dead_letter" }')
    client = sse_client_for(config)
    total = 300
    job = gevent.spawn(drain, client, "w", sse_server.url(f"/feed/w?count={total}&interval=0.004"), config)
    wait_until(lambda: sum(len(r["events"]) for r in receiver.received()) >= 200 or job.ready(), TIMEOUT,
               lambda: f"the receiver took {sum(len(r['events']) for r in receiver.received())} events")
    receiver.stop()  # a restart: the plugin meets refused connections meanwhile
    gevent.sleep(0.4)
    receiver.start("--reject-id", "120")
    job.get(timeout=TIMEOUT)

    requests = receiver.received()
    taken = [event for request in requests if request["path"] == "/in-w" for event in request["events"]]
    dead = [event for request in requests if request["path"] == "/dead" for event in request["events"]]
    expected = {f"w:{n}" for n in range(1, total + 1)}
    assert {event["key"] for event in taken} | {letter["key"] for letter in dead} == expected
    assert all(event["data"] == {"feed": "w", "seq": int(event["id"])} for event in taken)
    refused = {letter["key"] for letter in dead}
    assert "w:120" in refused and len(refused) <= 20 and not refused & {event["key"] for event in taken}
    assert {letter["plugin"] for letter in dead} == {"http"} and all("HTTP 400" in letter["error"] for letter in dead)
    for request in requests:  # the Idempotency-Key is the hash of the request's keys
        keys = [event["key"] for event in request["events"]]
        assert request["idempotency_key"] == hashlib.sha256("\n".join(keys).encode()).hexdigest()[:32]
        assert request["authorization"] == f"Bearer {TOKEN}"
    for checkpoint, had in spy.saves:  # the checkpoint moved only past events the receiver had taken
        assert checkpoint in had or f"w:{checkpoint}" in refused, checkpoint
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name == "sseplug.http"]
    assert len(errors) == 1 and "/in-w refused a batch" in errors[0] and "HTTP 400" in errors[0], errors
    assert "bad batch: event 120 rejected" in errors[0]
    assert TOKEN not in caplog.text, "the header's value is in the log"


@pytest.mark.parametrize("action", ["skip", "stop"])
def test_a_refused_batch_is_skipped_or_stops_the_connection_as_the_errors_policy_says(
    tmp_path: Path, sse_server: SSEServer, sink: HttpSink, receivers: Callable[..., Receiver],
    sse_client_for: Callable[..., SSEClient], fast_retry: None, action: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """The URL holds a credential (user, password, ?token=): the ERROR line shows it hidden."""
    receiver = receivers("--reject-id", "2")
    url = receiver.url("/in?token=tq-hunter2x").replace("://", "://hook:pw-hunter2x@")
    config = make_config(tmp_path, f'url = "{url}"\nbatch_max = 1', ids=("s",),
                         extra=f'errors = {{ retries = 0, action = "{action}" }}')
    client = sse_client_for(config)
    body = [b"id: 1\ndata: one\n\nid: 2\ndata: two\n\nid: 3\ndata: three\n\n"]
    sse_server.script("/s", Response(body=body), Response(body=body), DONE)
    if action == "stop":
        with pytest.raises(PluginError, match="HTTP 400"):
            drain(client, "s", sse_server.url("/s"), config)
        assert [e["id"] for r in receiver.received() for e in r["events"]] == ["1", "1"]  # 1 again, then the stop
        return
    drain(client, "s", sse_server.url("/s"), config)
    assert [e["id"] for r in receiver.received() for e in r["events"]] == ["1", "1", "3"]  # 1 again: read again
    (line,) = [r.getMessage() for r in caplog.records if r.name == "sseplug.http" and r.levelno == logging.ERROR]
    assert f"POST http://127.0.0.1:{receiver.port}/in?token=<redacted> refused a batch of 1 events" in line, line
    assert "HTTP 400: 'bad batch: event 2 rejected" in line and "hunter2x" not in caplog.text


def test_ndjson_with_headers_and_a_slow_destination_holds_only_its_own_stream(
    tmp_path: Path, sse_server: SSEServer, sink: HttpSink, receivers: Callable[..., Receiver],
    sse_client_for: Callable[..., SSEClient],
) -> None:
    receiver = receivers("--hang", "1.5")
    table = (f'url = "{receiver.url("/{connection}")}"\nformat = "ndjson"\n'
             f'headers = {{ Authorization = "Bearer {TOKEN}", X-Tenant = "t1" }}')
    client = sse_client_for(make_config(tmp_path, table, ids=("slow-a", "fast-b")))
    sse_server.script("/slow", Response(body=[b"id: 1\ndata: a\n\n", b"data: no id\n\n"]), DONE)
    watch = HubWatch()
    try:
        slow = gevent.spawn(drain, client, "slow-a", sse_server.url("/slow"))
        wait_until(lambda: any(r["started"] for r in receiver.received()), TIMEOUT,
                   lambda: "the slow request did not reach the receiver")
        fast = drain(client, "fast-b", sse_server.url("/feed/fast-b?count=200&interval=0"))
        slow_pending = not slow.ready() and not any(r["path"] == "/slow-a" and r["events"] for r in receiver.received())
        slow.get(timeout=TIMEOUT)
    finally:
        watch.stop()
    assert len(fast) == 200 and slow_pending, "the fast stream ended only after the slow destination answered"
    assert watch.longest < MAX_HUB_STALL, watch.longest
    requests = receiver.received()
    assert {r["content_type"] for r in requests} == {"application/x-ndjson"}
    slow_events = [e for r in requests if r["path"] == "/slow-a" for e in r["events"]]
    assert [(e["id"], e["data"], e["key"]) for e in slow_events] == [
        ("1", "a", "slow-a:1"),
        ("1", "no id", "slow-a:1#" + hashlib.sha256(b"data: no id").hexdigest()[:16]),  # no id: a hash of the block
    ]
    assert [e["data"]["seq"] for r in requests if r["path"] == "/fast-b" for e in r["events"]] == list(range(1, 201))


def test_linger_puts_several_connections_batches_in_one_request(
    tmp_path: Path, sse_server: SSEServer, sink: HttpSink, receivers: Callable[..., Receiver],
    sse_client_for: Callable[..., SSEClient],
) -> None:
    receiver = receivers()
    ids = ("l0", "l1", "l2")
    client = sse_client_for(make_config(tmp_path, f'url = "{receiver.url("/hooks")}"\nlinger = 0.3', ids=ids))
    for cid in ids:
        sse_server.script(f"/{cid}", Response(body=[f"id: 1\ndata: {cid}\n\n".encode()]), DONE)
    jobs = [gevent.spawn(drain, client, cid, sse_server.url(f"/{cid}")) for cid in ids]
    gevent.joinall(jobs, timeout=TIMEOUT, raise_error=True)
    requests = receiver.received()
    assert sorted(e["key"] for r in requests for e in r["events"]) == ["l0:1", "l1:1", "l2:1"]
    assert len(requests) == 1, requests


def test_tls_with_a_ca_bundle_and_a_client_certificate_delivers_and_an_unverified_receiver_stops_the_connection(
    tmp_path: Path, sse_server: SSEServer, sink: HttpSink, receivers: Callable[..., Receiver],
    sse_client_for: Callable[..., SSEClient],
) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(tmp_path / "server.pem")
    ca.issue_cert("sseplug-client").private_key_and_cert_chain_pem.write_to_path(tmp_path / "client.pem")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    receiver = Receiver(tmp_path, "--client-ca", str(tmp_path / "ca.pem"),  # it asks for a client certificate
                        tls=(str(tmp_path / "server.pem"), str(tmp_path / "server.pem")))
    receiver.start()
    try:
        sse_server.script("/s", Response(body=[b"id: 1\ndata: over tls\n\n"]), DONE)
        client = sse_client_for(make_config(tmp_path, f'url = "{receiver.url("/tls")}"\nverify = "ca.pem"\n'
                                                      'cert = "client.pem"'))
        drain(client, "c", sse_server.url("/s"))
        assert [e["data"] for r in receiver.received() for e in r["events"]] == ["over tls"]
        client.shutdown()
    finally:
        receiver.stop()
    receiver = receivers(tls=(str(tmp_path / "server.pem"), str(tmp_path / "server.pem")))
    other = HttpSink()  # verify = true: the system's CAs do not know the test CA
    other.sseplug_configure(make_config(tmp_path, f'url = "{receiver.url("/tls")}"'))
    try:
        with pytest.raises(sseplug_http.DeliveryError, match="TLS failed") as caught:
            other._post(receiver.url("/tls"), b"[]", "application/json", "k", SimpleNamespace(id="d", stopping=False), [])
        assert caught.value.retryable is False and receiver.received() == []
    finally:
        other.sseplug_unconfigure()


@pytest.mark.parametrize(
    ("table", "key", "text"),
    [
        ("batch_max = 5", "url", "missing key 'url'"),
        ('url = "ftp://u:hunter2x@h/x"', "url", "http:// or https://"),
        ('url = "https://h/{conn}"', "url", "unknown placeholder {conn}"),
        ('url = "https://h/"\nformat = "xml"', "format", 'one of "json", "ndjson"'),
        ('url = "https://h/"\nbatch_max = 0', "batch_max", "integer from 1"),
        ('url = "https://h/"\nlinger = 61', "linger", "seconds from 0 to 60"),
        ('url = "https://h/"\ntimeout = 0', "timeout", "seconds > 0"),
        ('url = "https://h/"\nheaders = { X-Key = 5 }', "headers.X-Key", "string header value"),
        ('url = "https://h/"\nheaders = { X-Key = "a\\nhunter2x" }', "headers.X-Key", "without line breaks"),
        ('url = "https://h/"\nheaders = { X-Key = "\u00e9\u20achunter2x" }', "headers.X-Key", "not Latin-1"),
        ('url = "https://h/"\nverify = 1', "verify", "CA bundle"),
        ('url = "https://h/"\ncert = ["a"]', "cert", "[certificate, key]"),
        ('url = "https://h/"\nverify = "missing-ca.pem"', "verify", "cannot load a CA bundle from it"),
        ('url = "https://h/"\ncert = "missing.pem"', "cert", "cannot load a client certificate"),
        ('url = "https://h/"\ndead_letter_url = "h/dead"', "dead_letter_url", "http:// or https://"),
        ('url = "https://h/"\nheader = {}', "header", "did you mean 'headers'"),
    ],
    ids=["no-url", "ftp-url", "bad-placeholder", "bad-format", "zero-batch", "long-linger", "zero-timeout",
         "int-header", "newline-header", "non-latin1-header", "bad-verify", "bad-cert", "missing-ca",
         "missing-cert", "bad-dead-letter-url", "unknown-key"],
)
def test_config_errors_name_the_key_and_show_no_secret(tmp_path: Path, table: str, key: str, text: str) -> None:
    plugin = HttpSink()
    error = sink_kit.configure_error(plugin, make_config(tmp_path, table))
    message = str(error)
    assert error.key == f"plugins.http.{key}" and text in message, message
    assert str(tmp_path / "run.toml") in message and "hunter2x" not in message
    assert plugin.settings is None


def test_dry_run_validates_only_inert_without_a_table_and_settings_hide_headers(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    issued = ca.issue_cert("sseplug-client")
    issued.cert_chain_pems[0].write_to_path(tmp_path / "c")
    issued.private_key_pem.write_to_path(tmp_path / "k")
    plugin = HttpSink()
    table = f'url = "https://127.0.0.1:1/x"\nheaders = {{ X-Key = "{TOKEN}" }}\nverify = "ca.pem"\ncert = ["c", "k"]'
    plugin.sseplug_configure(dataclasses.replace(make_config(tmp_path, table), dry_run=True))
    assert plugin.settings is None and plugin._pool is None and not plugin.sseplug_sink
    plugin.sseplug_configure(make_config(tmp_path, None))
    assert plugin.settings is None
    plugin.sseplug_configure(make_config(tmp_path, table))
    try:
        assert plugin.settings is not None and TOKEN not in repr(plugin.settings) and TOKEN not in repr(plugin)
        assert plugin.settings.verify == str(tmp_path / "ca.pem")
        assert plugin.settings.cert == (str(tmp_path / "c"), str(tmp_path / "k"))
    finally:
        plugin.sseplug_unconfigure()


def test_entry_point_key_and_settings_documented() -> None:
    from importlib.metadata import entry_points

    (ep,) = [ep for ep in entry_points(group="sseplug") if ep.name == "http"]
    assert ep.load() is sseplug_http.plugin and set(sseplug_http.SETTINGS) == set(sseplug_http.KEYS)
    docs = (Path(__file__).resolve().parents[2] / "docs" / "http.rst").read_text()
    assert all(f"{key} =" in docs for key in sseplug_http.KEYS)
    event = SSEResponse(id="7", event="message", data="x", comment="", raw_response="id: 7\ndata: x", retry=None)
    assert event_key("c", event) == "c:7"
