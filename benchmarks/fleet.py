"""A fleet at scale on loopback: R ``sseplug run`` processes sharing one config of N streams
through one redis-server, against one upstream process (tests/plugins/fleet_upstream.py, one event
per stream every --interval seconds). Prints, as it goes and as one JSON line at the end:

- how long the config takes to load, and the time from the last runner's start to every stream
  owned by exactly one live runner and open at the upstream; the spread of streams per runner;
- Redis commands per second in steady state (``INFO commandstats`` over a window), split into the
  sink's writes (the fenced save script) and the rest (heartbeats, claims), and the rest per stream
  per lease_ttl; the lag from an event's send to its XADD (p50, p99, max);
- each runner's RSS against 64 MiB + 48 KiB per stream it holds;
- SIGKILL of --kill runners: the time until their streams are owned and read again, and whether a
  stream had two readers at once;
- a reconnect storm (the upstream drops every connection): the time until all are back, and the
  most new connections the upstream saw in any 1 s window (set --reconnect-rate to cap it);
- SIGTERM of the rest: the time each takes to exit, and the leases left behind.

    python benchmarks/fleet.py                                   # 10 runners x 2,000 streams
    python benchmarks/fleet.py --runners 10 --streams 20000      # the 20,000-stream run
    python benchmarks/fleet.py --runners 4 --streams 500 --reconnect-rate 100
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ROOT / "tests" / "plugins" / "fleet_upstream.py"
sys.path.insert(0, str(UPSTREAM.parent))
from fleet_upstream import peak_per_second  # noqa: E402  (the upstream's own window count)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Any, timeout: float, what: str, step: float = 0.5, detail: Any = None) -> float:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"benchmark failed: {what} within {timeout:.0f}s{detail() if detail else ''}")
        time.sleep(step)
    return time.monotonic()


def stats(ports: list[int], since: float | None = None) -> dict[str, Any]:
    """The upstream processes' /stats, summed; the connects since the last drop merged (their
    monotonic clocks are the same clock); with ``since``, the streams connected since then."""
    total: dict[str, Any] = {"open": 0, "overlaps": 0, "connects": 0, "connect_times_since_drop": [], "unread": [],
                             "connected_since": {}}
    for port in ports:
        query = "" if since is None else f"?since={since}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats{query}", timeout=60) as response:
            one = json.loads(response.read())
        for key in total:
            if key == "connected_since":
                total[key].update(one.get(key, {}))
            else:
                total[key] += one[key]
    times = total["connect_times_since_drop"]
    total["connects_since_drop"], total["peak_per_second_since_drop"] = len(times), peak_per_second(times)
    return total


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def owners(db: redis.Redis, ids: list[str]) -> list[str | None]:
    found: list[str | None] = []
    for start in range(0, len(ids), 5000):
        chunk = ids[start:start + 5000]
        found += [None if v is None else v.decode() for v in db.mget([f"sseplug:lease:{c}" for c in chunk])]
    return found


def live(db: redis.Redis) -> set[str]:
    return {key.decode().rpartition(":")[2] for key in db.scan_iter("sseplug:runner:*", count=1000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runners", type=int, default=10)
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between two events of a stream")
    parser.add_argument("--lease-ttl", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=30.0, help="seconds of steady state measured")
    parser.add_argument("--kill", type=int, default=2, help="runners SIGKILLed for the takeover")
    parser.add_argument("--reconnect-rate", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=300.0, help="bound of each wait")
    parser.add_argument("--streams-per-upstream", type=int, default=5000,
                        help="streams per upstream process (each holds one socket per stream: RLIMIT_NOFILE)")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the upstream holds every connection
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("benchmark stopped (SIGTERM)"))  # the finally stops every process
    work = Path(tempfile.mkdtemp(prefix="sseplug-fleet-"))
    procs: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {"runners": args.runners, "streams": args.streams, "interval": args.interval,
                              "lease_ttl": args.lease_ttl, "reconnect_rate": args.reconnect_rate}

    def say(text: str) -> None:
        print(text, flush=True)

    try:
        redis_port = free_port()
        slices = _slices(args.streams, args.streams_per_upstream)
        upstream_ports = [free_port() for _ in slices]
        procs.append(subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(redis_port),
                                       "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                       "--maxclients", "10000", "--dir", str(work)],
                                      stdout=subprocess.DEVNULL))
        for port, (first, count) in zip(upstream_ports, slices):
            procs.append(subprocess.Popen([sys.executable, str(UPSTREAM), "--port", str(port), "--first", str(first),
                                           "--streams", str(count), "--interval", str(args.interval)]))
        db = redis.Redis(port=redis_port)
        wait_until(lambda: _answers(db) and _answers_http(upstream_ports), 30, "Redis and the upstream answering",
                   step=0.1)
        ids = [f"s{i}" for i in range(args.streams)]
        config = work / "fleet.toml"
        table = (f'[plugins.redis]\nurl = "redis://127.0.0.1:{redis_port}/0"\nlease_ttl = {args.lease_ttl}\n'
                 'stream = "out:{connection}"\nmaxlen = 100\n')
        if args.reconnect_rate:
            table += f"reconnect_rate = {args.reconnect_rate}\n"
        config.write_text('[runner]\nstate_dir = "state"\nshutdown_timeout = 10\n\n' + "".join(
            f'[[connections]]\nid = "{cid}"\nurl = "http://127.0.0.1:{upstream_ports[n // args.streams_per_upstream]}'
            f'/s/{cid}"\n\n' for n, cid in enumerate(ids))
            + table)
        from sseplug.plugins import known_plugin_names
        from sseplug.run.config import load_config

        began = time.perf_counter()
        load_config(config, known_plugins=known_plugin_names())
        result["config_load_s"] = round(time.perf_counter() - began, 2)
        say(f"config of {args.streams} connections loads in {result['config_load_s']}s")

        runners = []
        for n in range(args.runners):
            with open(work / f"r{n}.err", "wb") as err:
                runners.append(subprocess.Popen([shutil.which("sseplug") or "sseplug", "run", str(config)],
                                                stdout=subprocess.DEVNULL, stderr=err, cwd=work))
        procs += runners
        last_start = time.monotonic()

        def all_owned() -> bool:
            tokens = live(db)
            held = owners(db, ids)
            return len(tokens) == args.runners and all(t in tokens for t in held) and \
                stats(upstream_ports)["open"] == args.streams
        owned_at = wait_until(all_owned, args.timeout, "every stream owned and open")
        spread = sorted(Counter(owners(db, ids)).values())
        result.update(owned_after_last_start_s=round(owned_at - last_start, 1), spread=spread,
                      spread_max_deviation=round(max(abs(x - args.streams / args.runners) for x in spread)
                                                 / (args.streams / args.runners), 3))
        say(f"all {args.streams} owned and open {result['owned_after_last_start_s']}s after the last runner's "
            f"start; spread {spread[0]}..{spread[-1]} (+-{result['spread_max_deviation']:.1%})")

        time.sleep(args.lease_ttl)  # settle: the first batches of every stream are written
        db.config_resetstat()
        started = time.monotonic()
        time.sleep(args.window)  # the measurement window
        window = time.monotonic() - started
        commands = {k[len("cmdstat_"):]: v["calls"] for k, v in db.info("commandstats").items()}
        commands.pop("info", None)
        commands.pop("config|resetstat", None)
        total = sum(commands.values())
        saves = commands.get("set", 0)  # one SET (the checkpoint) per fenced save
        sink = saves * 4 + commands.get("xadd", 0)  # EVALSHA, GET, EXISTS, SET and the XADDs
        rest = total - sink
        result.update(commands_per_s=round(total / window, 1), sink_commands_per_s=round(sink / window, 1),
                      other_commands_per_s=round(rest / window, 1), events_per_s=round(commands.get("xadd", 0)
                                                                                        / window, 1),
                      other_per_stream_per_ttl=round(rest / args.streams / (window / args.lease_ttl), 4),
                      commands=commands)
        say(f"steady state over {window:.0f}s: {result['commands_per_s']} Redis commands/s "
            f"({result['sink_commands_per_s']}/s the sink's fenced writes for {result['events_per_s']} events/s, "
            f"{result['other_commands_per_s']}/s the rest: {result['other_per_stream_per_ttl']} per stream "
            "per lease_ttl)")
        lags = []
        for cid in ids[:: max(1, args.streams // 500)]:
            for entry_id, fields in db.xrange(f"out:{cid}"):
                sent = json.loads(fields[b"data"])["t"]
                lags.append(int(entry_id.split(b"-")[0]) / 1000 - sent)
        lags.sort()
        result.update(lag_p50_s=round(lags[len(lags) // 2], 3), lag_p99_s=round(lags[int(len(lags) * 0.99)], 3),
                      lag_max_s=round(lags[-1], 3))
        say(f"event to sink lag over {len(lags)} events: p50 {result['lag_p50_s']}s, p99 {result['lag_p99_s']}s, "
            f"max {result['lag_max_s']}s")

        tokens_by_pid = {}
        for token in live(db):
            fields = db.hgetall(f"sseplug:runner:{token}")
            tokens_by_pid[int(fields[b"pid"])] = (token, int(fields[b"held"]))
        memory = []
        for proc in runners:
            token, held = tokens_by_pid.get(proc.pid, ("?", 0))
            rss = rss_kib(proc.pid)
            memory.append({"pid": proc.pid, "held": held, "rss_kib": rss, "budget_kib": 64 * 1024 + 48 * held,
                           "per_stream_kib": round(rss / max(1, held), 1)})
        result["memory"] = memory
        say("RSS per runner (KiB, budget 64 MiB + 48 KiB x held): " + ", ".join(
            f"{m['rss_kib']}/{m['budget_kib']}" for m in memory))

        victims = runners[:args.kill]
        orphans = {cid for cid, owner in zip(ids, owners(db, ids))
                   if owner in {tokens_by_pid.get(v.pid, ("?",))[0] for v in victims}}
        overlaps_before = stats(upstream_ports)["overlaps"]
        killed_at = time.monotonic()
        for proc in victims:
            proc.kill()
        dead = {tokens_by_pid.get(v.pid, ("?",))[0] for v in victims}

        def taken_over() -> bool:  # owned by a live runner, and asked for again at the upstream since the kill
            if dead & set(owners(db, sorted(orphans))):
                return False
            resumed = set(stats(upstream_ports, since=killed_at)["connected_since"])
            return orphans <= resumed
        taken = wait_until(taken_over, args.timeout, "the killed runners' streams taken over",
                           detail=lambda: f"; streams not read: {stats(upstream_ports)['unread']}")
        result.update(takeover_s=round(taken - killed_at, 1), takeover_streams=len(orphans),
                      takeover_overlaps=stats(upstream_ports)["overlaps"] - overlaps_before)
        say(f"SIGKILL of {len(victims)} runners: their {len(orphans)} streams owned and open again after "
            f"{result['takeover_s']}s (lease_ttl {args.lease_ttl:g}); streams with two readers at once: "
            f"{result['takeover_overlaps']}")

        time.sleep(args.lease_ttl / 3 * 2)  # one more renewal: the survivors' spread settles
        dropped = time.monotonic()  # before the first drop: its streams reconnect while the others drop
        for port in upstream_ports:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/drop", timeout=30).read()
        back = wait_until(lambda: len(stats(upstream_ports, since=dropped)["connected_since"]) == args.streams,
                          args.timeout, "every stream back after the drop",
                          detail=lambda: f"; streams not read: {stats(upstream_ports)['unread']}")
        storm = stats(upstream_ports)
        granted = [int(db.get(key) or 0) for key in db.scan_iter("sseplug:reconnect-budget:*", count=1000)]
        result.update(storm_back_s=round(back - dropped, 1), storm_peak_per_s=storm["peak_per_second_since_drop"],
                      storm_connects=storm["connects_since_drop"], budget_peak_granted_per_s=max(granted, default=None),
                      budget_granted=sum(granted), connects=storm["connects"])
        say(f"storm: all {args.streams} back {result['storm_back_s']}s after the upstream dropped them; at most "
            f"{result['storm_peak_per_s']} new connections in any 1 s ({storm['connects_since_drop']} in all; "
            f"reconnect_rate {args.reconnect_rate}: at most {result['budget_peak_granted_per_s']} tokens granted in "
            f"a second of Redis time; {result['budget_granted']} tokens in the 5 minutes Redis keeps, "
            f"{storm['connects']} connects since the start)")

        survivors = runners[args.kill:]
        termed = time.monotonic()
        for proc in survivors:
            proc.send_signal(signal.SIGTERM)
        exits = []
        for proc in survivors:
            proc.wait(timeout=60)
            exits.append(round(time.monotonic() - termed, 1))
        result.update(sigterm_exit_s=exits, exit_codes=[p.returncode for p in survivors],
                      leases_left=len(list(db.scan_iter("sseplug:lease:*", count=1000))))
        say(f"SIGTERM: exits after {exits} s (codes {result['exit_codes']}); leases left: {result['leases_left']}")
        print(json.dumps(result), flush=True)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        logs = Path(tempfile.gettempdir()) / "sseplug-fleet-logs"
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir()
        for err in work.glob("r*.err"):  # kept for a look after the run
            shutil.copy(err, logs / err.name)
        shutil.rmtree(work, ignore_errors=True)
        print(f"runner logs: {logs}", flush=True)


def _answers(db: redis.Redis) -> bool:
    try:
        return bool(db.ping())
    except redis.RedisError:
        return False


def _slices(streams: int, size: int) -> list[tuple[int, int]]:
    """(first stream number, count) of each upstream process."""
    return [(first, min(size, streams - first)) for first in range(0, streams, size)]


def _answers_http(ports: list[int]) -> bool:
    try:
        stats(ports)
        return True
    except OSError:
        return False


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
