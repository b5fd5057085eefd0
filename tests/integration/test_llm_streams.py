"""Streams as LLM and agent services send them: a POST is one generation, never sent again once
it streamed, unless the user says how to resume (issue 14, first part)."""

from __future__ import annotations

import json
import ssl
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import gevent
import pytest
import trustme

from sseplug import SSEClient, SSERequest, SSEResponse, hookimpl
from sseplug.errors import CertificateError, NetworkError, ServerEventError, SSEError
from sseplug.plugins import PluginManager
from sseplug.server import DROP, Response, SSEServer
from sseplug.testing import DONE, collect

from . import runner_process as rp
from .test_runner import connection, write_config

CHAT = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def chunk(n: int) -> bytes:
    """An OpenAI-style chat completion chunk: data only, no id, no event."""
    delta = {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": f"t{n}"}}]}
    return b"data: " + json.dumps(delta).encode() + b"\n\n"


def words(events: list[SSEResponse]) -> list[str]:
    return [e.data["choices"][0]["delta"]["content"] if isinstance(e.data, dict) else e.data for e in events]


@pytest.mark.parametrize("end_data", [(), ("[DONE]",)], ids=["by-eof", "by-end-data"])
def test_a_chat_post_that_ends_with_done_is_posted_once(
    sse_server: SSEServer, sse_client: SSEClient, fast_retry: None, end_data: tuple[str, ...]
) -> None:
    # with end_data the server may even keep the connection open: [DONE] ends the stream
    body = [chunk(1), chunk(2), chunk(3), b"data: [DONE]\n\n"]
    sse_server.script("/chat", Response(body=body, stall=30.0 if end_data else None))
    done: list[bool] = []
    request = SSERequest(sse_server.url("/chat"), method="POST", body=CHAT, end_data=end_data,
                         on_done=lambda: done.append(True))
    got = collect(sse_client.connect("chat", request), timeout=10)
    gevent.sleep(0.1)  # a wrong reconnect would come now
    assert words(got) == ["t1", "t2", "t3", "[DONE]"] and done == [True]
    assert [r.method for r in sse_server.requests_for("/chat")] == ["POST"]


def test_a_chat_post_failing_with_503_before_streaming_is_retried(
    sse_server: SSEServer, sse_client: SSEClient, fast_retry: None
) -> None:
    busy = Response(503, {"Content-Type": "text/html"}, [b"busy"], "length")
    sse_server.script("/chat", busy, busy, Response(body=[chunk(1), b"data: [DONE]\n\n"]))
    got = collect(sse_client.connect("chat", SSERequest(sse_server.url("/chat"), method="POST", body=CHAT)))
    assert words(got) == ["t1", "[DONE]"] and len(sse_server.requests_for("/chat")) == 3


def test_a_chat_post_cut_after_chunks_is_not_posted_again_and_says_what_to_set(
    sse_server: SSEServer, sse_client: SSEClient, fast_retry: None
) -> None:
    sse_server.script("/chat", Response(body=[chunk(1), chunk(2), chunk(3), b"data: {\"half", DROP]))
    got: list[SSEResponse] = []
    with pytest.raises(NetworkError, match="resume_url") as failure, gevent.Timeout(10):
        for event in sse_client.connect("chat", SSERequest(sse_server.url("/chat"), method="POST", body=CHAT)):
            got.append(event)
    assert words(got) == ["t1", "t2", "t3"] and len(sse_server.requests_for("/chat")) == 1
    assert "not sent again" in str(failure.value)


def test_a_cut_post_resumes_with_a_get_to_resume_url(
    sse_server: SSEServer, sse_client: SSEClient, fast_retry: None
) -> None:
    """MCP Streamable HTTP: POST to start; after a drop, GET with Last-Event-ID, never re-POST."""
    sse_server.script("/mcp", Response(body=[b"id: 1\ndata: a\n\n", b"id: 2\ndata: b\n\n", DROP]))
    sse_server.script("/mcp/stream", Response(body=[b"id: 3\ndata: c\n\n"]))
    request = SSERequest(sse_server.url("/mcp"), method="POST", body={"jsonrpc": "2.0", "id": 1, "method": "x"},
                         resume_url=sse_server.url("/mcp/stream"))
    got = collect(sse_client.connect("mcp", request))
    assert [(e.id, e.data) for e in got] == [("1", "a"), ("2", "b"), ("3", "c")]  # each once, a clean end
    posted, resumed = sse_server.requests_for("/mcp"), sse_server.requests_for("/mcp/stream")
    assert [r.method for r in posted] == ["POST"]
    assert [(r.method, r.body, r.headers["last-event-id"]) for r in resumed] == [("GET", b"", "2")]
    assert "content-type" not in resumed[0].headers


def test_an_error_event_mid_stream_raises_server_event_error_after_the_events_before_it(
    sse_server: SSEServer, sse_client: SSEClient, fast_retry: None
) -> None:
    overloaded = b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error"}}\n\n'
    body = [b"event: message_start\ndata: {}\n\n", b"event: content_block_delta\ndata: {\"d\": 1}\n\n", overloaded,
            b"event: message_stop\ndata: {}\n\n"]
    sse_server.script("/messages", Response(body=body))
    request = SSERequest(sse_server.url("/messages"), method="POST", body={"stream": True}, error_events=["error"])
    got: list[SSEResponse] = []
    with pytest.raises(ServerEventError) as failure, gevent.Timeout(10):
        for event in sse_client.connect("m", request):
            got.append(event)
    assert [e.event for e in got] == ["message_start", "content_block_delta"]
    assert failure.value.event.data["error"]["type"] == "overloaded_error"
    assert '{"type": "error", "error": {"type": "overloaded_error"}}' in str(failure.value)  # JSON, not a dict repr
    assert len(sse_server.requests_for("/messages")) == 1


def test_an_end_event_ends_a_get_stream_that_would_reconnect(
    sse_server: SSEServer, sse_client: SSEClient, fast_retry: None
) -> None:
    """LangGraph-style: a run ends with ``event: end``; after it the stream is over."""
    sse_server.script("/runs/1/stream", Response(body=[b"event: values\ndata: 1\n\n", b"event: end\ndata: null\n\n"]))
    request = SSERequest(sse_server.url("/runs/1/stream"), end_events=["end"])
    got = collect(sse_client.connect("run", request))
    assert [e.event for e in got] == ["values", "end"] and len(sse_server.requests_for("/runs/1/stream")) == 1


@pytest.mark.parametrize(("reconnect", "requests"), [("on_error", 1), (None, 2)])
def test_a_finite_get_stream_ends_cleanly_with_on_error_and_reconnects_by_default(
    sse_server: SSEServer, sse_client: SSEClient, fast_retry: None, reconnect: str | None, requests: int
) -> None:
    sse_server.script("/export", Response(body=[b"id: 1\ndata: row\n\n"]), DONE)
    stream = sse_client.connect("e", SSERequest(sse_server.url("/export"), reconnect=reconnect), iterate=False)
    assert stream.wait(10) and stream.error is None
    assert len(sse_server.requests_for("/export")) == requests  # the default: the spec's reconnect, then 204


def test_the_runner_ends_a_chat_stream_cleanly_at_done(tmp_path: Path, sse_server: SSEServer) -> None:
    sse_server.script("/chat", Response(body=[chunk(1), chunk(2), b"data: [DONE]\n\n"], stall=30.0))
    config = write_config(tmp_path, connection("chat", sse_server.url("/chat"),
                                               'method = "POST"\nbody = { stream = true }\nend_data = ["[DONE]"]'))
    status, lines, err = rp.finish(rp.start("run", str(config), cwd=tmp_path))
    assert status == 0, err
    assert [line["data"] for line in lines][-1] == "[DONE]" and len(lines) == 3
    assert [r.method for r in sse_server.requests_for("/chat")] == ["POST"]


# -- the client's controls -------------------------------------------------------------------------


def test_restart_reconnects_at_once_with_last_event_id_and_counts_no_failure(
    sse_server: SSEServer, sse_client: SSEClient
) -> None:
    sse_server.script("/s", Response(body=[b"id: 1\ndata: a\n\n", 30.0]), Response(body=[b"id: 2\ndata: b\n\n", 30.0]))
    stream = sse_client.connect("s", SSERequest(sse_server.url("/s")))
    assert [e.data for e in collect(stream, count=1)] == ["a"]
    sse_client.restart("s")
    assert [e.data for e in collect(stream, count=1, timeout=5)] == ["b"]  # no 1 s policy wait either
    first, second = sse_server.requests_for("/s")
    assert second.headers["last-event-id"] == "1" and second.received_at - first.received_at < 5
    assert (stream.connection.attempt, stream.connection.backoff_step) == (0, 0)
    with pytest.raises(KeyError, match="no open connection 'nope'"):
        sse_client.restart("nope")


def test_disable_leaves_out_a_builtin_plugin_in_library_use(sse_server: SSEServer) -> None:
    sse_server.script("/s", Response(body=[b'data: {"n": 1}\n\n']), DONE)
    with SSEClient(disable=["json"]) as client:
        got = collect(client.connect("s", SSERequest(sse_server.url("/s"))))
    assert [e.data for e in got] == ['{"n": 1}']  # the text, not decoded


def test_connect_beyond_pool_size_says_so_instead_of_blocking(
    sse_server: SSEServer, sseplug_plugins: PluginManager
) -> None:
    sse_server.script("/s", Response(body=[b"data: a\n\n", 30.0]))
    with SSEClient(plugin_manager=sseplug_plugins, pool_size=2) as client:
        client.connect("a", SSERequest(sse_server.url("/s")), iterate=False)
        client.connect("b", SSERequest(sse_server.url("/s")), iterate=False)
        with pytest.raises(SSEError, match=r"pool of 2 connections is full \(pool_size\)"), gevent.Timeout(5):
            client.connect("c", SSERequest(sse_server.url("/s")), iterate=False)
        client.close("a")
        client.connect("c", SSERequest(sse_server.url("/s")), iterate=False)  # a slot is free again


def test_a_report_request_keeps_a_content_type_given_in_headers(
    sse_server: SSEServer, sse_client: SSEClient
) -> None:
    """LaunchDarkly-style: REPORT with a body, and the Content-Type the user chose."""
    sse_server.script("/flags", Response(body=[b"event: put\ndata: {}\n\n"]), DONE)
    request = SSERequest(sse_server.url("/flags"), method="report", body='{"key": "u"}',
                         headers={"Content-Type": "application/json; charset=utf-8"}, reconnect="always")
    assert [e.event for e in collect(sse_client.connect("f", request))] == ["put"]
    sent = sse_server.requests_for("/flags")[0]
    assert (sent.method, sent.body, sent.headers["content-type"]) == ("REPORT", b'{"key": "u"}',
                                                                      "application/json; charset=utf-8")


def test_retry_delay_is_the_wait_until_the_server_sends_retry(sse_server: SSEServer, sse_client: SSEClient) -> None:
    sse_server.script("/s", Response(body=[b"data: a\n\n"]), DONE)
    collect(sse_client.connect("s", SSERequest(sse_server.url("/s"), retry_delay=0.02)))
    first, second = sse_server.requests_for("/s")
    assert second.received_at - first.received_at < 0.5  # the 1 s default would often wait longer


# -- TLS per request ---------------------------------------------------------------------------


@pytest.fixture
def private_ca(tmp_path: Path) -> Iterator[tuple[SSEServer, trustme.CA, Path]]:
    """An https server with a certificate from a private CA that asks for a client certificate."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_OPTIONAL  # a client certificate, when sent, must be the CA's
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    with SSEServer(ssl_context=context) as server:
        server.script("/s", Response(body=[b"data: secure\n\n"]))
        yield server, ca, tmp_path / "ca.pem"


def test_verify_takes_a_private_ca_bundle_or_false(
    private_ca: tuple[SSEServer, trustme.CA, Path], sse_client: SSEClient
) -> None:
    server, _, ca_file = private_ca
    with pytest.raises(CertificateError, match="CERTIFICATE_VERIFY_FAILED.*give the CA bundle"):
        collect(sse_client.connect("a", SSERequest(server.url("/s"))))  # at once: no retry can cure it
    assert len([r for r in server.requests if r.path == "/s"]) == 0
    got = collect(sse_client.connect("b", SSERequest(server.url("/s"), retry=False, verify=str(ca_file))))
    assert [e.data for e in got] == ["secure"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # urllib3's InsecureRequestWarning: verify=False was asked for
        got = collect(sse_client.connect("c", SSERequest(server.url("/s"), retry=False, verify=False)))
    assert [e.data for e in got] == ["secure"]


def test_a_client_certificate_is_presented(
    private_ca: tuple[SSEServer, trustme.CA, Path], sse_client: SSEClient, tmp_path: Path
) -> None:
    server, ca, ca_file = private_ca
    client_cert = ca.issue_cert("client@example.test")
    client_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    client_cert.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    request = SSERequest(server.url("/s"), retry=False, verify=str(ca_file),
                         cert=(str(tmp_path / "client.pem"), str(tmp_path / "client.key")))
    assert [e.data for e in collect(sse_client.connect("s", request))] == ["secure"]
    stranger = trustme.CA().issue_cert("stranger@example.test")  # from another CA: refused
    stranger.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "stranger.pem"))
    refused = SSERequest(server.url("/s"), retry=False, verify=str(ca_file), cert=str(tmp_path / "stranger.pem"))
    with pytest.raises(NetworkError):
        collect(sse_client.connect("t", refused))


def test_tls_files_that_do_not_exist_are_field_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^verify: '.*missing.pem' does not exist"):
        SSERequest("https://127.0.0.1/", verify=str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match=r"^cert: "):
        SSERequest("https://127.0.0.1/", cert=("a.pem",))  # type: ignore[arg-type]


def test_the_error_event_is_deserialized_like_the_others_by_a_deserialize_hook(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Callable[..., object]
) -> None:
    class Upper:
        @hookimpl
        def sseplug_deserialize(self, event: SSEResponse) -> str:
            return event.data.upper()

    register_plugin(Upper(), "upper")  # two deserializers: the hook runs, not the parser's decoder
    sse_server.script("/m", Response(body=[b"data: a\n\n", b"event: error\ndata: overloaded\n\n"]))
    request = SSERequest(sse_server.url("/m"), method="POST", body={}, error_events=["error"])
    got: list[SSEResponse] = []
    with pytest.raises(ServerEventError) as failure, gevent.Timeout(10):
        for event in sse_client.connect("m", request):
            got.append(event)
    assert [e.data for e in got] == ["A"] and failure.value.event.data == "OVERLOADED"
