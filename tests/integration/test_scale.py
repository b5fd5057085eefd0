"""10,000 streams on one default ``SSEClient()``: all open at once, every event delivered."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from collections.abc import Iterator

import gevent
import pytest

from sseplug import SSEClient, SSERequest, SSEResponse
from sseplug.connection import ConnectionState
from sseplug.models import DEFAULT_POOL_SIZE

STREAMS = DEFAULT_POOL_SIZE
FILES_NEEDED = STREAMS + 1_000  # a socket per stream, plus the test process's own files

# A separate process (its own file limit and CPU): /feed/<name> sends ": hello", event 1 at once,
# event 2 after `interval` seconds, then ends. It prints its port; the test kills it by its pid
# (and it ends by itself after 15 minutes, should the test process die first).
SERVER = f"""
from gevent import monkey; monkey.patch_all()
import gevent, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, {FILES_NEEDED}), max(hard, {FILES_NEEDED})))
from sseplug.server import SSEServer
server = SSEServer(backlog=4096).start()  # gevent's default (256) turns a burst of connects into SYN retries
print(server.port, flush=True)
gevent.sleep(900)
"""


@pytest.fixture
def file_limit() -> Iterator[None]:
    """RLIMIT_NOFILE raised to fit every socket (root may raise the hard limit too), then restored."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft, hard = before
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, FILES_NEEDED), max(hard, FILES_NEEDED)))
    except (ValueError, OSError) as error:
        pytest.skip(f"cannot raise RLIMIT_NOFILE to {FILES_NEEDED} (hard limit {hard}, not root): {error}")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


@pytest.fixture
def feed_server_port() -> Iterator[int]:
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        yield int(server.stdout.readline())
    finally:
        server.kill()  # it holds nothing that needs a clean stop
        server.wait(10)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ten_thousand_streams_on_a_default_client(file_limit: None, feed_server_port: int) -> None:
    """Every stream is open at the same moment (each delivered event 1 and waits for event 2),
    then each gets event 2 and ends cleanly: 20,000 events, none lost, no stream failed."""
    seen: dict[str, list[int]] = {}
    first_events = 0

    def on_data(name: str) -> object:
        def record(event: SSEResponse) -> None:
            nonlocal first_events
            seen[name].append(event.data["seq"])
            first_events += event.data["seq"] == 1
        return record

    interval = 20.0  # event 2 comes this long after event 1: room for all 10,000 to connect (9.5 s here)
    started = time.monotonic()
    with SSEClient() as client:  # the default pool_size holds them all
        streams = []
        for n in range(STREAMS):
            name = f"s{n}"
            seen[name] = []
            url = f"http://127.0.0.1:{feed_server_port}/feed/{name}?count=2&interval={interval}"
            request = SSERequest(url, reconnect="on_error", on_data=on_data(name))
            streams.append(client.connect(name, request, iterate=False))
        with gevent.Timeout(interval - 3, AssertionError(f"only {first_events} of {STREAMS} streams opened")):
            while first_events < STREAMS:
                gevent.sleep(0.1)
        opened = time.monotonic() - started
        assert len(client.connections) == STREAMS
        assert all(s.state is ConnectionState.OPEN for s in streams)
        assert sum(s.wait(interval + 60) for s in streams) == STREAMS  # the same deadline, one by one
        assert [s.error for s in streams if s.error is not None] == []
        assert client.connections == {}
    assert all(seqs == [1, 2] for seqs in seen.values())
    print(f"{STREAMS} streams open in {opened:.1f} s; all ended cleanly after {time.monotonic() - started:.1f} s")
