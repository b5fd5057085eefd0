"""The hook contract: every sseplug_* hook documented, and shown at work on a real loopback stream."""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import gevent
import pytest

from sseplug import ErrorPolicy, Route, SSEClient, SSERequest, SSEResponse, hookimpl, hookspecs
from sseplug.connection import Connection
from sseplug.errors import PluginError, SSEError, TemporaryHTTPError
from sseplug.plugins import PluginManager
from sseplug.server import Response, SSEServer
from sseplug.testing import DONE, collect

from ..recorders import Checkpoints, DeadLetters, Handler

Register = Callable[..., object]

HOOK_NAMES = sorted(
    name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("sseplug_")
)


def body(*blocks: str) -> list[bytes | float]:
    """Response pieces: each block its own HTTP chunk, 20 ms apart so each is read on its own."""
    pieces: list[bytes | float] = []
    for block in blocks:
        if pieces:
            pieces.append(0.02)
        pieces.append(block.encode())
    return pieces


# -- the contract ------------------------------------------------------------------------------


def test_hookspecs_exist() -> None:
    """The introspection below sees every hook of docs/reference/hooks.rst."""
    assert HOOK_NAMES == sorted(
        [
            "sseplug_configure", "sseplug_auth_headers", "sseplug_checkpoint_load", "sseplug_connection_opened",
            "sseplug_deserialize", "sseplug_handle_event", "sseplug_checkpoint_save", "sseplug_retry_decision",
            "sseplug_connection_closed", "sseplug_unconfigure", "sseplug_claim", "sseplug_connection_finished",
            "sseplug_dead_letter", "sseplug_schedule",
        ]
    )


def test_every_hook_has_a_test() -> None:
    """datasette's rule: a test named test_hook_<hookname> for every hook."""
    module = sys.modules[__name__]
    missing = [name for name in HOOK_NAMES if not callable(getattr(module, f"test_hook_{name}", None))]
    assert missing == []


# -- configure / unconfigure -------------------------------------------------------------------


class Lifecycle:
    """Records configure, the lifecycle of connections and unconfigure, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    @hookimpl
    def sseplug_configure(self, config: Any) -> None:
        self.calls.append(("configure", config))

    @hookimpl
    def sseplug_connection_opened(self, connection: Connection) -> None:
        self.calls.append(("opened", connection.id))

    @hookimpl
    def sseplug_connection_closed(self, connection: Connection, reason: str) -> None:
        self.calls.append(("closed", reason))

    @hookimpl
    def sseplug_unconfigure(self) -> None:
        self.calls.append(("unconfigure", None))


def test_hook_sseplug_configure(
    sse_server: SSEServer, sseplug_plugins: PluginManager, register_plugin: Register
) -> None:
    """Called once, with config=None in library use, before any connection opens."""
    plugin = Lifecycle()
    register_plugin(plugin, "lifecycle")
    sse_server.script("/s", Response(body=body("data: a\n\n")), DONE)
    with SSEClient(plugin_manager=sseplug_plugins) as client:
        assert plugin.calls == [("configure", None)]
        collect(client.connect("s", SSERequest(sse_server.url("/s"), retry=False)))
        collect(client.connect("t", SSERequest(sse_server.url("/s"), retry=False)))
    names = [name for name, _ in plugin.calls]
    assert names.count("configure") == 1 and names[0] == "configure" and "opened" in names


def test_a_client_leaves_a_configured_manager_as_its_owner_configured_it(
    sseplug_plugins: PluginManager, register_plugin: Register
) -> None:
    """The runner configures its manager with its Config; the client does not configure it again
    (the library never sees the application's config) and unconfigures it at shutdown, once."""
    plugin = Lifecycle()
    register_plugin(plugin, "lifecycle")
    owners_config = object()
    sseplug_plugins.configure(owners_config)
    with SSEClient(plugin_manager=sseplug_plugins):
        assert plugin.calls == [("configure", owners_config)] and sseplug_plugins.configured
    assert [name for name, _ in plugin.calls] == ["configure", "unconfigure"] and not sseplug_plugins.configured
    sseplug_plugins.unconfigure()  # once per configure: nothing more
    assert len(plugin.calls) == 2


def test_configure_reaches_a_plugin_registered_after_the_client_started(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register
) -> None:
    """The plugin-author pattern: register_plugin with the sse_client fixture."""
    plugin = Lifecycle()
    register_plugin(plugin, "lifecycle")
    sse_server.script("/s", DONE)
    collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    assert ("configure", None) in plugin.calls


def test_hook_sseplug_unconfigure(
    sse_server: SSEServer, sseplug_plugins: PluginManager, register_plugin: Register
) -> None:
    """Called on client.shutdown(), after every connection ended."""
    plugin = Lifecycle()
    register_plugin(plugin, "lifecycle")
    sse_server.script("/s", Response(body=[b"data: a\n\n", 30.0]))
    client = SSEClient(plugin_manager=sseplug_plugins)
    try:
        stream = client.connect("s", SSERequest(sse_server.url("/s")))
        assert [e.data for e in collect(stream, count=1, timeout=5)] == ["a"]
        assert ("unconfigure", None) not in plugin.calls
        started = time.monotonic()
    finally:
        client.shutdown()
    assert time.monotonic() - started < 5
    names = [name for name, _ in plugin.calls]
    assert names.count("unconfigure") == 1 and names[-1] == "unconfigure"
    assert names.index("closed") < names.index("unconfigure")


def test_unconfigure_is_called_once_when_shutdown_is_called_twice(
    sseplug_plugins: PluginManager, register_plugin: Register
) -> None:
    """An explicit shutdown() inside `with SSEClient()` does not unconfigure the plugins twice."""
    plugin = Lifecycle()
    register_plugin(plugin, "lifecycle")
    with SSEClient(plugin_manager=sseplug_plugins) as client:
        client.shutdown()
    assert [name for name, _ in plugin.calls].count("unconfigure") == 1


# -- connect -----------------------------------------------------------------------------------


class CountingToken:
    """A fresh token before every connect: token-1, token-2, ..."""

    def __init__(self) -> None:
        self.count = 0
        self.seen: list[tuple[str, str]] = []

    @hookimpl
    def sseplug_auth_headers(self, connection: Connection, request: SSERequest) -> dict[str, str]:
        self.count += 1
        self.seen.append((connection.id, request.url))
        return {"Authorization": f"Bearer token-{self.count}", "X-Tenant": "second", "X-Second": "2"}


class TenantFirst:
    """Runs first (tryfirst): its X-Tenant wins the conflict."""

    @hookimpl(tryfirst=True)
    def sseplug_auth_headers(self) -> dict[str, str]:
        return {"X-Tenant": "first", "X-First": "1"}


class NoHeaders:
    """Answers nothing: adds no header."""

    @hookimpl
    def sseplug_auth_headers(self) -> None:
        return None


def test_hook_sseplug_auth_headers(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register, fast_retry: None
) -> None:
    """Recomputed before every connect and reconnect; merged, the first-run plugin winning a conflict."""
    token = CountingToken()
    register_plugin(TenantFirst(), "tenant-first")
    register_plugin(token, "token")
    register_plugin(NoHeaders(), "no-headers")
    sse_server.script("/s", Response(body=body("id: 1\ndata: a\n\n")), Response(body=body("id: 2\ndata: b\n\n")), DONE)
    request = SSERequest(sse_server.url("/s"), headers={"X-Tenant": "request", "X-Own": "own"})
    assert [e.data for e in collect(sse_client.connect("s", request))] == ["a", "b"]
    sent = sse_server.requests_for("/s")
    assert [r.headers["authorization"] for r in sent] == ["Bearer token-1", "Bearer token-2", "Bearer token-3"]
    assert token.seen == [("s", sse_server.url("/s"))] * 3
    for r in sent:
        assert (r.headers["x-tenant"], r.headers["x-first"], r.headers["x-second"]) == ("first", "1", "2")
        assert r.headers["x-own"] == "own" and r.headers["accept"] == "text/event-stream"
    assert [r.headers.get("last-event-id") for r in sent] == [None, "1", "2"]


def test_auth_headers_override_request_headers_whatever_their_case(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register
) -> None:
    """HTTP names are case-insensitive: a plugin's header replaces the request's, not joins it."""

    class LowerCase:
        @hookimpl
        def sseplug_auth_headers(self) -> dict[str, str]:
            return {"authorization": "Bearer fresh"}

    register_plugin(LowerCase(), "lower")
    sse_server.script("/s", DONE)
    collect(sse_client.connect("s", SSERequest(sse_server.url("/s"), headers={"Authorization": "Bearer stale"})))
    assert sse_server.requests_for("/s")[0].headers["authorization"] == "Bearer fresh"


class SavedCheckpoint:
    """A checkpoint store holding id 41 for connection "s"."""

    def __init__(self) -> None:
        self.loaded: list[str] = []

    @hookimpl
    def sseplug_checkpoint_load(self, connection: Connection) -> str | None:
        self.loaded.append(connection.id)
        return "41" if connection.id == "s" else None


def test_hook_sseplug_checkpoint_load(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register, fast_retry: None
) -> None:
    """Called once, before the first connect; its id goes out as Last-Event-ID and is the events' id."""
    store = SavedCheckpoint()
    register_plugin(store, "store")
    sse_server.script("/s", Response(body=body("data: a\n\n", "id: 42\ndata: b\n\n")), DONE)
    sse_server.script("/other", DONE)
    got = collect(sse_client.connect("s", SSERequest(sse_server.url("/s"), last_event_id="7")))
    assert [(e.id, e.data) for e in got] == [("41", "a"), ("42", "b")]
    assert [r.headers.get("last-event-id") for r in sse_server.requests_for("/s")] == ["41", "42"]
    assert store.loaded == ["s"]  # not again on the reconnect
    collect(sse_client.connect("other", SSERequest(sse_server.url("/other"), last_event_id="7")))
    assert sse_server.requests_for("/other")[0].headers["last-event-id"] == "7"  # no answer: the request's


class Opened:
    """Records what connection_opened saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, dict[str, str]]] = []

    @hookimpl
    def sseplug_connection_opened(self, connection: Connection, status: int, headers: Mapping[str, str]) -> None:
        self.seen.append((connection.id, status, dict(headers)))


def test_hook_sseplug_connection_opened(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register, fast_retry: None
) -> None:
    """Called with status 200 and the headers once a response is accepted; not for a 5xx or 204."""
    opened = Opened()
    register_plugin(opened, "opened")
    stream_headers = {"Content-Type": "text/event-stream", "X-Server": "scripted"}
    sse_server.script(
        "/s",
        Response(503, {"Content-Type": "text/html"}, [b"busy"], "length"),
        Response(headers=stream_headers, body=body("data: a\n\n")),
        DONE,
    )
    assert [e.data for e in collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))] == ["a"]
    assert len(sse_server.requests_for("/s")) == 3
    assert len(opened.seen) == 1
    connection_id, status, headers = opened.seen[0]
    assert (connection_id, status) == ("s", 200)
    assert headers["X-Server"] == "scripted" and headers["Content-Type"] == "text/event-stream"


# -- events ------------------------------------------------------------------------------------


class Shout:
    """Runs before the built-in json plugin: upper-cases "shout" events, no answer for the rest."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any, str]] = []

    @hookimpl(tryfirst=True)
    def sseplug_deserialize(self, event: SSEResponse, connection: Connection) -> Any:
        self.seen.append((event.event, event.data, connection.id))
        return {"shouted": event.data.upper()} if event.event == "shout" else None


def test_hook_sseplug_deserialize(sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register) -> None:
    """Its answer becomes data (beating the built-in json); no answer from anyone leaves the text."""
    shout = Shout()
    register_plugin(shout, "shout")
    sse_server.script(
        "/s",
        Response(body=body('event: shout\ndata: {"a": 1}\n\n', 'data: {"n": 2}\n\n', "data: [DONE]\n\n")),
        DONE,
    )
    got = collect(sse_client.connect("s", SSERequest(sse_server.url("/s"), retry=False)))
    assert [e.data for e in got] == [{"shouted": '{"A": 1}'}, {"n": 2}, "[DONE]"]
    assert [e.event for e in got] == ["shout", "message", "message"]
    assert shout.seen == [("shout", '{"a": 1}', "s"), ("message", '{"n": 2}', "s"), ("message", "[DONE]", "s")]


def test_hook_sseplug_handle_event(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register, fast_retry: None
) -> None:
    """Every event, in stream order, across reads and a reconnect, with its connection."""
    handler = Handler()
    register_plugin(handler, "handler")
    sse_server.script(
        "/s",
        Response(body=[b"id: 1\ndata: a\n\nid: 2\ndata: b\n\n", 0.02, b"data: c\n\n"]),
        Response(body=body("id: 3\ndata: d\n\n")),
        DONE,
    )
    got = collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))
    handled = [(connection_id, e.id, e.data) for connection_id, e in handler.handled]
    assert handled == [("s", "1", "a"), ("s", "2", "b"), ("s", "2", "c"), ("s", "3", "d")]
    assert [(e.id, e.data) for e in got] == list(zip(handler.ids, handler.data))


def test_hook_sseplug_dead_letter(sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register) -> None:
    """With action "dead_letter": the event a handler kept failing on, first True answer wins,
    then the stream goes on past it."""
    storing, passing = DeadLetters(True), DeadLetters(None)
    register_plugin(Handler(), "handler")
    register_plugin(storing, "storing")
    register_plugin(passing, "passing")  # registered last: asked first, passes
    sse_server.script("/s", Response(body=body("id: 1\ndata: boom\n\n", "id: 2\ndata: b\n\n")))
    route = Route(errors=ErrorPolicy(retries=1, backoff=0.01, action="dead_letter"))
    got = collect(sse_client.connect("s", SSERequest(sse_server.url("/s"), reconnect="on_error"), route=route))
    assert [e.data for e in got] == ["boom", "b"]
    assert passing.stored == storing.stored == [("1", "s", "handler", "cannot store 'boom'", 2)]


def test_hook_sseplug_checkpoint_save(sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register) -> None:
    """After the handlers, with the batch's last id; also for an id-only block; never past a failed event."""
    handler = Handler()
    checkpoints = Checkpoints(handler)
    register_plugin(handler, "handler")
    register_plugin(checkpoints, "checkpoints")
    sse_server.script(
        "/s",
        Response(body=[b"id: 1\ndata: a\n\nid: 2\ndata: b\n\n", 0.02, b"id: 5\n\n", 0.02,
                       b"id: 6\ndata: c\n\nid: 7\ndata: boom\n\nid: 8\ndata: never\n\n"]),
    )
    stream = sse_client.connect("s", SSERequest(sse_server.url("/s")))
    got: list[SSEResponse] = []
    with pytest.raises(PluginError) as caught:
        with gevent.Timeout(5):
            for event in stream:
                got.append(event)
    assert caught.value.event_id == "7"
    assert [e.id for e in got] == ["1", "2", "6"]
    assert checkpoints.saved == ["2", "5", "6"]  # 2 once per batch, never 7 or 8
    assert checkpoints.connections == ["s", "s", "s"]
    assert checkpoints.handled_before == [2, 2, 4]  # each save after its batch's handlers (6 and the failed 7)
    assert handler.ids == ["1", "2", "6", "7"]


# -- failure -----------------------------------------------------------------------------------


class Decide:
    """Answers retry_decision with a fixed value (tryfirst: before the built-in policy)."""

    def __init__(self, answer: float | bool) -> None:
        self.answer = answer
        self.seen: list[tuple[str, int, SSEError | None, int | None]] = []

    @hookimpl(tryfirst=True)
    def sseplug_retry_decision(
        self, connection: Connection, attempt: int, error: SSEError | None, status: int | None
    ) -> float | bool:
        self.seen.append((connection.id, attempt, error, status))
        return self.answer


def test_hook_sseplug_retry_decision(sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register) -> None:
    """A delay is waited before reconnecting (seen as the gap between requests)."""
    decide = Decide(0.3)
    register_plugin(decide, "decide")
    sse_server.script("/s", Response(body=body("id: 1\ndata: a\n\n")), DONE)
    assert [e.data for e in collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))] == ["a"]
    first, second = sse_server.requests_for("/s")
    assert 0.28 <= second.received_at - first.received_at < 2.0
    assert decide.seen == [("s", 1, None, None)]  # after EOF: no error, no status; 204 is not asked


def test_retry_decision_false_after_eof_ends_the_stream_cleanly(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register
) -> None:
    decide = Decide(False)
    register_plugin(decide, "decide")
    done: list[int] = []
    sse_server.script("/s", Response(body=body("id: 1\ndata: a\n\n")), Response(body=body("data: never\n\n")))
    stream = sse_client.connect("s", SSERequest(sse_server.url("/s"), on_done=lambda: done.append(1)))
    assert [e.data for e in collect(stream)] == ["a"]
    gevent.sleep(0.05)
    assert done == [1] and len(sse_server.requests_for("/s")) == 1
    assert decide.seen == [("s", 1, None, None)]


def test_retry_decision_false_after_5xx_raises_the_error(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register
) -> None:
    decide = Decide(False)
    register_plugin(decide, "decide")
    errors: list[BaseException] = []
    sse_server.script("/s", Response(503, {"Content-Type": "text/html"}, [b"busy"], "length"), DONE)
    stream = sse_client.connect("s", SSERequest(sse_server.url("/s"), on_error=errors.append))
    with pytest.raises(TemporaryHTTPError) as caught:
        collect(stream)
    assert caught.value.status == 503 and errors == [caught.value]
    assert decide.seen == [("s", 1, caught.value, 503)]
    assert len(sse_server.requests_for("/s")) == 1


class Closed:
    """Records the reasons connection_closed was given."""

    def __init__(self) -> None:
        self.reasons: list[tuple[str, str]] = []

    @hookimpl
    def sseplug_connection_closed(self, connection: Connection, reason: str) -> None:
        self.reasons.append((connection.id, reason))


def test_hook_sseplug_connection_closed(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register, fast_retry: None
) -> None:
    """Called whenever a response ends, with the reason: an error, "eof", "204"."""
    closed = Closed()
    register_plugin(closed, "closed")
    sse_server.script(
        "/s",
        Response(503, {"Content-Type": "text/html"}, [b"busy"], "length"),
        Response(body=body("data: a\n\n")),
        DONE,
    )
    assert [e.data for e in collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))))] == ["a"]
    gevent.sleep(0.05)
    ids = {connection_id for connection_id, _ in closed.reasons}
    reasons = [reason for _, reason in closed.reasons]
    assert ids == {"s"} and len(reasons) == 3
    assert reasons[0].startswith("TemporaryHTTPError") and "503" in reasons[0]
    assert reasons[1:] == ["eof", "204"]


def test_connection_closed_reason_is_closed_when_stopped_from_a_handler(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register
) -> None:
    """A plugin that ends the stream itself (connection.stop()) sees reason "stopped", not "eof"."""

    class StopAfterFirst:
        @hookimpl
        def sseplug_handle_event(self, connection: Connection) -> None:
            connection.stop()

    closed = Closed()
    register_plugin(closed, "closed")
    register_plugin(StopAfterFirst(), "stop-after-first")
    sse_server.script("/s", Response(body=[b"data: a\n\n", 30.0]))
    stream = sse_client.connect("s", SSERequest(sse_server.url("/s")))
    assert [e.data for e in collect(stream, timeout=5)] == ["a"]
    assert closed.reasons == [("s", "stopped")]


def test_hook_sseplug_claim(sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register) -> None:
    """A declined claim holds the connection in standby; release() gives the stream up, and the
    connection claims it back and resumes from a freshly loaded checkpoint."""

    class Lease:
        def __init__(self) -> None:
            self.answers: list[bool | float | None] = [0.05, False, None]  # wait, wait 1 s, go
            self.states: list[str] = []
            self.loads = 0

        @hookimpl
        def sseplug_claim(self, connection: Connection) -> bool | float | None:
            self.states.append(connection.state)
            return self.answers.pop(0) if self.answers else None

        @hookimpl
        def sseplug_checkpoint_load(self) -> str:
            self.loads += 1
            return "10" if self.loads == 1 else "20"  # another process moved it on meanwhile

        @hookimpl
        def sseplug_handle_event(self, event: SSEResponse, connection: Connection) -> None:
            if event.id == "11":
                connection.release()  # the lease was lost while streaming

    lease = register_plugin(Lease(), "lease")
    sse_server.script("/s", Response(body=body("id: 11\ndata: a\n\n", "id: 12\ndata: never\n\n"), stall=5),
                      Response(body=body("id: 21\ndata: b\n\n")), DONE)
    started = time.monotonic()
    got = collect(sse_client.connect("s", SSERequest(sse_server.url("/s"))), timeout=10)
    assert [e.data for e in got] == ["a", "b"]
    assert time.monotonic() - started >= 1.0  # False meant: ask again in a second
    assert lease.states[:3] == ["new", "standby", "standby"]  # type: ignore[attr-defined]
    assert [r.headers.get("last-event-id") for r in sse_server.requests_for("/s")] == ["10", "20", "21"]


def test_hook_sseplug_schedule(sse_server: SSEServer, tmp_path: Any) -> None:
    """A plugin answering True decides which streams the runner runs (a fleet's lease plugin):
    the runner starts none by itself, starts and stops what the plugin asks, shows its lease
    facts on /status and /ready, runs until stopped, and abort() ends it with exit status 1."""
    from sseplug.plugins import BUILTINS, create_plugin_manager
    from sseplug.run.config import parse_config
    from sseplug.run.runner import Runner

    class Scheduler:
        def __init__(self) -> None:
            self.control: Any = None
            self.stopped: list[str] = []

        @hookimpl
        def sseplug_schedule(self, streams: Any) -> bool:
            self.control = streams
            assert streams.ids() == ["a", "b"] and streams.running() == set()
            streams.report(lease=lambda cid: cid == "a", unready=lambda: None)
            assert streams.start("a") is True and streams.start("a") is False and streams.start("zz") is False
            return True

    text = (f'[runner]\nstate_dir = "{tmp_path}/state"\n'
            f'[[connections]]\nid = "a"\nurl = "{sse_server.url("/feed/a?count=1000&interval=0.01")}"\n'
            f'[[connections]]\nid = "b"\nurl = "{sse_server.url("/feed/b?count=3")}"\n')
    for abort in (False, True):
        scheduler = Scheduler()
        pm = create_plugin_manager(builtins=BUILTINS, load_entry_points=False, extra=[("scheduler", scheduler)])
        runner = Runner(parse_config(text, path=tmp_path / "run.toml"), plugin_manager=pm)
        done = gevent.spawn(runner.run)
        with gevent.Timeout(10):
            while "a" not in runner.streams or runner.streams["a"].connection.events_total < 3:
                gevent.sleep(0.02)
        assert scheduler.control.running() == {"a"} and sse_server.requests_for("/feed/b") == []
        if abort:
            scheduler.control.abort("the scheduler gave up")
            assert done.get(timeout=10) == 1
            continue
        scheduler.control.stop("a", then=lambda: scheduler.stopped.append("a"))
        with gevent.Timeout(10):
            while scheduler.stopped != ["a"]:
                gevent.sleep(0.02)
        assert scheduler.control.running() == set() and not done.ready()  # runs on until stopped
        runner.stop()
        assert done.get(timeout=10) == 0


def test_hook_sseplug_connection_finished(sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register) -> None:
    """Called once per connection when it ended for good, with the error or None."""

    class Watch:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str | None]] = []

        @hookimpl
        def sseplug_connection_finished(self, connection: Connection, error: SSEError | None) -> None:
            self.calls.append((connection.id, type(error).__name__ if error else None))

    watch = register_plugin(Watch(), "watch")
    sse_server.script("/ok", Response(body=[b"retry: 1\n\ndata: 1\n\n"]), DONE)
    sse_server.script("/gone", Response(404, {"Content-Type": "text/html"}))
    collect(sse_client.connect("ok", SSERequest(sse_server.url("/ok"))))
    with pytest.raises(SSEError):
        collect(sse_client.connect("gone", SSERequest(sse_server.url("/gone"))))
    gevent.sleep(0.05)
    assert watch.calls == [("ok", None), ("gone", "HTTPStatusError")]  # type: ignore[attr-defined]


def test_connection_closed_is_called_when_the_connect_fails(
    sse_client: SSEClient, register_plugin: Register
) -> None:
    """A connect that never got a response still reports its end, with the network error."""
    closed = Closed()
    register_plugin(closed, "closed")
    with SSEServer() as gone:
        url = gone.url("/s")
    with pytest.raises(SSEError):
        collect(sse_client.connect("s", SSERequest(url, retry=False)))
    assert [(cid, reason.split(":")[0]) for cid, reason in closed.reasons] == [("s", "NetworkError")]
