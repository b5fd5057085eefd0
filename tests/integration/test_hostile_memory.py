"""A server sending endless short lines and never a blank line: memory stays near max_event_size.

The consumer runs in a child process, so its peak RSS is its own: it reads the stream with
``SSEClient`` until ``EventTooLargeError`` and prints how far its RSS grew meanwhile. The peak is
the child's VmHWM, not ``getrusage().ru_maxrss``: Linux carries ru_maxrss across exec, so there
it starts at the RSS of the (v)forking parent, this whole pytest process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import gevent
import pytest

from sseplug import SSEClient, SSERequest
from sseplug.client import EventStream
from sseplug.server import Response, SSEServer

LIMIT = 4 * 1024 * 1024  # max_event_size
PIECE = 1024 * 1024  # bytes per body piece
ROOT = Path(__file__).resolve().parents[2]

CONSUMER = """
from gevent import monkey; monkey.patch_all()
import json, sys
from sseplug import SSEClient, SSERequest
from sseplug.client import EventStream
from sseplug.plugins import create_plugin_manager

def status_bytes(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field + ":"))

url, limit = sys.argv[1], int(sys.argv[2])
before = status_bytes("VmRSS")
error = None
with SSEClient(plugin_manager=create_plugin_manager(load_entry_points=False)) as client:
    try:
        for _ in client.connect("flood", SSERequest(url, max_event_size=limit, retry=False)):
            pass
    except Exception as caught:
        error = type(caught).__name__
print(json.dumps({"error": error, "growth": status_bytes("VmHWM") - before}))
"""


@pytest.mark.parametrize("line", [b":\n", b"data: x\n"], ids=["comments", "data"])
def test_endless_short_lines_fail_with_event_too_large_within_a_few_times_max_event_size(
    sse_server: SSEServer, line: bytes
) -> None:
    # past the limit, then the stream stays open: only max_event_size can end it
    pieces = [line * (PIECE // len(line))] * (LIMIT // PIECE + 2)
    sse_server.script("/flood", Response(body=[*pieces, 60.0]))
    child = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, sse_server.url("/flood"), str(LIMIT)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    assert child.returncode == 0, err
    report = json.loads(out)
    assert report["error"] == "EventTooLargeError"
    assert report["growth"] < 3 * LIMIT, f"RSS grew {report['growth'] / LIMIT:.1f}x max_event_size"


def test_streams_idle_after_large_events_hold_no_more_memory_than_after_small_ones(
    sse_server: SSEServer, sse_client: SSEClient
) -> None:
    """After 64 KiB events the connection reads up to 1 MiB at a time; while it waits for more,
    it holds neither a buffer of that size, nor its last read, nor its last batch of events
    (the iterator neither, while its consumer waits for the next event)."""
    streams = 40
    held: dict[int, float] = {}
    for size in (64, 64 * 1024, 64):  # the first round takes the one-time allocations
        event = b"data: " + b"x" * size + b"\n\n"
        sse_server.script(f"/{size}", Response(body=[event * 4], stall=30))  # then silence
        seen: list[int] = []

        def consume(stream: EventStream) -> None:
            for event in stream:
                seen.append(len(event.data))
                del event  # not held while waiting for the next one: what is left is sseplug's

        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            consumers = [gevent.spawn(consume, sse_client.connect(f"{size}-{n}", SSERequest(sse_server.url(f"/{size}"))))
                         for n in range(streams)]
            with gevent.Timeout(20, AssertionError(f"{len(seen)} of {4 * streams} events")):
                while len(seen) < 4 * streams:
                    gevent.sleep(0.05)
            gevent.sleep(0.2)
            held[size] = (tracemalloc.get_traced_memory()[0] - before) / streams
        finally:
            tracemalloc.stop()
        sse_client.close()
        gevent.joinall(consumers, timeout=5, raise_error=True)
    assert held[64 * 1024] < held[64] + 4096, f"bytes held per idle stream, by event size: {held}"
