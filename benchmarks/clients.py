"""Benchmark worker: one SSE client in its own process, driven over stdin/stdout.

    python benchmarks/clients.py NAME

NAME is one of CLIENTS. gevent-based clients (sseplug, the gevent urllib3 baseline) get gevent's
monkey patches before anything else is imported; the others run in a plain process. The worker
prints "ready", then for each JSON command line on stdin
``{"url": ..., "json": bool, "stop": int | null}`` it consumes the stream and prints one JSON line:
``{"count", "bytes", "last_id", "last", "seconds", "minflt"}`` where ``last`` is the last event's data as a
check value (``data["seq"]`` when decoded, else ``len(data)``) and ``seconds`` runs from just
before the request to just after the last event counted (``stop`` events, else the end of the
stream), before any close, and ``minflt`` counts the worker's minor page faults over the same
run (``getrusage``). ``json`` asks a peer to decode each event's data (sseplug's variants
decode, or not, by their plugins) with the library ``SSEPLUG_BENCH_JSON`` names, ``orjson``
(default) or ``json``, which sseplug's json plugin uses too. Any failure is printed as
``{"error": ...}``.
"""

from __future__ import annotations

import sys

GEVENT_CLIENTS = {"sseplug", "sseplug-nojson", "urllib3-read1-gevent"}

if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] in GEVENT_CLIENTS:
    from gevent import monkey

    monkey.patch_all()

import atexit  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable, Iterable  # noqa: E402
from typing import Any  # noqa: E402

READ = 64 * 1024
JSON_LIB = os.environ.get("SSEPLUG_BENCH_JSON", "orjson")  # the JSON library of every contender
if JSON_LIB == "orjson":
    import orjson

    LOADS: Callable[[Any], Any] = orjson.loads
else:
    LOADS = json.loads
HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
Result = tuple[int, int, Any, Any, float]  # count, bytes (-1 when unknown), last id, last data, t_end
Consume = Callable[[str, bool, int], Result]


def _check(data: Any) -> Any:
    if isinstance(data, dict):
        return data.get("seq")
    return len(data) if isinstance(data, str) else repr(data)


def take(events: Iterable[Any], decode: bool, stop: int) -> tuple[int, Any, Any]:
    """Step through a peer's ``events`` as its user would, up to ``stop`` of them: ``(count,
    last event, last data)``, with ``json.loads`` of each event's data when ``decode``. The one
    loop every synchronous peer is timed with."""
    n, ev, data = 0, None, None
    if decode:
        loads = LOADS
        for ev in events:
            data = loads(ev.data)
            n += 1
            if n == stop:
                break
    else:
        for ev in events:
            n += 1
            if n == stop:
                break
        if ev is not None:
            data = ev.data
    return n, ev, data


def make_sseplug(json_plugin: bool) -> Consume:
    from sseplug import SSEClient, SSERequest
    from sseplug.plugins import create_plugin_manager

    extra: list[tuple[str, object]] = []
    if json_plugin and JSON_LIB != "orjson":  # the built-in plugin's checks over the same library as the peers
        extra.append(("json-stdlib", _stdlib_json_plugin()))
    disable = () if json_plugin and not extra else ["json"]
    manager = create_plugin_manager(load_entry_points=False, disable=disable, extra=extra)
    client = SSEClient(plugin_manager=manager)
    runs = iter(range(10**9))

    def consume(url: str, decode: bool, stop: int) -> Result:
        cid = f"bench-{next(runs)}"
        n = 0
        ev = None
        for ev in client.connect(cid, SSERequest(url, retry=False)):
            n += 1
            if n == stop:
                break
        t_end = time.perf_counter()
        if n == stop:
            client.close(cid)
        return n, -1, ev.id if ev else None, ev.data if ev else None, t_end

    return consume


def _stdlib_json_plugin() -> object:
    """sseplug's json plugin with the standard library's decoder instead of orjson."""
    import types

    from sseplug import hookimpl
    from sseplug.builtin.json import make_decoder

    decode = make_decoder(json.loads, ValueError)

    @hookimpl(trylast=True)
    def sseplug_deserialize(event: Any) -> Any:
        return decode(event.data)

    sseplug_deserialize.text_decoder = decode  # type: ignore[attr-defined]  # decoded by the parser, as built in
    return types.SimpleNamespace(sseplug_deserialize=sseplug_deserialize)


def make_launchdarkly() -> Consume:
    import urllib3
    from ld_eventsource import SSEClient
    from ld_eventsource.config import ConnectStrategy, ErrorStrategy

    pool = urllib3.PoolManager()

    def consume(url: str, decode: bool, stop: int) -> Result:
        client = SSEClient(ConnectStrategy.http(url, pool=pool), error_strategy=ErrorStrategy.always_fail())
        n, ev, data = take(client.events, decode, stop)
        t_end = time.perf_counter()
        client.close()
        return n, -1, ev.last_event_id if ev else None, data, t_end

    return consume


def make_httpx_sse() -> Consume:
    import httpx
    from httpx_sse import connect_sse

    client = httpx.Client(timeout=None)

    def consume(url: str, decode: bool, stop: int) -> Result:
        with connect_sse(client, "GET", url) as source:
            n, sse, data = take(source.iter_sse(), decode, stop)
            t_end = time.perf_counter()
        return n, -1, sse.id if sse else None, data, t_end

    return consume


def make_sseclient_py() -> Consume:
    import sseclient
    import urllib3

    pool = urllib3.PoolManager()

    def consume(url: str, decode: bool, stop: int) -> Result:
        # sseclient-py reads any iterable of bytes; a urllib3 response iterates by lines.
        response = pool.request("GET", url, preload_content=False, headers=HEADERS)
        client = sseclient.SSEClient(response)
        n, ev, data = take(client.events(), decode, stop)
        t_end = time.perf_counter()
        client.close()
        response.release_conn()
        return n, -1, ev.id if ev else None, data, t_end

    return consume


def make_aiohttp_sse_client2() -> Consume:
    import asyncio

    import aiohttp
    from aiohttp_sse_client2 import client as sse_client

    loop = asyncio.new_event_loop()
    session = loop.run_until_complete(_aiohttp_session(aiohttp))
    atexit.register(lambda: loop.run_until_complete(session.close()))

    async def run(url: str, decode: bool, stop: int) -> Result:
        # EventSource reconnects after EOF (it never ends by itself): the worker is told to stop
        # at the expected count, and the last event's id and data show nothing was lost.
        n, ev, data = 0, None, None
        async with sse_client.EventSource(url, session=session) as source:
            if decode:
                loads = LOADS
                async for ev in source:
                    data = loads(ev.data)
                    n += 1
                    if n == stop:
                        break
            else:
                async for ev in source:
                    n += 1
                    if n == stop:
                        break
            t_end = time.perf_counter()
        if ev is not None and not decode:
            data = ev.data
        return n, -1, ev.last_event_id if ev else None, data, t_end

    def consume(url: str, decode: bool, stop: int) -> Result:
        return loop.run_until_complete(run(url, decode, stop))

    return consume


async def _aiohttp_session(aiohttp: Any) -> Any:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))


def make_urllib3_read1() -> Consume:
    """Baseline: read the body with read1() and throw it away; events counted with bytes.count."""
    import urllib3

    pool = urllib3.PoolManager()

    def consume(url: str, decode: bool, stop: int) -> Result:
        response = pool.request("GET", url, preload_content=False, headers=HEADERS)
        read1 = response.read1
        total = events = 0
        while True:
            chunk = read1(READ)
            if not chunk:
                break
            total += len(chunk)
            if stop > 0:  # first-event mode only: the throughput baseline does no per-chunk work
                events += chunk.count(b"\n\n")
                if events >= stop:
                    break
        t_end = time.perf_counter()
        response.close()
        response.release_conn()
        return events, total, None, None, t_end

    return consume


def make_urllib3_stream() -> Consume:
    """A reader on urllib3's stream(amt): what many hand-written SSE readers do."""
    import urllib3

    pool = urllib3.PoolManager()

    def consume(url: str, decode: bool, stop: int) -> Result:
        response = pool.request("GET", url, preload_content=False, headers=HEADERS)
        total = events = 0
        for chunk in response.stream(READ):
            total += len(chunk)
            if stop > 0:  # first-event mode only, as in make_urllib3_read1
                events += chunk.count(b"\n\n")
                if events >= stop:
                    break
        t_end = time.perf_counter()
        response.close()
        response.release_conn()
        return events, total, None, None, t_end

    return consume


def make_socket_recv_into() -> Consume:
    """Baseline, the loopback's ceiling: the request written by hand on a plain socket, the
    response read with ``recv_into`` into one reused 1 MiB buffer and thrown away, no HTTP parsing.
    Counts the bytes after the response head (chunked framing included)."""
    import socket
    from urllib.parse import urlsplit

    buffer = bytearray(1024 * 1024)

    def consume(url: str, decode: bool, stop: int) -> Result:
        parts = urlsplit(url)
        request = f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n\r\n"
        with socket.create_connection((parts.hostname, parts.port)) as sock:
            sock.sendall(request.encode())
            recv_into, total, head = sock.recv_into, 0, -1
            while n := recv_into(buffer):
                total += n
                if head < 0:  # the head comes with the first bytes (the server sends it with the body)
                    head = buffer.find(b"\r\n\r\n", 0, n) + 4
                    if head < 4:
                        raise ValueError("the response head did not come in the first read")
            t_end = time.perf_counter()
        return 0, total - head, None, None, t_end

    return consume


CLIENTS: dict[str, Callable[[], Consume]] = {
    "sseplug": lambda: make_sseplug(json_plugin=True),
    "sseplug-nojson": lambda: make_sseplug(json_plugin=False),
    "launchdarkly-eventsource": make_launchdarkly,
    "httpx-sse": make_httpx_sse,
    "sseclient-py": make_sseclient_py,
    "aiohttp-sse-client2": make_aiohttp_sse_client2,
    "urllib3-read1": make_urllib3_read1,
    "urllib3-read1-gevent": make_urllib3_read1,
    "urllib3-stream": make_urllib3_stream,
    "socket-recv-into": make_socket_recv_into,
}


def serve(name: str) -> int:
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the protocol
    consume = CLIENTS[name]()
    out.write("ready\n")
    for line in sys.stdin:
        command = json.loads(line)
        try:
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            count, nbytes, last_id, data, t_end = consume(command["url"], command["json"], command["stop"] or -1)
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
            reply = {"count": count, "bytes": nbytes, "last_id": last_id, "last": _check(data) if count and data is not None else None,
                     "seconds": t_end - t0, "minflt": faults}
        except Exception as error:  # reported to the controller, which stops the run
            reply = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
        out.write(json.dumps(reply) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1]))
