"""Events per second into one PostgreSQL table from 10 streams, through ``sseplug run`` and the postgres plugin.

    python benchmarks/postgres.py [--streams 10] [--events 100000] [--batch-max 1000]

Starts, each in its own process and stopped by pid at the end: a PostgreSQL server (Debian's
binaries, ``initdb`` in a temporary directory, a free loopback port; see
``tests/plugins/postgres_server.py``), the benchmarks' loopback SSE server (``sse_server.py``, the
``small`` workload: 64-byte JSON events with ids, one precomputed body per stream), and the runner
with ``[plugins.postgres]``. It polls ``count(*)`` every 0.1 s until every row is in (bounded by
time), checks the rows (each stream's ids 1..N once, ``seq`` in order), and prints the rate over
the whole run and the sustained rate between 10% and 90% of the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.plugins.postgres_server import PostgresServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--events", type=int, default=100_000, help="events per stream (100000, or 10000 with --quick)")
    parser.add_argument("--quick", action="store_true", help="10000 events per stream")
    parser.add_argument("--batch-max", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    events = 10_000 if args.quick else args.events
    if events not in (10_000, 100_000):
        parser.error("--events: the small workload has 100000 events (10000 with --quick)")
    total = args.streams * events

    pg = PostgresServer().start()
    server = runner = None
    work = Path(tempfile.mkdtemp(prefix="sseplug-pgbench-"))
    try:
        server = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "sse_server.py"), "--workloads", "small",
                                   *(["--quick"] if events == 10_000 else [])], stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None
        port = json.loads(server.stdout.readline())["port"]
        config = work / "run.toml"
        text = '[runner]\nstate_dir = "state"\n'
        for index in range(args.streams):
            text += f'[[connections]]\nid = "s{index}"\nurl = "http://127.0.0.1:{port}/small"\nreconnect = "never"\n'
        config.write_text(text + f'[plugins.postgres]\ndsn = "{pg.dsn}"\nbatch_max = {args.batch_max}\n')
        sseplug = Path(sys.executable).with_name("sseplug")
        command = [str(sseplug) if sseplug.exists() else "sseplug", "run", str(config)]
        started = time.monotonic()
        runner = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(work / "runner.err", "wb"), cwd=work)
        samples: list[tuple[float, int]] = []
        with pg.connect() as db:
            while True:
                try:
                    count = int(db.execute("SELECT count(*) FROM sseplug_events").fetchone()[0])  # type: ignore[index]
                except Exception:  # the table is created by the first stream's checkpoint load
                    count = 0
                samples.append((time.monotonic() - started, count))
                if count >= total:
                    break
                if runner.poll() is not None and len(samples) > 2 and samples[-3][1] == count:
                    raise SystemExit(f"the runner exited ({runner.returncode}) with {count} of {total} rows in")
                if time.monotonic() - started > args.timeout:
                    raise SystemExit(f"not every row within {args.timeout}s: {count} of {total}")
                time.sleep(0.1)
            elapsed = samples[-1][0]
            bad = db.execute("SELECT connection, count(*), count(DISTINCT id), min(seq), max(seq), "
                             "bool_and(id::bigint = seq - 1) FROM sseplug_events GROUP BY connection").fetchall()
        wrong = [row for row in bad if row[1:] != (events, events, 1, events, True)]
        if len(bad) != args.streams or wrong or samples[-1][1] != total:
            raise SystemExit(f"rows not as sent: {samples[-1][1]} of {total}; per stream {bad}")
        low = next(t for t, c in samples if c >= total * 0.1)
        high = next(t for t, c in samples if c >= total * 0.9)
        print(f"command: python benchmarks/postgres.py --streams {args.streams}"
              f"{' --quick' if events == 10_000 else ''} --batch-max {args.batch_max}")
        print(f"{total} rows ({args.streams} streams x {events} events) in {elapsed:.2f}s from the runner's start: "
              f"{total / elapsed:,.0f} events/s overall; sustained (10%..90% of the rows): "
              f"{total * 0.8 / (high - low):,.0f} events/s; checked: every id once per stream, seq in order")
        return 0
    finally:
        for proc in (runner, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        pg.remove()
        for path in sorted(work.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        work.rmdir()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
