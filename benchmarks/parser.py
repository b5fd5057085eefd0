"""Parser alone: EventParser (bulk and spec paths) next to a naive bytes.split(b"\\n\\n") splitter.

    python benchmarks/parser.py [--events 100000] [--rounds 7]

100k small events (id + event + 64-byte JSON data) fed in 64 KiB chunks. Each round times every
contender once, interleaved; the figures are medians over the rounds, the ratio is the median of
the per-round ratios. Each contender is first checked for the exact event count and last event;
events are counted as they come, as a consumer would, not kept.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable

from sseplug import EventParser, SSEResponse

CHUNK = 64 * 1024


def make_stream(count: int) -> bytes:
    parts = []
    for i in range(count):
        data = json.dumps({"seq": i, "kind": "tick", "pad": ""}, separators=(",", ":"))
        data = data[:-2] + "x" * (64 - len(data)) + '"}'  # exactly 64 bytes of JSON
        parts.append(f"id: {i}\nevent: tick\ndata: {data}\n\n")
    return "".join(parts).encode()


def chunks_of(blob: bytes) -> list[bytes]:
    return [blob[i : i + CHUNK] for i in range(0, len(blob), CHUNK)]


Consumer = Callable[[Iterable[bytes]], tuple[int, SSEResponse]]


def naive(chunks: Iterable[bytes]) -> tuple[int, SSEResponse]:
    """What many clients do: split on blank LF lines, then each line on its first colon."""
    count, buffer, last_id = 0, b"", ""
    for chunk in chunks:
        buffer += chunk
        *blocks, buffer = buffer.split(b"\n\n")
        for block in blocks:
            event, data = "message", []
            for line in block.decode("utf-8", "replace").split("\n"):
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    data.append(value)
                elif name == "event":
                    event = value
                elif name == "id":
                    last_id = value
            if data:
                last = SSEResponse(last_id, event, "\n".join(data), None, block.decode(), None)
                count += 1
    return count, last


def sseplug_parser(bulk: bool) -> Consumer:
    def run(chunks: Iterable[bytes]) -> tuple[int, SSEResponse]:
        parser = EventParser()
        parser._bulk_enabled = bulk
        count = 0
        for chunk in chunks:
            events = parser.feed(chunk)  # a consumer handles each batch, then lets it go
            if events:
                count += len(events)
                last = events[-1]
        return count, last

    return run


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--events", type=int, default=100_000)
    options.add_argument("--rounds", type=int, default=7)
    args = options.parse_args(argv)

    chunks = chunks_of(make_stream(args.events))
    contenders: dict[str, Consumer] = {
        "naive split": naive,
        "sseplug spec path": sseplug_parser(bulk=False),
        "sseplug bulk path": sseplug_parser(bulk=True),
    }
    for name, run in contenders.items():  # correctness first
        count, last = run(chunks)
        assert count == args.events, (name, count)
        assert last.id == str(args.events - 1) and last.event == "tick" and len(last.data) == 64, (name, last)

    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, run in contenders.items():
            start = time.perf_counter()
            run(chunks)
            rates[name].append(args.events / (time.perf_counter() - start))

    print(f"{args.events} events of id + event + 64-byte JSON data, {CHUNK // 1024} KiB chunks, "
          f"{args.rounds} rounds, Python {sys.version.split()[0]}")
    for name, values in rates.items():
        ratio = statistics.median(v / n for v, n in zip(values, rates["naive split"]))
        print(f"  {name:<20} {statistics.median(values) / 1e3:8.0f}k events/s   {ratio:4.2f}x naive")
    return 0


if __name__ == "__main__":
    sys.exit(main())
