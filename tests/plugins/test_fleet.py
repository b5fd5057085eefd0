"""Fleets of real ``sseplug run`` processes sharing one config through a real redis-server:
ownership assigned (sseplug_schedule), spread, Redis load, memory, takeover after SIGKILL,
release on SIGTERM, the readiness and status of a fleet runner, ``sseplug fleet``."""

from __future__ import annotations

import json
import math
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from ..integration import runner_process as rp
from .fleet_kit import (Runner, check_no_gap, checkpoints, http_json, live_tokens, owners, stream_ids, wait_until,
                        write_config)
from .fleet_upstream import Upstream
from .redis_server import RedisServer, free_port

TTL = 3.0
RENEWAL = TTL / 3


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def db(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream().start()
    yield server
    server.stop()


def sink_ids(db: redis.Redis, stream: str) -> list[int]:
    return stream_ids(db, f"out:{stream}")


def test_four_runners_on_500_streams_assign_spread_deliver_take_over_and_leave(
    tmp_path: Path, upstream: Upstream, redis_server: RedisServer, db: redis.Redis
) -> None:
    """The fleet at test scale (benchmarks/fleet.py runs 10 x 2,000 and more): ownership within
    seconds, an even spread, bounded Redis load and memory, events to the sink within 2 s, a
    SIGKILLed runner's streams resumed with Last-Event-ID and nothing lost or repeated, SIGTERM quick."""
    streams, count = 500, 4
    ids = [f"s{i}" for i in range(streams)]
    listen = [free_port() for _ in range(count)]
    config = write_config(tmp_path, [(cid, upstream.url(cid)) for cid in ids],
                          f'url = "{redis_server.url}"\nlease_ttl = {TTL}\nstream = "out:{{connection}}"\n')
    runners = []
    for n in range(count):  # one config, one http_listen each (an environment variable in the config)
        text = config.read_text().replace("[runner]\n", f'[runner]\nhttp_listen = "127.0.0.1:{listen[n]}"\n')
        own = tmp_path / f"r{n}"
        own.mkdir()
        (own / "run.toml").write_text(text)
        runners.append(Runner(own / "run.toml", f"r{n}"))
    try:
        started = time.monotonic()
        tokens = {runner.token() for runner in runners}
        share = math.ceil(streams / count)

        def settled() -> bool:
            held = Counter(owners(db, ids).values())
            return set(held) == tokens and max(held.values()) <= share and upstream.open_streams() == streams
        owned_at = wait_until(settled, 60, lambda: f"not all owned: {Counter(owners(db, ids).values())}, "
                                                    f"{upstream.open_streams()} open", step=0.2)
        spread = Counter(owners(db, ids).values())
        assert all(abs(held - streams / count) <= 0.1 * streams / count for held in spread.values()), spread

        # steady state: each runner ready, its /status saying which leases it holds
        for runner, port in zip(runners, listen):
            status, ready = http_json(f"http://127.0.0.1:{port}/ready")
            assert status == 200 and ready["ready"] is True, ready
            status, document = http_json(f"http://127.0.0.1:{port}/status")
            rows = document["connections"]
            assert len(rows) == share and all(row["lease"] is True and row["state"] == "open" for row in rows)

        # an event on any stream reaches the sink within 2 s
        chosen = random.Random(7).sample(ids, 20)
        sent_at = {cid: (upstream.send(cid), time.monotonic()) for cid in chosen}
        for cid, (n, at) in sent_at.items():
            wait_until(lambda: sink_ids(db, cid)[-1:] == [n], 2.0 - (time.monotonic() - at) + 0.2,
                       f"event {n} of {cid} not in the sink within 2 s")

        # Redis load in steady state: heartbeats only, far below one command per stream per lease_ttl
        before = db.info("commandstats")
        window_start = time.monotonic()
        time.sleep(TTL)  # the measurement window itself (not a wait for a condition)
        after = db.info("commandstats")
        window = time.monotonic() - window_start
        calls = sum(after[k]["calls"] - before.get(k, {"calls": 0})["calls"] for k in after
                    if k != "cmdstat_info")
        per_stream_per_ttl = calls / streams / (window / TTL)
        assert per_stream_per_ttl <= 1.0, (calls, window)

        rss = {runner.name: runner.rss_kib() for runner in runners}
        for runner in runners:
            assert rss[runner.name] <= 64 * 1024 + 48 * share, rss

        # SIGKILL one: its streams are owned again within lease_ttl + one renewal + 5 s, resumed
        # with Last-Event-ID, and the sink has no gap and no duplicate
        def all_in_sink() -> bool:
            return all(sink_ids(db, cid)[-1:] == [len(upstream.logs[cid])] for cid in ids)
        for cid in ids:
            upstream.send(cid)
        wait_until(all_in_sink, 10, "the events did not all reach the sink")
        victim = runners[0]
        victim_token = victim.tokens()[0]
        orphans = [cid for cid, token in owners(db, ids).items() if token == victim_token]
        killed_at = time.monotonic()
        victim.kill()
        for cid in ids:
            upstream.send(cid)  # sent while nobody reads the orphans
        taken = wait_until(lambda: victim_token not in owners(db, orphans).values()
                           and all(upstream.readers(cid) == 1 for cid in orphans), TTL + RENEWAL + 5,
                           lambda: f"not taken over: {Counter(owners(db, orphans).values())}", step=0.1)
        takeover = taken - killed_at
        resumed = {cid: [last for t, s, last in upstream.connects if s == cid and t > killed_at] for cid in orphans}
        assert all(values and values[-1] for values in resumed.values()), "a takeover without Last-Event-ID"
        for cid in ids:
            upstream.send(cid)
        wait_until(all_in_sink, 10, "the last events did not all reach the sink")
        duplicates = {cid: check_no_gap(sink_ids(db, cid), len(upstream.logs[cid]), cid) for cid in ids}
        assert sum(duplicates.values()) == 0, {cid: d for cid, d in duplicates.items() if d}
        assert upstream.overlaps == [], "two readers of one stream at once"

        # SIGTERM: each exits 0 within shutdown_timeout, its leases and session deleted at once
        survivors = runners[1:]
        for runner in survivors:
            runner.signal(signal.SIGTERM)
        for runner in survivors:
            assert runner.wait(timeout=5 + 2) == 0, runner.stderr[-3000:]
        assert db.keys("sseplug:lease:*") == [] and live_tokens(db) == set()
        assert all(value == str(len(upstream.logs[cid])) for cid, value in checkpoints(db, ids).items())
        assert [runner.out_path.read_text() for runner in runners] == [""] * count  # the sink replaced stdout
        print(f"500 streams x 4 runners: owned in {owned_at - started:.1f}s, spread {sorted(spread.values())}, "
              f"{per_stream_per_ttl:.3f} Redis commands per stream per lease_ttl ({calls} in {window:.1f}s), "
              f"RSS {sorted(rss.values())} KiB, takeover {takeover:.1f}s")
    finally:
        for runner in runners:
            runner.kill()


def test_a_second_runner_joining_takes_half_and_nothing_is_read_twice_or_lost(
    tmp_path: Path, redis_server: RedisServer, db: redis.Redis
) -> None:
    """Hand-over on a join: the first runner stops a stream before its lease goes, the second
    resumes it from the checkpoint; ``sseplug fleet`` shows the runners and the streams."""
    ids = [f"j{i}" for i in range(20)]
    upstream = Upstream(interval=0.2).start(ids)
    config = write_config(tmp_path, [(cid, upstream.url(cid)) for cid in ids],
                          f'url = "{redis_server.url}"\nlease_ttl = {TTL}\nstream = "out:{{connection}}"\n')
    first = Runner(config, "first")
    second = None
    try:
        token = first.token()
        wait_until(lambda: set(owners(db, ids).values()) == {token} and upstream.open_streams() == 20, 15,
                   lambda: f"the first runner did not take every stream:\n{first.stderr[-2000:]}")
        second = Runner(config, "second")
        other = second.token()
        wait_until(lambda: Counter(owners(db, ids).values()) == {token: 10, other: 10}
                   and upstream.open_streams() == 20, 15, lambda: f"no even split: {Counter(owners(db, ids).values())}")
        def fleet_view() -> dict[str, Any]:
            fleet = subprocess.run([*rp.command(), "fleet", str(config), "--json"], capture_output=True, text=True,
                                   timeout=30)
            assert fleet.returncode == 0, fleet.stderr
            return json.loads(fleet.stdout)  # type: ignore[no-any-return]
        views: list[dict[str, Any]] = []  # counts are as of each runner's last heartbeat
        wait_until(lambda: views.append(fleet_view()) or {r["token"]: (r["held"], r["open"]) for r in views[-1][
            "runners"]} == {token: (10, 10), other: (10, 10)}, 2 * RENEWAL + 5, lambda: views[-1])
        view = views[-1]
        assert all(r["pid"] in (first.proc.pid, second.proc.pid) and r["heartbeat_age"] < TTL for r in view["runners"])
        assert view["unowned"] == [] and view["streams"] == 20
        table = subprocess.run([*rp.command(), "fleet", str(config)], capture_output=True, text=True, timeout=30)
        assert table.returncode == 0 and "2 live runners" in table.stdout and str(second.proc.pid) in table.stdout
        for runner in (first, second):
            runner.signal(signal.SIGTERM)
            assert runner.wait(timeout=10) == 0, runner.stderr[-3000:]
    finally:
        first.kill()
        if second is not None:
            second.kill()
        upstream.stop()
    for cid in ids:
        got = sink_ids(db, cid)
        assert got == list(range(got[0], got[0] + len(got))), f"{cid}: gap or duplicate in {got}"
    assert upstream.overlaps == [], "two readers of one stream at once"
    assert db.keys("sseplug:lease:*") == []


def test_a_reload_of_a_fleet_starts_added_streams_on_their_owners_and_frees_removed_ones(
    tmp_path: Path, upstream: Upstream, redis_server: RedisServer, db: redis.Redis
) -> None:
    ids = [f"h{i}" for i in range(10)]
    table = f'url = "{redis_server.url}"\nlease_ttl = {TTL}\nstream = "out:{{connection}}"\n'
    config = write_config(tmp_path, [(cid, upstream.url(cid)) for cid in ids], table)
    runners = [Runner(config, "a"), Runner(config, "b")]
    try:
        tokens = {runner.token() for runner in runners}
        wait_until(lambda: set(owners(db, ids).values()) == tokens and upstream.open_streams() == 10, 15,
                   "the fleet did not settle")
        kept, removed, added = ids[:8], ids[8:], [f"n{i}" for i in range(4)]
        changed = kept[0]  # its URL changes: it restarts on its owner, from its checkpoint
        write_config(tmp_path, [(cid, upstream.url(cid + ("-v2" if cid == changed else ""))) for cid in kept + added],
                     table)
        before = owners(db, ids)
        reloaded = time.monotonic()
        for runner in runners:
            runner.signal(signal.SIGHUP)
        now = kept + added
        wait_until(lambda: set(owners(db, now).values()) == tokens and all(
            upstream.readers(cid) == 1 for cid in now if cid != changed) and upstream.readers(changed + "-v2") == 1
            and upstream.readers(changed) == 0 and all(upstream.readers(cid) == 0 for cid in removed), 2 * TTL + 5,
            lambda: f"not applied: {owners(db, now)}\n{runners[0].stderr[-1500:]}")
        assert all(db.get(f"sseplug:lease:{cid}") is None for cid in removed)
        assert sorted(Counter(owners(db, now).values()).values()) == [6, 6]
        stayed = [cid for cid in kept[1:] if owners(db, [cid])[cid] == before[cid]]  # the others moved (a hand-over)
        assert [s for t, s, _ in upstream.connects if t > reloaded and s in stayed] == [], "untouched streams restarted"
        for runner in runners:
            runner.signal(signal.SIGTERM)
            assert runner.wait(timeout=10) == 0, runner.stderr[-3000:]
    finally:
        for runner in runners:
            runner.kill()
