"""The test kit, a pytest plugin: a scripted SSE server, a plugin manager, hook recording, helpers.

Installed with sseplug (``pytest11`` entry point) and inert until a test asks for a fixture:
loading it imports nothing beyond ``import sseplug`` (no gevent, urllib3, ``ssl`` or ``socket``),
so every run can load it before gevent's monkey patches. Fixtures:

- ``sse_server``: a started ``sseplug.server.SSEServer`` on 127.0.0.1 (``script()`` paths with
  chunks, delays, ``DROP``, statuses; ``requests`` logs every request and its headers);
- ``sseplug_plugins``: a ``PluginManager`` with the library built-ins and no entry-point autoload;
- ``register_plugin``: ``register_plugin(obj, name)`` registers into it for this test only;
- ``fast_retry``: registers a ``tryfirst`` retry decision of 10 ms, so reconnects are quick;
- ``hook_recorder``: every hook call on that manager, as ``HookCall(name, kwargs)``;
- ``sse_client``: an ``SSEClient`` on that manager (needs gevent's monkey patches, as always);
- ``sse_client_for``: ``sse_client_for(config)`` makes more, each configured with a runner
  ``Config`` (``sseplug.run.config.parse_config``) so plugins read their ``[plugins.NAME]`` table;
- ``serve_recording``: ``serve_recording(path, speed=0.0, loop=False)`` serves a recording
  (``sseplug record``'s file, or a ``sseplug.recording.Recording``) on ``sse_server`` and returns
  its URL: a real incident, replayed in a test (``speed=0``: no waits; 1: the recorded timing).

Helpers to import:

- ``collect(stream, count=None, timeout=10.0)``: the events of a stream until it ends or ``count``
  arrived, failing after ``timeout`` seconds instead of hanging;
- ``DONE``: a scripted ``204`` response to end a script with: the client stops, no reconnect;
- ``HookCall``, ``HookRecorder``: what ``hook_recorder`` records with.

The monkey patches are opt-in, in their own plugin, loaded first with ``-p`` (``pytest.ini``:
``addopts = -p sseplug.testing_patches``); see ``sseplug.testing_patches``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

if TYPE_CHECKING:
    from .client import SSEClient
    from .models import SSEResponse
    from .plugins import PluginManager
    from .server import Response, SSEServer

    DONE: Response

__all__ = ["DONE", "HookCall", "HookRecorder", "collect"]


def __getattr__(name: str) -> Any:
    if name == "DONE":  # built on first use: sseplug.server imports gevent
        from .server import Response

        done = globals()["DONE"] = Response(204, {"Content-Type": "text/html"})
        return done
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def collect(stream: Iterator[SSEResponse], count: int | None = None, timeout: float = 10.0) -> list[SSEResponse]:
    """Events of ``stream`` until it ends or ``count`` arrived; fails after ``timeout`` seconds."""
    import gevent

    events: list[SSEResponse] = []
    with gevent.Timeout(timeout, AssertionError(f"stream did not end within {timeout}s; got {events}")):
        for event in stream:
            events.append(event)
            if count is not None and len(events) >= count:
                break
    return events


class HookCall(NamedTuple):
    """One recorded hook call."""

    name: str
    kwargs: dict[str, Any]


class HookRecorder:
    """Records the hook calls of a plugin manager while attached."""

    def __init__(self, pm: PluginManager) -> None:
        self.calls: list[HookCall] = []
        self._undo = pm.add_hookcall_monitoring(self._before, lambda *args: None)

    def _before(self, hook_name: str, hook_impls: Any, kwargs: dict[str, Any]) -> None:
        self.calls.append(HookCall(hook_name, dict(kwargs)))

    def named(self, name: str) -> list[HookCall]:
        """The recorded calls of hook ``name``, oldest first."""
        return [call for call in self.calls if call.name == name]

    def close(self) -> None:
        """Stop recording."""
        self._undo()


@pytest.fixture
def sse_server() -> Iterator[SSEServer]:
    """A scripted loopback SSE server, stopped after the test."""
    from .server import SSEServer

    with SSEServer() as server:
        yield server


@pytest.fixture
def sseplug_plugins() -> PluginManager:
    """A plugin manager with the library built-ins and no installed plugins loaded."""
    from .plugins import create_plugin_manager

    return create_plugin_manager(load_entry_points=False)


@pytest.fixture
def register_plugin(sseplug_plugins: PluginManager) -> Iterator[Callable[..., object]]:
    """``register_plugin(plugin, name=None)``: register into ``sseplug_plugins`` for this test."""
    registered: list[object] = []

    def register(plugin: object, name: str | None = None) -> object:
        """Register ``plugin`` (under ``name``) for the rest of the test."""
        sseplug_plugins.register(plugin, name)
        registered.append(plugin)
        return plugin

    yield register
    for plugin in registered:
        if sseplug_plugins.is_registered(plugin):
            sseplug_plugins.unregister(plugin)


@pytest.fixture
def fast_retry(register_plugin: Callable[..., object]) -> None:
    """Reconnect after 10 ms instead of the retry policy's seconds (registered as ``fast-retry``)."""
    from .hookspecs import hookimpl

    class FastRetry:
        """Answers every retry decision with 10 ms."""

        @hookimpl(tryfirst=True)
        def sseplug_retry_decision(self) -> float:
            """Wait 10 ms before every reconnect."""
            return 0.01

    register_plugin(FastRetry(), "fast-retry")


@pytest.fixture
def hook_recorder(sseplug_plugins: PluginManager) -> Iterator[HookRecorder]:
    """Every hook call made on ``sseplug_plugins`` during the test."""
    recorder = HookRecorder(sseplug_plugins)
    yield recorder
    recorder.close()


@pytest.fixture
def sse_client(sseplug_plugins: PluginManager) -> Iterator[SSEClient]:
    """An ``SSEClient`` using ``sseplug_plugins``, shut down after the test."""
    from .client import SSEClient

    with SSEClient(plugin_manager=sseplug_plugins) as client:
        yield client


@pytest.fixture
def sse_client_for(sseplug_plugins: PluginManager) -> Iterator[Callable[[Any], SSEClient]]:
    """``sse_client_for(config)``: an ``SSEClient`` on ``sseplug_plugins``, configured with ``config``."""
    from .client import SSEClient

    clients: list[SSEClient] = []

    def make(config: Any) -> SSEClient:
        """A new client on ``sseplug_plugins``, configured with ``config``; shut down after the test."""
        sseplug_plugins.configure(config)  # the client finds it configured, and unconfigures it
        clients.append(SSEClient(plugin_manager=sseplug_plugins))
        return clients[-1]

    yield make
    for client in clients:
        client.shutdown()


@pytest.fixture
def serve_recording(sse_server: SSEServer) -> Callable[..., str]:
    """``serve_recording(path_or_recording, speed=0.0, loop=False)``: its URL on ``sse_server``."""
    from .recording import Recording

    served = 0

    def serve(recording: Any, speed: float = 0.0, loop: bool = False) -> str:
        """Serve ``recording`` (a path or a ``Recording``) at a fresh path of ``sse_server``; its URL."""
        nonlocal served
        served += 1
        loaded = recording if isinstance(recording, Recording) else Recording.load(recording)
        path = f"/recording/{served}"
        sse_server.replay(path, loaded, speed=speed, loop=loop)
        return sse_server.url(path)

    return serve
