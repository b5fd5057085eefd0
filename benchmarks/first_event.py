"""Time to the first event when the server sends one event and then stays silent.

    python benchmarks/first_event.py [--rounds 3] [--silence 2.0]

The server (sse_server.py, its own process) answers /first-chunked (one HTTP chunk holding the
event) and /first-close (close-delimited, no Content-Length) with one ~40-byte event, then sends
nothing for --silence seconds, then ends the response. Each client (clients.py workers: sseplug in
a gevent-patched process, peers and urllib3 readers in plain ones) is timed from just before its
request to the moment its loop sees the first event. A reader that waits for a fixed number of
bytes (urllib3 ``stream(amt)``/``read(amt)`` on a close-delimited body) sees it only when the
server ends the response, i.e. after the silence. One warm-up run each, then --rounds
interleaved rounds; the table shows the median and the worst run in ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from throughput import HERE, Worker

CLIENTS = {
    "sseplug": "sseplug",
    "launchdarkly-eventsource": "launchdarkly-eventsource",
    "httpx-sse": "httpx-sse",
    "sseclient-py": "sseclient-py (over urllib3)",
    "aiohttp-sse-client2": "aiohttp-sse-client2",
    "urllib3-stream": "urllib3 stream(64 KiB) reader",
    "urllib3-read1": "urllib3 read1(64 KiB) reader",
}
FRAMINGS = {"chunked": "/first-chunked", "close-delimited": "/first-close"}


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--rounds", type=int, default=3)
    options.add_argument("--silence", type=float, default=2.0, help="seconds the server stays silent")
    args = options.parse_args(argv)

    server = subprocess.Popen(
        [sys.executable, str(HERE / "sse_server.py"), "--workloads", "", "--silence", str(args.silence)],
        stdout=subprocess.PIPE, text=True,
    )
    workers: dict[str, Worker] = {}
    try:
        port = json.loads(server.stdout.readline())["port"]
        for name in CLIENTS:
            workers[name] = Worker(name, "orjson")  # the JSON library of every worker (unused: no decode here)
        times: dict[tuple[str, str], list[float]] = {}
        for r in range(args.rounds + 1):  # round 0 warms up
            for framing, path in FRAMINGS.items():
                for name, worker in workers.items():
                    reply = worker.run(f"http://127.0.0.1:{port}{path}", False, 1)
                    sse = not name.startswith("urllib3")
                    if reply["count"] < 1 or (sse and reply["last_id"] != "1"):
                        raise AssertionError(f"{name} on {path}: {reply}")
                    if r:
                        times.setdefault((framing, name), []).append(reply["seconds"] * 1e3)
        print(f"time to first event, ms: {args.rounds} rounds (median / worst); server silent "
              f"{args.silence:g} s after the event; Python {sys.version.split()[0]}")
        print(f"  {'client':<32}" + "".join(f"{f:>24}" for f in FRAMINGS))
        for name, label in CLIENTS.items():
            cells = "".join(
                f"{statistics.median(times[f, name]):13.1f} / {max(times[f, name]):7.1f}" for f in FRAMINGS
            )
            print(f"  {label:<32}{cells}")
    finally:
        for worker in workers.values():
            worker.stop()
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
