"""What the sink plugins' tests (jsonl, kafka, postgres, http) share: a sink registered for one
test, a runner config holding a plugin's table and the error configuring with it raises, draining a
stream, waiting for a condition, and a watch on the gevent hub's stalls."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import gevent
import pytest

from sseplug import SSEClient, SSERequest, SSEResponse
from sseplug.errors import ConfigError
from sseplug.run.config import Config, parse_config

Sink = TypeVar("Sink")


def registered(
    register_plugin: Callable[..., object], plugin: Sink, name: str, close: Callable[[], object]
) -> Iterator[Sink]:
    """A ``sink`` fixture's body: ``plugin`` registered as ``name`` for the test, then ``close()``."""
    register_plugin(plugin, name)
    yield plugin
    close()


def make_config(
    tmp_path: Path, table: str | None, ids: tuple[str, ...] = ("c",), extra: str = "", *,
    plugin: str, at: str = "run.toml",
) -> Config:
    """A validated runner config at ``tmp_path/at``: a connection per id (``extra`` lines in each)
    and, unless ``table`` is None, ``[plugins.<plugin>]`` holding ``table``."""
    text = "".join(f'[[connections]]\nid = "{cid}"\nurl = "http://127.0.0.1:9/"\n{extra}\n' for cid in ids)
    if table is not None:
        text += f"\n[plugins.{plugin}]\n{table}\n"
    return parse_config(text, path=tmp_path / at)


def configure_error(plugin: Any, config: Config) -> ConfigError:
    """The ``ConfigError`` that ``plugin.sseplug_configure(config)`` raises (it must raise one)."""
    with pytest.raises(ConfigError) as caught:
        plugin.sseplug_configure(config)
    return caught.value


def drain(
    client: SSEClient, connection_id: str, request: SSERequest | str, config: Config | None = None, *,
    timeout: float, limit: int,
) -> list[SSEResponse]:
    """Every event of one stream until it ends (routed as ``config`` routes the connection: sinks,
    errors policy); bounded by ``limit`` events and ``timeout`` seconds."""
    if isinstance(request, str):
        request = SSERequest(request)
    routed = {} if config is None else {"route": next(c.route() for c in config.connections if c.id == connection_id)}
    events: list[SSEResponse] = []
    with gevent.Timeout(timeout, AssertionError(f"{connection_id}: stream did not end; got {len(events)}")):
        for event in client.connect(connection_id, request, **routed):
            events.append(event)
            assert len(events) <= limit, "more events than the server sends"
    return events


def wait_until(condition: Callable[[], Any], timeout: float, message: Callable[[], str], step: float = 0.02) -> None:
    """Return once ``condition()`` is true; fail with ``message()`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message())
        gevent.sleep(step)


class HubWatch:
    """A greenlet ticking every ``TICK`` seconds from its creation until ``stop()`` (or the end of
    a ``with`` block): ``longest`` is the longest gap between two ticks, how long the hub was held."""

    TICK = 0.005

    def __init__(self) -> None:
        self.longest = 0.0
        self.ticks = 0
        self._greenlet = gevent.spawn(self._tick)

    def __enter__(self) -> HubWatch:
        gevent.sleep(0)  # let it take its first reading
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop ticking."""
        self._greenlet.kill()

    def _tick(self) -> None:
        last = time.perf_counter()
        for _ in range(100_000):  # bounded; killed long before
            gevent.sleep(self.TICK)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            self.ticks += 1
            last = now
