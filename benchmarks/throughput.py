"""Throughput: sseplug next to the peers and a urllib3 read-and-discard baseline, over loopback.

    python benchmarks/throughput.py [--workload small] [--rounds 5] [--quick] [--json-lib orjson|json]

A server process (sse_server.py) sends each workload's precomputed body; every client runs in a
worker process of its own (clients.py: sseplug in a gevent-patched one, each peer in a plain one).
Workloads:

    small          100k events: id + event + 64-byte JSON data, close-delimited
    large          2k events of 64 KiB text data, close-delimited
    multiline      50k events of 8 data lines (32 bytes each), close-delimited
    multiline-digits  the same with digit-led lines ("00000001-line0,...": CSV rows, ids), not JSON
    small-chunked  small, chunked with one HTTP chunk per event

Every contender runs once to warm up, then round after round, each round running every contender
once in a rotating order; every run is checked (event count, last id, last data; bytes for the
urllib3 baselines) before its time counts. Figures are medians over the rounds (minflt: the
worker's minor page faults per run, from getrusage: memory the allocator gave back to the system
and took again shows there); ratios are medians of the per-round ratios against the peer with
the best median, against "urllib3 read": the faster (by median) of two plain-process
read-and-discard loops, read1(64 KiB) and stream(64 KiB) (on a chunked body urllib3's read1
costs a few us per call and returns one chunk per call), and against the ceiling: a
plain-process socket that sends the request itself and reads the response with recv_into into
one reused 1 MiB buffer, no HTTP parsing (its check counts the body's bytes after the head,
chunked framing included): no client reads the loopback faster than that.

Like for like: sseplug's json plugin hands back decoded JSON, so on JSON workloads (small,
small-chunked) each peer also runs with a JSON decode per event and "sseplug" is compared with
those; "sseplug, no json plugin" is compared with the peers without it. Every side decodes with
the same library: orjson by default, or the standard library's json with --json-lib json (then
sseplug's json plugin runs over json.loads too).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sse_server import WORKLOADS, Workload

HERE = Path(__file__).resolve().parent
PEERS = ["launchdarkly-eventsource", "httpx-sse", "sseclient-py", "aiohttp-sse-client2"]
SSEPLUG = ["sseplug", "sseplug-nojson"]
BASELINES = ["urllib3-read1", "urllib3-stream", "urllib3-read1-gevent", "socket-recv-into"]
CEILING = "socket-recv-into"
LABELS = {
    "sseplug": "sseplug (json plugin)",
    "sseplug-nojson": "sseplug, no json plugin",
    "urllib3-read1": "urllib3 read1, discard",
    "urllib3-stream": "urllib3 stream(64 KiB), discard",
    "urllib3-read1-gevent": "urllib3 read1, discard (gevent)",
    CEILING: "socket recv_into(1 MiB), ceiling",
}


class Worker:
    def __init__(self, name: str, json_lib: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "clients.py"), name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            env={**os.environ, "SSEPLUG_BENCH_JSON": json_lib},
        )
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"worker {name} did not start: {line!r}")

    def run(self, url: str, decode: bool, stop: int | None) -> dict:
        self.proc.stdin.write(json.dumps({"url": url, "json": decode, "stop": stop}) + "\n")
        reply = json.loads(self.proc.stdout.readline())
        if "error" in reply:
            raise RuntimeError(f"{self.name} on {url}: {reply['error']}\n{reply['traceback']}")
        return reply

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Contender:
    label: str
    worker: str
    decode: bool
    kind: str  # sseplug, peer, baseline
    json_class: bool  # compared within the json.loads class (or the raw one)
    rates: list[float] = field(default_factory=list)  # events/s per round
    mbs: list[float] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)  # the worker's minor page faults per run


def contenders_for(workload: Workload, json_lib: str) -> list[Contender]:
    out = [
        Contender(LABELS["sseplug"], "sseplug", False, "sseplug", workload.json),
        Contender(LABELS["sseplug-nojson"], "sseplug-nojson", False, "sseplug", False),
    ]
    for peer in PEERS:
        if workload.json:
            out.append(Contender(f"{peer} + {json_lib}.loads", peer, True, "peer", True))
        out.append(Contender(peer, peer, False, "peer", False))
    for base in BASELINES:
        out.append(Contender(LABELS[base], base, False, "baseline", False))
    return out


def check(c: Contender, reply: dict, workload: Workload, n: int, payload: int, wire: int) -> None:
    if c.kind == "baseline":
        ok = reply["bytes"] == (wire if c.worker == CEILING else payload)
    else:
        expected_last = n - 1 if (c.decode or (c.worker == "sseplug" and workload.json)) else workload.data_len
        ok = reply["count"] == n and reply["last_id"] == str(n - 1) and reply["last"] == expected_last
    if not ok:
        raise AssertionError(f"{c.label} on {workload.name}: wrong result {reply} (expected {n} events, {payload} bytes)")


def run_workload(workload: Workload, args: argparse.Namespace, port: int, payload: int, wire: int,
                 workers: dict[str, Worker]) -> list[str]:
    url = f"http://127.0.0.1:{port}/{workload.name}"
    n = workload.count(args.quick)
    contenders = contenders_for(workload, args.json_lib)

    def once(c: Contender) -> dict:
        # aiohttp-sse-client2 reconnects at EOF instead of ending: stop it at the expected count
        stop = n if c.worker == "aiohttp-sse-client2" else None
        reply = workers[c.worker].run(url, c.decode, stop)
        check(c, reply, workload, n, payload, wire)
        return reply

    for c in contenders:  # warm-up and correctness before any timing
        once(c)
    for r in range(args.rounds):
        shift = r % len(contenders)
        for c in contenders[shift:] + contenders[:shift]:
            reply = once(c)
            seconds = reply["seconds"]
            c.faults.append(reply["minflt"])
            c.rates.append(n / seconds)
            c.mbs.append(payload / seconds / 1e6)

    def best(json_class: bool) -> Contender:
        peers = [c for c in contenders if c.kind == "peer" and c.decode == json_class]
        return max(peers, key=lambda c: statistics.median(c.rates))

    base = max((c for c in contenders if c.worker in ("urllib3-read1", "urllib3-stream")),
               key=lambda c: statistics.median(c.rates))  # "urllib3 read": the faster plain way
    ceiling = next(c for c in contenders if c.worker == CEILING)
    framing = "chunked, one chunk per event" if workload.chunked else "close-delimited"
    lines = [
        f"{workload.name}: {n} events, {payload / 1e6:.1f} MB, {framing}; {args.rounds} rounds, medians; "
        f"urllib3 read = {base.label}",
        f"  {'client':<38} {'events/s':>10} {'MB/s':>8} {'vs urllib3 read':>17} {'vs ceiling':>11} {'minflt':>8}   vs best peer",
    ]
    for c in contenders:
        ratio_base = statistics.median(a / b for a, b in zip(c.rates, base.rates))
        ratio_ceiling = statistics.median(a / b for a, b in zip(c.rates, ceiling.rates))
        text = (f"  {c.label:<38} {statistics.median(c.rates) / 1e3:9.0f}k {statistics.median(c.mbs):8.0f}"
                f" {ratio_base:16.2f}x {ratio_ceiling:10.2f}x {statistics.median(c.faults):8.0f}")
        if c.kind == "sseplug":
            peer = best(c.json_class)
            ratio = statistics.median(a / b for a, b in zip(c.rates, peer.rates))
            text += f"   {ratio:.2f}x {peer.label}"
        lines.append(text)
    return lines


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--workload", choices=sorted(WORKLOADS), action="append",
                         help="run only this workload (repeatable); default: all")
    options.add_argument("--rounds", type=int, default=5)
    options.add_argument("--quick", action="store_true", help="a tenth of the events, for a fast check")
    options.add_argument("--json-lib", choices=["orjson", "json"], default="orjson",
                         help="the JSON library of every contender, sseplug's json plugin included (default orjson)")
    args = options.parse_args(argv)
    names = args.workload or list(WORKLOADS)

    server = subprocess.Popen(
        [sys.executable, str(HERE / "sse_server.py"), "--workloads", ",".join(names)] + (["--quick"] if args.quick else []),
        stdout=subprocess.PIPE, text=True,
    )
    workers: dict[str, Worker] = {}
    started = time.perf_counter()
    try:
        info = json.loads(server.stdout.readline())
        for name in SSEPLUG + PEERS + BASELINES:
            workers[name] = Worker(name, args.json_lib)
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; server pid {server.pid}, "
              f"{len(workers)} worker processes; JSON on every side: {args.json_lib}.loads", flush=True)
        for name in names:
            path = "/" + name
            lines = run_workload(WORKLOADS[name], args, info["port"], info["bodies"][path], info["wire"][path], workers)
            print("\n".join(lines), flush=True)
        print(f"total {time.perf_counter() - started:.0f} s")
    finally:
        for worker in workers.values():
            worker.stop()
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
