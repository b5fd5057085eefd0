"""A fleet through faults, each against real processes: Redis restarted with its data or empty,
Redis frozen (unreachable), a runner frozen, a network cut between a runner and Redis, and a
reconnect storm under the fleet-wide ``reconnect_rate``. docs/fleet.rst states each guarantee."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from .fleet_kit import (Proxy, Runner, check_no_gap, http_json, owners, stream_ids, wait_until, write_config)
from .fleet_upstream import Upstream
from .redis_server import RedisServer, free_port

TTL = 2.0
RENEWAL = TTL / 3
GUARD = 0.8 * TTL
STREAMS = 10


@pytest.fixture
def ids() -> list[str]:
    return [f"f{i}" for i in range(STREAMS)]


@pytest.fixture
def upstream(ids: list[str]) -> Iterator[Upstream]:
    server = Upstream(interval=0.1).start(ids)  # each stream: an event every 0.1 s
    yield server
    server.stop()


def fleet_config(tmp_path: Path, upstream: Upstream, ids: list[str], url: str, extra: str = "",
                 runner: str = "") -> Path:
    return write_config(tmp_path, [(cid, upstream.url(cid)) for cid in ids],
                        f'url = "{url}"\nlease_ttl = {TTL}\nstream = "out:{{connection}}"\n{extra}', runner)


def all_read_once(upstream: Upstream, ids: list[str]) -> bool:
    return all(upstream.readers(cid) == 1 for cid in ids)


def assert_sink_exact(db: redis.Redis, upstream: Upstream, ids: list[str]) -> None:
    """Each stream's Redis stream holds events first..last of the upstream's log, each once, in order."""
    for cid in ids:
        got = stream_ids(db, f"out:{cid}")
        assert got, f"{cid}: nothing in the sink"
        check_no_gap([n - got[0] + 1 for n in got], got[-1] - got[0] + 1, cid)
        assert len(got) == len(set(got)), f"{cid}: duplicates {[n for n, c in Counter(got).items() if c > 1]}"


def settle_then_stop(runners: list[Runner], upstream: Upstream, ids: list[str], db: redis.Redis) -> None:
    """Let every stream deliver a while longer, stop the runners (SIGTERM, exit 0), check the sink."""
    marks = {cid: len(upstream.logs[cid]) for cid in ids}
    wait_until(lambda: all(stream_ids(db, f"out:{cid}")[-1:] >= [marks[cid]] for cid in ids), 15,
               "the streams did not all deliver again")
    for runner in runners:
        runner.signal(signal.SIGTERM)
    for runner in runners:
        assert runner.wait(timeout=10) == 0, runner.stderr[-3000:]
        assert "Traceback" not in runner.stderr, runner.stderr[-3000:]
    assert_sink_exact(db, upstream, ids)


def test_redis_restarted_with_its_data_one_warning_per_runner_and_no_gap_or_duplicate(
    tmp_path: Path, upstream: Upstream, ids: list[str]
) -> None:
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    db = server.client()
    config = fleet_config(tmp_path, upstream, ids, server.url)
    runners = [Runner(config, "a"), Runner(config, "b")]
    try:
        for runner in runners:
            runner.token()
        wait_until(lambda: all_read_once(upstream, ids) and len(set(owners(db, ids).values())) == 2, 15,
                   "the fleet did not settle")
        server.kill()  # SIGKILL: the last second of its append-only file may be lost
        wait_until(lambda: upstream.open_streams() == 0, GUARD + 1, "streams still read while Redis is down")
        time.sleep(1.0)  # Redis stays down a while (not a wait for a condition)
        server.start()
        wait_until(lambda: all_read_once(upstream, ids), TTL + 5, "the streams did not all resume")
        for runner in runners:
            assert runner.proc.poll() is None, runner.stderr
            warnings = [line for line in runner.stderr.splitlines() if " WARNING " in line or " ERROR " in line]
            assert len(warnings) == 1 and "sseplug.redis: redis: cannot reach Redis" in warnings[0], warnings
            back = [line for line in runner.stderr.splitlines() if " INFO " in line and "answers again" in line]
            assert len(back) == 1 and "(restarted: every stream reloads its checkpoint)" in back[0], back
        settle_then_stop(runners, upstream, ids, db)
    finally:
        for runner in runners:
            runner.kill()
        server.stop()


@pytest.mark.parametrize("policy", ["stop", "resume_from_memory"])
def test_redis_restarted_empty_is_never_a_silent_resume_from_now(
    tmp_path: Path, upstream: Upstream, ids: list[str], policy: str
) -> None:
    server = RedisServer(tmp_path / "redis").start()
    db = server.client()
    config = fleet_config(tmp_path, upstream, ids, server.url, f'on_lost_state = "{policy}"')
    runner = Runner(config, "solo")
    try:
        runner.token()
        wait_until(lambda: all_read_once(upstream, ids), 15, "the streams did not open")
        wait_until(lambda: all(db.xlen(f"out:{cid}") >= 3 for cid in ids), 10, "nothing delivered")
        server.kill()
        server.start()  # empty: no persistence
        restarted = time.monotonic()
        if policy == "stop":
            assert runner.wait(timeout=TTL + 5 + 5) == 1, runner.stderr[-3000:]
            errors = [line for line in runner.stderr.splitlines() if " ERROR " in line]
            assert len(errors) == 1 and "lost the fleet's state" in errors[0] and \
                'on_lost_state = "stop"' in errors[0], errors
            assert "Traceback" not in runner.stderr
            assert [s for t, s, _ in upstream.connects if t > restarted] == [], "a stream restarted from 'now'"
            assert upstream.open_streams() == 0
            return
        wait_until(lambda: all(any(t > restarted for t, s, _ in upstream.connects if s == cid) for cid in ids)
                   and all_read_once(upstream, ids), TTL + 5, "the streams did not resume")
        for cid in ids:  # each resumed from the last id it delivered, not from "now"
            last = [value for t, s, value in upstream.connects if s == cid and t > restarted][-1]
            assert last and int(last) >= 3, (cid, last)
        assert "resuming the 10 streams this runner held from the last ids it delivered" in runner.stderr
        settle_then_stop([runner], upstream, ids, db)
    finally:
        runner.kill()
        server.stop()


def test_redis_unreachable_stops_every_stream_before_its_lease_could_expire_then_all_resume(
    tmp_path: Path, upstream: Upstream, ids: list[str]
) -> None:
    server = RedisServer(tmp_path / "redis").start()
    db = server.client()
    port = free_port()
    config = fleet_config(tmp_path, upstream, ids, server.url, runner=f'http_listen = "127.0.0.1:{port}"')
    runner = Runner(config, "solo")
    try:
        runner.token()
        wait_until(lambda: all_read_once(upstream, ids) and http_json(f"http://127.0.0.1:{port}/ready")[0] == 200,
                   15, "not ready")
        frozen_at = time.monotonic()
        server.pause()  # SIGSTOP: connections hang, nothing is refused
        stopped = wait_until(lambda: upstream.open_streams() == 0, GUARD + 1, "streams still read")
        assert stopped - frozen_at < TTL, "a stream was read past the moment its lease could have expired"
        status, ready = http_json(f"http://127.0.0.1:{port}/ready")
        assert status == 503 and "Redis" in ready["reason"], ready
        gevent_wait = 3 * TTL - (time.monotonic() - frozen_at)
        time.sleep(max(0.0, gevent_wait))  # Redis stays unreachable for 3 x lease_ttl
        assert runner.proc.poll() is None and [c for t, s, c in upstream.connects if t > stopped] == []
        server.resume()
        wait_until(lambda: all_read_once(upstream, ids), TTL + 5, "the streams did not resume")
        wait_until(lambda: http_json(f"http://127.0.0.1:{port}/ready")[0] == 200, TTL + 2, "not ready again")
        settle_then_stop([runner], upstream, ids, db)
    finally:
        server.resume() if server.proc is not None else None
        runner.kill()
        server.stop()


def test_a_frozen_runner_loses_its_streams_writes_nothing_past_the_fence_and_rejoins(
    tmp_path: Path, upstream: Upstream, ids: list[str]
) -> None:
    server = RedisServer(tmp_path / "redis").start()
    db = server.client()
    config = fleet_config(tmp_path, upstream, ids, server.url)
    frozen, other = Runner(config, "frozen"), Runner(config, "other")
    try:
        token = frozen.token()
        other.token()
        wait_until(lambda: all_read_once(upstream, ids) and Counter(owners(db, ids).values()).get(token) == 5, 15,
                   "the fleet did not settle")
        theirs = [cid for cid, owner in owners(db, ids).items() if owner == token]
        frozen.signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        wait_until(lambda: token not in owners(db, ids).values(), TTL + RENEWAL + 5, "not taken over")
        time.sleep(max(0.0, 3 * TTL - (time.monotonic() - frozen_at)))  # frozen for 3 x lease_ttl
        frozen.signal(signal.SIGCONT)
        woke = time.monotonic()
        wait_until(lambda: "rejoining the fleet as" in frozen.stderr, RENEWAL + 2,
                   lambda: f"did not notice within one renewal:\n{frozen.stderr[-2000:]}")
        wait_until(lambda: all_read_once(upstream, ids) and len(set(owners(db, ids).values())) == 2, 2 * TTL + 5,
                   lambda: f"no even split again: {Counter(owners(db, ids).values())}")
        assert frozen.proc.poll() is None and "Traceback" not in frozen.stderr
        assert time.monotonic() - woke < 2 * TTL + 5 and theirs
        settle_then_stop([frozen, other], upstream, ids, db)  # no duplicate XADD from the one that woke
    finally:
        frozen.kill()
        other.kill()
        server.stop()


def test_a_network_cut_between_a_runner_and_redis_hands_its_streams_over_and_it_rejoins_when_healed(
    tmp_path: Path, upstream: Upstream, ids: list[str]
) -> None:
    server = RedisServer(tmp_path / "redis").start()
    db = server.client()
    with Proxy(server.port) as proxy:
        direct = fleet_config(tmp_path, upstream, ids, server.url)
        (tmp_path / "cut").mkdir()
        through_proxy = fleet_config(tmp_path / "cut", upstream, ids, proxy.url)
        cut, other = Runner(through_proxy, "cut"), Runner(direct, "other")
        try:
            token = cut.token()
            other_token = other.token()
            wait_until(lambda: all_read_once(upstream, ids) and Counter(owners(db, ids).values()).get(token) == 5,
                       15, "the fleet did not settle")
            cut_at = time.monotonic()
            proxy.cut()
            wait_until(lambda: set(owners(db, ids).values()) == {other_token} and all_read_once(upstream, ids),
                       TTL + RENEWAL + 5, lambda: f"not taken over: {Counter(owners(db, ids).values())}")
            assert time.monotonic() - cut_at < TTL + RENEWAL + 5
            proxy.heal()
            wait_until(lambda: len(set(owners(db, ids).values())) == 2 and all_read_once(upstream, ids), 2 * TTL + 5,
                       lambda: f"did not spread again: {Counter(owners(db, ids).values())}\n{cut.stderr[-2000:]}")
            settle_then_stop([cut, other], upstream, ids, db)
        finally:
            cut.kill()
            other.kill()
    server.stop()


def test_a_reconnect_storm_and_a_fleet_start_stay_under_the_fleet_wide_reconnect_rate(tmp_path: Path) -> None:
    streams, rate = 120, 40
    ids = [f"r{i}" for i in range(streams)]
    upstream = Upstream().start()
    server = RedisServer(tmp_path / "redis").start()
    db = server.client()
    config = fleet_config(tmp_path, upstream, ids, server.url, f"reconnect_rate = {rate}")
    config.write_text(config.read_text().replace('url = "http', 'retry_delay = 0.05\nurl = "http'))
    runners = [Runner(config, "a"), Runner(config, "b")]
    try:
        for runner in runners:
            runner.token()  # started (the interpreter's own start-up is not the fleet's)
        started = time.monotonic()
        wait_until(lambda: upstream.open_streams() == streams, streams / rate + 10,
                   lambda: f"the fleet did not start: {upstream.open_streams()} open")
        assert upstream.connects_per_second(started) <= rate * 1.1, upstream.connects_per_second(started)
        assert len(set(owners(db, ids).values())) == 2
        dropped_at = time.monotonic()
        assert upstream.drop_all() >= streams  # and the sockets of hand-overs it has not noticed closed yet
        back = wait_until(lambda: upstream.open_streams() == streams and
                          len([1 for t, _, _ in upstream.connects if t > dropped_at]) >= streams,
                          streams / rate + 10, "not all back")
        peak = upstream.connects_per_second(dropped_at)
        assert peak <= rate * 1.1, peak
        print(f"storm: {streams} streams back in {back - dropped_at:.1f}s, at most {peak} connects in any 1 s "
              f"(reconnect_rate {rate})")
        for runner in runners:
            runner.signal(signal.SIGTERM)
        for runner in runners:
            assert runner.wait(timeout=10) == 0, runner.stderr[-3000:]
    finally:
        for runner in runners:
            runner.kill()
        server.stop()
        upstream.stop()
