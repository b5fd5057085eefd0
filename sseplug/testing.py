"""pytest plugin for plugin authors: a scripted SSE server, a plugin manager, a hook-call recorder.

Installed with sseplug (``pytest11`` entry point) and inert until a test asks for a fixture:

- ``sse_server``: a started ``sseplug.server.SSEServer`` on 127.0.0.1 (``script()`` paths with
  chunks, delays, ``DROP``, statuses; ``requests`` logs every request and its headers);
- ``sseplug_plugins``: a ``PluginManager`` with the library built-ins and no entry-point autoload;
- ``register_plugin``: ``register_plugin(obj, name)`` registers into it for this test only;
- ``hook_recorder``: every hook call on that manager, as ``HookCall(name, kwargs)``;
- ``sse_client``: an ``SSEClient`` on that manager (needs gevent's monkey patches, as always);
- ``sse_client_for``: ``sse_client_for(config)`` makes more, each configured with a runner
  ``Config`` (``sseplug.run.config.parse_config``) so plugins read their ``[plugins.NAME]`` table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest

from .plugins import PluginManager, create_plugin_manager
from .server import SSEServer

__all__ = ["HookCall", "HookRecorder"]


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
    with SSEServer() as server:
        yield server


@pytest.fixture
def sseplug_plugins() -> PluginManager:
    """A plugin manager with the library built-ins and no installed plugins loaded."""
    return create_plugin_manager(load_entry_points=False)


@pytest.fixture
def register_plugin(sseplug_plugins: PluginManager) -> Iterator[Callable[..., object]]:
    """``register_plugin(plugin, name=None)``: register into ``sseplug_plugins`` for this test."""
    registered: list[object] = []

    def register(plugin: object, name: str | None = None) -> object:
        sseplug_plugins.register(plugin, name)
        registered.append(plugin)
        return plugin

    yield register
    for plugin in registered:
        if sseplug_plugins.is_registered(plugin):
            sseplug_plugins.unregister(plugin)


@pytest.fixture
def hook_recorder(sseplug_plugins: PluginManager) -> Iterator[HookRecorder]:
    """Every hook call made on ``sseplug_plugins`` during the test."""
    recorder = HookRecorder(sseplug_plugins)
    yield recorder
    recorder.close()


@pytest.fixture
def sse_client(sseplug_plugins: PluginManager) -> Iterator[Any]:
    """An ``SSEClient`` using ``sseplug_plugins``, shut down after the test."""
    from .client import SSEClient

    with SSEClient(plugin_manager=sseplug_plugins) as client:
        yield client


@pytest.fixture
def sse_client_for(sseplug_plugins: PluginManager) -> Iterator[Callable[[Any], Any]]:
    """``sse_client_for(config)``: an ``SSEClient`` on ``sseplug_plugins``, configured with ``config``."""
    from .client import SSEClient

    clients: list[SSEClient] = []

    def make(config: Any) -> SSEClient:
        clients.append(SSEClient(plugin_manager=sseplug_plugins, config=config))
        return clients[-1]

    yield make
    for client in clients:
        client.shutdown()
