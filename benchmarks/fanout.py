"""Many idle streams in one process, then broadcasts: connect time, memory, latency, CPU per event.

    python benchmarks/fanout.py [--streams 1000] [--events 20] [--interval 0.5] [--clients ...] [--rounds 1]

For each client, in turn: a fresh server process (gevent StreamServer; chunked responses, one HTTP
chunk per event, pre-encoded once per broadcast and written to every socket) and a fresh client
process that opens K streams to it. The client process measures:

- connect: from the first connect to the moment all K streams delivered the server's first
  ("hello") event;
- RSS per stream: VmRSS after all K streams are up minus VmRSS before the first connect, / K;
- then the server broadcasts N events to all K streams, one every --interval seconds; each
  event's data is {"seq": i, "t": time.time() at the start of that broadcast}, so p50/p99/max
  latency is receive time - t over all K x N deliveries (loopback: one clock), including the
  server's own fan-out time (shown as "server fan-out": time to write one event to all K);
- CPU per delivered event: user + system CPU time of the client process (getrusage) from the
  start of the broadcasts to the last delivery, / (K x N).

The interval should exceed the time a client needs for one broadcast (K x its per-event cost);
otherwise broadcasts queue up and latency grows with N.

Clients: sseplug with a handler plugin (sseplug_handle_event, iterate=False: the runner's way),
sseplug with one iterator per stream (client.connect() consumed by a greenlet each), two bare
gevent + urllib3 readers (one greenlet per stream, resp.stream() or read1, split on b"\\n\\n",
json.loads), and asyncio + httpx-sse (one task per stream, json.loads). sseplug's json plugin
decodes the data (orjson when installed); the others use json.loads. RLIMIT_NOFILE is raised to
its hard limit in the server and client processes.

With --rounds R every client runs R times, in a rotating order, and a summary gives each sseplug
client's medians of paired ratios against the floor: in each round, the lowest RSS per stream,
p99 and CPU per event of the bare readers (each metric its own minimum), so the comparison is
with the cheapest a bare gevent + urllib3 reader does here, never with a slow one.
"""

from __future__ import annotations

import sys

GEVENT_CLIENTS = {"sseplug-plugin", "sseplug-iterators", "gevent-urllib3-stream", "gevent-urllib3"}
if __name__ == "__main__" and "--client" in sys.argv and sys.argv[sys.argv.index("--client") + 1] in GEVENT_CLIENTS:
    from gevent import monkey

    monkey.patch_all()
elif __name__ == "__main__" and "--serve" in sys.argv:
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
CLIENTS = {
    "sseplug-plugin": "sseplug, handler plugin",
    "sseplug-iterators": "sseplug, iterator per stream",
    "gevent-urllib3-stream": "gevent + urllib3 stream()",
    "gevent-urllib3": "gevent + urllib3 read1",
    "asyncio-httpx-sse": "asyncio + httpx-sse",
}
BARE = ("gevent-urllib3-stream", "gevent-urllib3")  # the floor: a bare reader, one greenlet per stream
HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
HELLO = b'event: hello\ndata: {"hello":1}\n\n'


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def chunk(event: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(event), event)


# -- server --------------------------------------------------------------------------------------

def serve() -> int:
    import gevent
    import gevent.event
    from gevent.server import StreamServer

    raise_nofile()
    streams: list[Any] = []
    forever = gevent.event.Event()
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")

    def broadcast(n: int, interval: float) -> list[float]:
        fanout = []
        start = time.monotonic()
        for i in range(n):
            gevent.sleep(max(0.0, start + (i + 1) * interval - time.monotonic()))
            t0 = time.perf_counter()
            payload = chunk(b'id: %d\nevent: tick\ndata: {"seq":%d,"t":%.6f}\n\n' % (i, i, time.time()))
            size = len(payload)
            for sock, raw_send in streams:
                sent = raw_send(payload)  # the non-blocking OS socket: no greenlet switch when it fits
                if sent < size:
                    sock.sendall(payload[sent:])
            fanout.append(time.perf_counter() - t0)
        return fanout

    def handle(sock: Any, address: Any) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            more = sock.recv(4096)
            if not more:
                return
            request += more
        path = request.split(b" ", 2)[1].decode()
        if path.startswith("/broadcast"):
            query = dict(part.split("=") for part in path.partition("?")[2].split("&"))
            body = json.dumps({"fanout": broadcast(int(query["n"]), float(query["interval"]))}).encode()
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            return
        sock.sendall(head + chunk(HELLO))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        streams.append((sock, sock._sock.send))
        forever.wait()  # the stream stays open until the process ends

    server = StreamServer(("127.0.0.1", 0), handle, backlog=4096)
    server.start()
    print(json.dumps({"port": server.server_port}), flush=True)
    server.serve_forever()
    return 0


# -- clients -------------------------------------------------------------------------------------

class Tally:
    """What every client records: hellos, and per tick the latency from the server's stamp."""

    def __init__(self, streams: int, ticks: int, done: Any, up: Any) -> None:
        self.streams, self.ticks = streams, ticks
        self.hellos = 0
        self.latencies: list[float] = []
        self.done, self.up = done, up  # events with .set(): all ticks seen, all streams up
        self.t_last = 0.0

    def seen(self, data: dict) -> None:
        t = data.get("t")
        if t is None:
            self.hellos += 1
            if self.hellos == self.streams:
                self.up.set()
            return
        self.latencies.append(time.time() - t)
        if len(self.latencies) == self.ticks:
            self.t_last = cpu_seconds()
            self.done.set()


def run_gevent_client(name: str, url: str, k: int, ticks: int, report: Any) -> dict:
    import gevent
    import gevent.event

    tally = Tally(k, ticks, gevent.event.Event(), gevent.event.Event())
    if name.startswith("sseplug"):
        from sseplug import SSEClient, SSERequest, hookimpl
        from sseplug.plugins import create_plugin_manager

        class Bench:
            @hookimpl
            def sseplug_handle_event(self, event: Any) -> None:
                tally.seen(event.data)

        extra = [("bench", Bench())] if name == "sseplug-plugin" else []
        client = SSEClient(plugin_manager=create_plugin_manager(load_entry_points=False, extra=extra), pool_size=k)
        request = SSERequest(url, retry=False)

        def consume(stream: Any) -> None:
            for event in stream:
                tally.seen(event.data)

        def start() -> None:
            for i in range(k):
                stream = client.connect(f"s{i}", request, iterate=name != "sseplug-plugin")
                if name == "sseplug-iterators":
                    gevent.spawn(consume, stream)
    else:
        import urllib3

        http = urllib3.PoolManager(maxsize=k, retries=False, timeout=urllib3.Timeout(connect=120, read=None))
        loads = json.loads

        def blocks_of(chunks: Any) -> None:
            buffer = b""
            for data in chunks:
                *blocks, buffer = (buffer + data).split(b"\n\n")
                for block in blocks:
                    at = block.find(b"data: ")
                    if at >= 0:
                        end = block.find(b"\n", at)
                        tally.seen(loads(block[at + 6 : end] if end > 0 else block[at + 6 :]))

        def read1_chunks(response: Any) -> Any:
            read1 = response.read1
            while data := read1(65536):
                yield data

        def reader() -> None:
            response = http.request("GET", url, preload_content=False, headers=HEADERS)
            # stream(): one HTTP chunk as it comes (chunked bodies); read1: what is buffered or one recv
            blocks_of(response.stream(65536) if name == "gevent-urllib3-stream" else read1_chunks(response))

        def start() -> None:
            for _ in range(k):
                gevent.spawn(reader)

    gc.collect()
    rss_before = rss_kib()
    t0 = time.perf_counter()
    start()
    if not tally.up.wait(300):
        raise RuntimeError(f"only {tally.hellos} of {k} streams up after 300 s")
    connect = time.perf_counter() - t0
    rss_after = rss_kib()
    cpu0 = cpu_seconds()
    report({"connect_s": connect, "rss_before_kib": rss_before, "rss_after_kib": rss_after})
    tally.done.wait(600)
    return finish(tally, cpu0)


def run_asyncio_client(url: str, k: int, ticks: int, report: Any) -> dict:
    import asyncio

    import httpx
    from httpx_sse import aconnect_sse

    async def main() -> dict:
        tally = Tally(k, ticks, asyncio.Event(), asyncio.Event())
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=120),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
        )
        loads = json.loads

        async def reader() -> None:
            async with aconnect_sse(client, "GET", url) as source:
                async for sse in source.aiter_sse():
                    tally.seen(loads(sse.data))

        gc.collect()
        rss_before = rss_kib()
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(reader()) for _ in range(k)]
        await asyncio.wait_for(tally.up.wait(), 300)
        connect = time.perf_counter() - t0
        rss_after = rss_kib()
        cpu0 = cpu_seconds()
        report({"connect_s": connect, "rss_before_kib": rss_before, "rss_after_kib": rss_after})
        try:
            await asyncio.wait_for(tally.done.wait(), 600)
        except TimeoutError:
            pass
        assert tasks
        return finish(tally, cpu0)

    return asyncio.run(main())


def finish(tally: Tally, cpu0: float) -> dict:
    lat = sorted(tally.latencies)
    n = len(lat)
    cpu_end = tally.t_last or cpu_seconds()
    return {
        "delivered": n,
        "p50_ms": lat[n // 2] * 1e3 if n else None,
        "p99_ms": lat[min(n - 1, int(n * 0.99))] * 1e3 if n else None,
        "max_ms": lat[-1] * 1e3 if n else None,
        "cpu_us_per_event": (cpu_end - cpu0) / n * 1e6 if n else None,
    }


def client_main(name: str, port: int, k: int, events: int) -> int:
    raise_nofile()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    url = f"http://127.0.0.1:{port}/stream"

    def report(line: dict) -> None:
        out.write(json.dumps(line) + "\n")

    if name == "asyncio-httpx-sse":
        result = run_asyncio_client(url, k, k * events, report)
    else:
        result = run_gevent_client(name, url, k, k * events, report)
    report(result)
    out.flush()
    os._exit(0)  # skip tearing down thousands of sockets one by one; the controller reaps us


# -- controller ----------------------------------------------------------------------------------

def run_one(name: str, args: argparse.Namespace) -> dict:
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    client = None
    try:
        port = json.loads(server.stdout.readline())["port"]
        client = subprocess.Popen(
            [sys.executable, __file__, "--client", name, "--port", str(port), "--streams", str(args.streams),
             "--events", str(args.events)],
            stdout=subprocess.PIPE, text=True,
        )
        line = client.stdout.readline()
        if not line:
            raise RuntimeError(f"{name}: client ended before all streams were up")
        up = json.loads(line)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/broadcast?n={args.events}&interval={args.interval}", timeout=600
        ) as answer:
            fanout = json.loads(answer.read())["fanout"]
        result = json.loads(client.stdout.readline())
        result.update(up)
        result["fanout_ms"] = (statistics.median(fanout) * 1e3, max(fanout) * 1e3)
        return result
    finally:
        for proc in (client, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--streams", type=int, default=1000, help="K streams (default 1000)")
    options.add_argument("--events", type=int, default=20, help="N broadcasts (default 20)")
    options.add_argument("--interval", type=float, default=0.5, help="seconds between broadcasts")
    options.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated subset of " + ",".join(CLIENTS))
    options.add_argument("--rounds", type=int, default=1, help="runs of every client, in a rotating order (default 1)")
    options.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    options.add_argument("--client", help=argparse.SUPPRESS)
    options.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = options.parse_args(argv)
    if args.serve:
        return serve()
    if args.client:
        return client_main(args.client, args.port, args.streams, args.events)

    limit = raise_nofile()
    names = args.clients.split(",")
    print(f"fanout: K={args.streams} streams, N={args.events} broadcasts every {args.interval:g} s "
          f"({args.streams * args.events} deliveries), {args.rounds} round(s); RLIMIT_NOFILE {limit}; "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"  {'client':<30} {'connect':>8} {'RSS/stream':>11} {'p50':>8} {'p99':>8} {'max':>8} "
          f"{'CPU/event':>10} {'delivered':>10}   server fan-out med/max")
    rounds: list[dict[str, dict[str, float]]] = []
    for r in range(args.rounds):
        shift = r % len(names)
        measured: dict[str, dict[str, float]] = {}
        for name in names[shift:] + names[:shift]:
            res = run_one(name, args)
            per_stream = (res["rss_after_kib"] - res["rss_before_kib"]) / args.streams
            measured[name] = {"rss": per_stream, "p99": res["p99_ms"], "cpu": res["cpu_us_per_event"]}
            print(f"  {CLIENTS[name]:<30} {res['connect_s']:7.2f}s {per_stream:7.1f} KiB {res['p50_ms']:6.1f}ms "
                  f"{res['p99_ms']:6.1f}ms {res['max_ms']:6.1f}ms {res['cpu_us_per_event']:7.1f} us "
                  f"{res['delivered']:>10}   {res['fanout_ms'][0]:.1f} / {res['fanout_ms'][1]:.1f} ms", flush=True)
        rounds.append(measured)
    summary(rounds, names)
    return 0


def summary(rounds: list[dict[str, dict[str, float]]], names: list[str]) -> None:
    """Medians over the rounds, and each sseplug client's medians of paired ratios to the floor."""
    bare = [name for name in names if name in BARE]
    print(f"medians over {len(rounds)} round(s)  (load {os.getloadavg()[0]:.2f})")
    for name in names:
        row = {metric: statistics.median(m[name][metric] for m in rounds) for metric in ("rss", "p99", "cpu")}
        print(f"  {CLIENTS[name]:<30} RSS/stream {row['rss']:6.1f} KiB   p99 {row['p99']:6.1f} ms   "
              f"CPU/event {row['cpu']:6.1f} us")
    if not bare:
        return
    floors = [{metric: min(m[b][metric] for b in bare) for metric in ("rss", "p99", "cpu")} for m in rounds]
    rss_floor = statistics.median(f["rss"] for f in floors)
    print(f"against the floor (per round, the lowest of {', '.join(CLIENTS[b] for b in bare)}): "
          f"medians of paired ratios; targets RSS/stream <= max(32 KiB, 1.3x) = {max(32.0, 1.3 * rss_floor):.1f} KiB, "
          "CPU/event <= 1.2x, p99 <= 1.5x")
    for name in names:
        if not name.startswith("sseplug"):
            continue
        ratio = {metric: statistics.median(m[name][metric] / f[metric] for m, f in zip(rounds, floors))
                 for metric in ("rss", "p99", "cpu")}
        rss = statistics.median(m[name]["rss"] for m in rounds)
        met = {"rss": rss <= max(32.0, 1.3 * rss_floor), "cpu": ratio["cpu"] <= 1.2, "p99": ratio["p99"] <= 1.5}
        print(f"  {CLIENTS[name]:<30} RSS/stream {ratio['rss']:.2f}x ({'met' if met['rss'] else 'NOT met'})   "
              f"CPU/event {ratio['cpu']:.2f}x ({'met' if met['cpu'] else 'NOT met'})   "
              f"p99 {ratio['p99']:.2f}x ({'met' if met['p99'] else 'NOT met'})")
        if "gevent-urllib3-stream" in bare and len(bare) > 1:  # the bare reader alone, for reference
            alone = {metric: statistics.median(m[name][metric] / m["gevent-urllib3-stream"][metric] for m in rounds)
                     for metric in ("rss", "p99", "cpu")}
            print(f"  {'  vs ' + CLIENTS['gevent-urllib3-stream'] + ' alone':<30} RSS/stream {alone['rss']:.2f}x"
                  f"          CPU/event {alone['cpu']:.2f}x          p99 {alone['p99']:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
