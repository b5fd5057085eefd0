"""The ``redis`` plugin (sseplug-redis) against a real redis-server, in one process: the
assignment, sessions, fenced checkpoints, the Redis Streams sink, dead letters, config validation.
Whole fleets of ``sseplug run`` processes are in test_fleet.py and test_fleet_faults.py."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gevent
import gevent.monkey
import pytest
import redis

import sseplug_redis
from sseplug.builtin import deadletter
from sseplug.errors import ConfigError
from sseplug.plugins import create_plugin_manager
from sseplug.run.config import Config, parse_config
from sseplug_redis import MARKER_KEY, RUNNERS_KEY, RedisLeases, checkpoint_key, lease_key, session_key
from sseplug_redis import budget as budget_module
from sseplug_redis.assign import assign, share_of
from sseplug_redis.budget import ReconnectBudget
from sseplug_redis.scripts import SCRIPTS

from .fleet_kit import stream_ids
from .redis_server import RedisServer

TTL = 3.0


# -- fixtures and helpers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def db(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


class FakeControl:
    """The runner's side of ``sseplug_schedule``, recording what the plugin asks."""

    def __init__(self, ids: list[str]) -> None:
        self._ids = ids
        self.started: list[str] = []
        self.stopped: list[str] = []
        self.aborted: list[str] = []
        self.lease: Any = None
        self.unready: Any = None

    def ids(self) -> list[str]:
        return list(self._ids)

    def running(self) -> set[str]:
        return set(self.started) - set(self.stopped)

    def start(self, connection_id: str) -> bool:
        if connection_id in self.running():
            return False
        self.started.append(connection_id)
        return True

    def stop(self, connection_id: str, then: Any = None) -> None:
        self.stopped.append(connection_id)
        if then is not None:
            then()

    def abort(self, message: str) -> None:
        self.aborted.append(message)

    def report(self, *, lease: Any, unready: Any) -> None:
        self.lease, self.unready = lease, unready


class FakeConnection:
    """What the plugin uses of a ``Connection``: id, request, last_event_id, stopping, release()."""

    def __init__(self, connection_id: str) -> None:
        self.id = connection_id
        self.request = SimpleNamespace(last_event_id="")
        self.last_event_id = ""
        self.stopping = False
        self.released = 0

    def release(self) -> None:
        self.released += 1


def make_config(tmp_path: Path, table: str | None, streams: int = 1) -> Config:
    text = "".join(f'[[connections]]\nid = "c{i}"\nurl = "http://127.0.0.1:9/"\n' for i in range(streams))
    if table is not None:
        text += f"\n[plugins.redis]\n{table}\n"
    return parse_config(text, path=tmp_path / "run.toml")


@pytest.fixture
def make_plugin(tmp_path: Path, redis_server: RedisServer, db: redis.Redis) -> Iterator[Any]:
    """A configured plugin scheduling a ``FakeControl`` (no coordinator greenlet: tests call tick())."""
    made: list[RedisLeases] = []

    def make(streams: int = 1, extra: str = "") -> RedisLeases:
        plugin = RedisLeases()
        config = make_config(tmp_path, f'url = "{redis_server.url}"\nlease_ttl = {TTL}\n{extra}', streams)
        plugin.sseplug_configure(config)
        plugin.control = FakeControl([c.id for c in config.connections])
        plugin.control.report(lease=plugin.held.__contains__, unready=lambda: plugin._down)
        made.append(plugin)
        return plugin

    yield make
    for plugin in made:
        plugin.sseplug_unconfigure()


def tick(*plugins: RedisLeases) -> None:
    """One coordination round of each plugin, then a turn for the streams they start (paced)."""
    for plugin in plugins:
        plugin.tick()
    gevent.sleep(0.01)


def event(event_id: str, data: Any) -> Any:
    return SimpleNamespace(id=event_id, event="tick", data=data)


# -- assignment (pure) -------------------------------------------------------------------------------


def test_the_assignment_is_even_the_same_everywhere_and_moves_little_when_runners_come_and_go() -> None:
    ids = [f"s{i}" for i in range(2000)]
    runners = [hashlib.md5(str(n).encode()).hexdigest() for n in range(11)]  # tokens, fixed for the test
    joining = runners.pop()
    owner = assign(ids, runners)
    assert sorted(Counter(owner.values()).values()) == [200] * 10  # bounded loads: exactly even here
    assert assign(list(reversed(ids)), list(reversed(runners))) == owner  # order of inputs does not matter
    assert [cid for cid in ids if owner[cid] == runners[3]] == share_of(runners[3], ids, runners)

    smaller = assign(ids, runners[1:])  # a runner left: its 200 must move, few others do
    moved = [cid for cid in ids if smaller[cid] != owner[cid]]
    assert 200 <= len(moved) <= 200 * 1.3, len(moved)
    assert Counter(smaller.values()).most_common(1)[0][1] == 223  # ceil(2000 / 9)
    larger = assign(ids, [*runners, joining])  # one joined: it takes ~2000/11, few others move
    moved = [cid for cid in ids if larger[cid] != owner[cid]]
    assert 181 <= len(moved) <= 182 * 1.3, len(moved)
    assert assign(ids, []) == {} and assign([], runners) == {}
    uneven = Counter(assign([f"x{i}" for i in range(7)], runners[:3]).values())
    assert sum(uneven.values()) == 7 and max(uneven.values()) <= 3  # ceil(7 / 3) at most


# -- sessions, claims, fencing (real Redis, one process) --------------------------------------------


def test_a_runner_claims_its_share_in_batches_and_starts_only_those_streams(
    make_plugin: Any, db: redis.Redis
) -> None:
    first, second = make_plugin(streams=10), make_plugin(streams=10)
    tick(first, second)  # join: nobody claims in the round it joins
    assert db.keys("sseplug:lease:*") == [] and first.control.started == []
    tick(first, second)  # the first saw a runner join: it waits a round; the second claims
    assert first.held == set() and len(second.held) == 5
    tick(first, second)
    assert set(first.live) == set(second.live) == {first.token, second.token}
    assert sorted(first.share + second.share) == sorted(f"c{i}" for i in range(10))
    assert len(first.share) == len(second.share) == 5
    assert sorted(first.control.started) == sorted(first.share) and first.held == set(first.share)
    assert {cid: db.get(lease_key(cid)).decode() for cid in first.share} == dict.fromkeys(first.share, first.token)
    assert db.get(MARKER_KEY) == first.epoch.encode() == second.epoch.encode()
    session = db.hgetall(session_key(first.token))
    assert session[b"held"] == b"0" and session[b"pid"]  # counts as of the heartbeat, before the claim
    assert 0 < db.pttl(session_key(first.token)) <= TTL * 1000
    assert first.control.lease("c0") is ("c0" in first.held)

    calls = db.info("commandstats")
    for _ in range(5):
        tick(first, second)  # steady state: one script per runner per round, no claims
    after = db.info("commandstats")
    assert after["cmdstat_evalsha"]["calls"] - calls["cmdstat_evalsha"]["calls"] == 10
    assert "cmdstat_get" not in after or after["cmdstat_get"]["calls"] - calls.get(
        "cmdstat_get", {"calls": 0})["calls"] == 10  # the marker, read by each heartbeat
    assert first.control.stopped == [] and sorted(first.control.started) == sorted(first.share)


def test_a_runner_that_lost_its_session_writes_nothing_and_rejoins(make_plugin: Any, db: redis.Redis) -> None:
    stale, other = make_plugin(extra='stream = "out:{connection}"'), make_plugin(extra='stream = "out:{connection}"')
    tick(stale, stale)
    assert stale.held == {"c0"}
    old = FakeConnection("c0")
    assert stale.sseplug_claim(connection=old) is True
    assert stale.sseplug_checkpoint_load(connection=old) == ""
    stale.sseplug_handle_event(event=event("5", {"n": 5}), connection=old)
    stale.sseplug_checkpoint_save(connection=old, last_event_id="5")
    assert db.get(checkpoint_key("c0")) == b"5" and stream_ids(db, "out:c0") == [5]

    db.delete(session_key(stale.token))  # its session expired (a frozen process) ...
    tick(other, other)  # ... so another runner takes the stream (the stale one is not live)
    assert other.held == {"c0"} and db.get(lease_key("c0")) == other.token.encode()
    new = FakeConnection("c0")
    assert other.sseplug_checkpoint_load(connection=new) == "5"  # read with the claim
    other.sseplug_handle_event(event=event("6", "six"), connection=new)
    other.sseplug_checkpoint_save(connection=new, last_event_id="6")

    stale.sseplug_handle_event(event=event("3", "late"), connection=old)
    stale.sseplug_checkpoint_save(connection=old, last_event_id="3")  # woke up: fenced out
    assert db.get(checkpoint_key("c0")) == b"6"
    assert [(f[b"id"], f[b"data"]) for _, f in db.xrange("out:c0")] == [(b"5", b'{"n":5}'), (b"6", b"six")]
    assert stale.control.stopped == ["c0"] and "c0" not in stale.held

    old_token = stale.token
    tick(stale)  # its renewal finds the session gone: a new token, the share claimed anew
    assert stale.token != old_token and db.zscore(RUNNERS_KEY, stale.token) is not None
    assert db.get(lease_key("c0")) == other.token.encode()  # not taken from a live holder


def test_a_reconnect_of_a_held_stream_resumes_from_what_it_saved_and_reads_redis_after_a_failed_save(
    make_plugin: Any, db: redis.Redis
) -> None:
    plugin = make_plugin(extra='stream = "out:{connection}"')
    tick(plugin, plugin)
    connection = FakeConnection("c0")
    assert plugin.sseplug_claim(connection=connection) is True
    assert plugin.sseplug_checkpoint_load(connection=connection) == ""  # read with the claim
    plugin.sseplug_handle_event(event=event("5", "five"), connection=connection)
    plugin.sseplug_checkpoint_save(connection=connection, last_event_id="5")
    db.set(checkpoint_key("c0"), "not read")  # a marker the runner would return if it read Redis
    assert plugin.sseplug_checkpoint_load(connection=connection) == "5"  # from what it saved: no round trip

    db.config_set("maxmemory", 1)  # Redis refuses writes (OOM): the save fails, the runner cannot tell how far
    try:
        plugin.sseplug_handle_event(event=event("6", "six"), connection=connection)
        plugin.sseplug_checkpoint_save(connection=connection, last_event_id="6")
    finally:
        db.config_set("maxmemory", 0)
    assert connection.released == 1  # it waits unread, then resumes from Redis
    db.set(checkpoint_key("c0"), "6")  # as if the failed save had gone through
    assert plugin.sseplug_checkpoint_load(connection=connection) == "6"
    assert plugin.sseplug_checkpoint_load(connection=connection) == "6"  # known again


def test_the_guard_sends_every_stream_to_standby_before_the_session_could_expire(
    make_plugin: Any, db: redis.Redis
) -> None:
    plugin = make_plugin(streams=3)
    tick(plugin, plugin)
    connections = [FakeConnection(f"c{i}") for i in range(3)]
    assert [plugin.sseplug_claim(connection=c) for c in connections] == [True] * 3
    plugin.confirmed_until = 0.0  # no heartbeat confirmed for GUARD x lease_ttl
    plugin._guard_once()
    assert [c.released for c in connections] == [1, 1, 1] and plugin.held == {"c0", "c1", "c2"}
    assert isinstance(plugin.sseplug_claim(connection=connections[0]), float)  # standby until confirmed
    assert "cannot confirm" in plugin.control.unready()
    tick(plugin)  # Redis answers: the same session, the streams go on (they reload their checkpoints)
    assert plugin.control.unready() is None and plugin.sseplug_claim(connection=connections[0]) is True


def test_the_reconnect_budget_grants_at_its_rate_and_a_stalled_runner_gives_late_tokens_back(db: redis.Redis) -> None:
    budget = ReconnectBudget(100, db.register_script(SCRIPTS["budget"]), db)  # holds 5 tokens (one tick)
    block = gevent.monkey.get_original("time", "sleep")

    def connect(connection_id: str) -> bool:
        granted = budget.take(connection_id)
        block(0.02)  # a connect's own work: a batch of five takes 100 ms to go through, and that is no stall
        return granted

    takers = [gevent.spawn(connect, f"c{i}") for i in range(8)]
    gevent.sleep(0)  # every taker waits in the queue, in order
    assert budget.grant() == 5  # the bucket starts full: one tick's worth, no more
    gevent.joinall(takers[:5], timeout=5)
    assert [t.value for t in takers[:5]] == [True] * 5 and not any(t.ready() for t in takers[5:])
    gevent.sleep(0.03)  # 3 tokens refill in 30 ms (Redis time)
    assert budget.grant() == 3
    block(budget_module.FRESH + 0.02)  # the hub stalls before the takers run: their grants age
    gevent.joinall(takers[5:], timeout=5)
    assert [t.value for t in takers[5:]] == [False] * 3  # given back: a late connect would exceed the rate

    answers = []  # a runner that is always that slow: once that is its usual delay, it connects
    for _ in range(budget_module.USUAL + 1):
        taker = gevent.spawn(budget.take, "slow")
        gevent.sleep(0)
        while not budget.grant():
            gevent.sleep(0.01)
        block(budget_module.FRESH + 0.02)
        answers.append(taker.get(timeout=5))
    assert answers[-1] is True and answers.count(False) < budget_module.USUAL


def test_handing_over_deletes_the_lease_only_after_the_stream_stopped(make_plugin: Any, db: redis.Redis) -> None:
    first = make_plugin(streams=4)
    tick(first, first)
    assert first.held == {"c0", "c1", "c2", "c3"}
    second = make_plugin(streams=4)
    stopped: list[Any] = []
    first.control.stop = lambda cid, then=None: stopped.append((cid, then))  # type: ignore[method-assign]
    tick(second, first)
    assert len(stopped) == 2 and len(first.held) == 2
    for cid, _ in stopped:
        assert db.get(lease_key(cid)) == first.token.encode()  # still ours while it reads
    for _, then in stopped:
        then()
    assert [db.get(lease_key(cid)) for cid, _ in stopped] == [None, None]
    tick(second)
    assert second.held == {cid for cid, _ in stopped}


def test_shutting_down_while_handing_over_releases_the_streams_still_stopping(make_plugin: Any, db: redis.Redis) -> None:
    first = make_plugin(streams=4)
    tick(first, first)
    second = make_plugin(streams=4)
    stopped: list[Any] = []
    first.control.stop = lambda cid, then=None: stopped.append((cid, then))  # type: ignore[method-assign]
    tick(second, first)  # two streams handed over, still stopping when the runner shuts down
    first.sseplug_unconfigure()
    assert list(db.scan_iter("sseplug:lease:*")) == []  # none left behind for a restarted fleet
    for _, then in stopped:
        then()  # the stops end after the shutdown: nothing to do, no error


def test_maxlen_trims_the_stream_and_unconfigure_frees_leases_and_session(make_plugin: Any, db: redis.Redis) -> None:
    plugin = make_plugin(streams=2, extra='stream = "out:{connection}"\nmaxlen = 10')
    tick(plugin, plugin)
    first = FakeConnection("c0")
    for batch in range(3):
        for n in range(batch * 100 + 1, batch * 100 + 101):
            plugin.sseplug_handle_event(event=event(str(n), [n]), connection=first)
        plugin.sseplug_checkpoint_save(connection=first, last_event_id=str(batch * 100 + 100))
    assert db.xlen("out:c0") < 300 and stream_ids(db, "out:c0")[-1] == 300  # MAXLEN ~: whole nodes go
    assert db.xrange("out:c0", count=1)[0][1][b"data"].startswith(b"[")
    token = plugin.token
    plugin.sseplug_unconfigure()
    assert db.keys("sseplug:lease:*") == [] and db.zscore(RUNNERS_KEY, token) is None
    assert not db.exists(session_key(token)) and plugin.url is None


def test_a_redis_that_lost_its_state_stops_the_runner_or_resumes_from_memory(
    make_plugin: Any, db: redis.Redis
) -> None:
    stopping = make_plugin(streams=2)
    tick(stopping, stopping)
    db.flushall()  # restarted empty
    tick(stopping)
    (message,) = stopping.control.aborted
    assert "lost the fleet's state" in message and 'on_lost_state = "stop"' in message
    assert sorted(stopping.control.stopped) == ["c0", "c1"] and stopping.held == set()
    stopping.sseplug_unconfigure()

    db.flushall()
    resuming = make_plugin(streams=2, extra='on_lost_state = "resume_from_memory"')
    tick(resuming, resuming)
    connection = FakeConnection("c0")
    resuming.sseplug_claim(connection=connection)
    resuming.sseplug_checkpoint_load(connection=connection)
    resuming.sseplug_checkpoint_save(connection=connection, last_event_id="41")
    db.flushall()
    tick(resuming)
    assert resuming.control.aborted == [] and connection.released == 1
    assert db.get(checkpoint_key("c0")) == b"41" and db.get(lease_key("c0")) == resuming.token.encode()
    assert resuming.sseplug_checkpoint_load(connection=connection) == "41"
    assert db.get(MARKER_KEY) == resuming.epoch.encode()


def test_dead_letters_go_to_the_dead_letter_stream(make_plugin: Any, db: redis.Redis) -> None:
    plugin = make_plugin(extra='dead_letter_stream = "dead:{connection}"')
    poison = SimpleNamespace(id="5", event="tick", data={"n": 5}, raw_response='id: 5\ndata: {"n": 5}')
    assert plugin.sseplug_dead_letter(event=poison, connection=FakeConnection("c0"), plugin="kafka",
                                      error=RuntimeError("broker down"), attempts=4) is True
    ((_, fields),) = db.xrange("dead:c0")
    assert {k.decode(): v.decode() for k, v in fields.items() if k != b"time"} == {
        "connection": "c0", "plugin": "kafka", "attempts": "4", "error": "RuntimeError: broker down", "id": "5",
        "event": "tick", "data": '{"n": 5}', "raw": 'id: 5\ndata: {"n": 5}'}
    without = make_plugin()
    assert without.sseplug_dead_letter(event=poison, connection=FakeConnection("c0"), plugin="kafka",
                                       error=RuntimeError("x"), attempts=1) is None


def dead_letter_through_the_hook(tmp_path: Path, table: str) -> Any:
    """``pm.hook.sseplug_dead_letter`` on a runner-like manager: a fresh plugin, then the built-in
    ``deadletter`` last; the plugin is configured with ``[plugins.redis]`` holding ``table``."""
    pm = create_plugin_manager(builtins=("deadletter",), load_entry_points=False, extra=[("redis", RedisLeases())])
    pm.configure(make_config(tmp_path, table))
    poison = SimpleNamespace(id="5", event="tick", data="five", raw_response="id: 5\nevent: tick\ndata: five")
    try:
        return pm.hook.sseplug_dead_letter(event=poison, connection=FakeConnection("c0"), plugin="kafka",
                                           error=RuntimeError("broker down"), attempts=2)
    finally:
        pm.unconfigure()


def test_sseplug_dead_letter_answers_first_with_dead_letter_stream_else_leaves_it_to_the_builtin(
    tmp_path: Path, redis_server: RedisServer, db: redis.Redis
) -> None:
    builtin_file = tmp_path / ".sseplug" / deadletter.FILENAME  # the config's default state_dir
    table = f'url = "{redis_server.url}"\ndead_letter_stream = "dead:{{connection}}"'
    assert dead_letter_through_the_hook(tmp_path, table) is True
    ((_, fields),) = db.xrange("dead:c0")
    assert (fields[b"id"], fields[b"plugin"], fields[b"attempts"], fields[b"data"]) == (b"5", b"kafka", b"2", b"five")
    assert not builtin_file.exists()  # firstresult: the built-in was not asked

    assert dead_letter_through_the_hook(tmp_path, f'url = "{redis_server.url}"') is True  # the built-in's answer
    assert [json.loads(line)["event"]["id"] for line in builtin_file.read_text().splitlines()] == ["5"]
    assert db.xlen("dead:c0") == 1


def test_sseplug_dead_letter_raises_when_redis_refuses_or_is_unreachable(
    tmp_path: Path, redis_server: RedisServer, db: redis.Redis
) -> None:
    db.set("dead:c0", "not a stream")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        dead_letter_through_the_hook(tmp_path, f'url = "{redis_server.url}"\ndead_letter_stream = "dead:{{connection}}"')
    closed_port = RedisServer(tmp_path).port  # nothing listens there
    with pytest.raises(redis.ConnectionError):
        dead_letter_through_the_hook(tmp_path, f'url = "redis://127.0.0.1:{closed_port}/0"\ndead_letter_stream = "d"')
    assert not (tmp_path / ".sseplug").exists()  # never passed on to the built-in: the connection stops


def test_dry_run_validates_and_prepares_no_pool(tmp_path: Path) -> None:
    plugin = RedisLeases()
    table = 'url = "redis://127.0.0.1:1/0"\nstream = "ev:{connection}"\ndead_letter_stream = "dead"'
    plugin.sseplug_configure(dataclasses.replace(make_config(tmp_path, table), dry_run=True))
    assert plugin.url is None and plugin.redis is None and repr(plugin).startswith("<RedisLeases inactive")
    assert plugin.sseplug_claim(connection=FakeConnection("c0")) is None
    for bad, key in (('url = "redis://h"\nstream = "{id}"', "stream"), ('url = "redis://h:port/0"', "url")):
        with pytest.raises(ConfigError) as caught:
            plugin.sseplug_configure(dataclasses.replace(make_config(tmp_path, bad), dry_run=True))
        assert caught.value.key == f"plugins.redis.{key}" and caught.value.path == str(tmp_path / "run.toml")


def test_sseplug_claim_is_inert_without_a_table_and_waits_while_redis_is_down(tmp_path: Path) -> None:
    plugin = RedisLeases()
    plugin.sseplug_configure(make_config(tmp_path, None))
    connection = FakeConnection("c0")
    assert plugin.sseplug_claim(connection=connection) is None
    assert plugin.sseplug_checkpoint_load(connection=connection) is None
    plugin.sseplug_configure(None)
    assert plugin.sseplug_claim(connection=connection) is None

    closed_port = RedisServer(tmp_path).port  # nothing listens there
    plugin.sseplug_configure(make_config(tmp_path, f'url = "redis://127.0.0.1:{closed_port}/0"\nlease_ttl = 3'))
    plugin.control = FakeControl(["c0"])
    try:
        tick(plugin)  # no answer: logged, nothing held, the runner reports why it is not ready
        assert plugin.sseplug_claim(connection=connection) == TTL / 6 and plugin.held == set()
        assert plugin._down is not None and f"cannot reach Redis at redis://127.0.0.1:{closed_port}/0" in plugin._down
    finally:
        plugin.sseplug_unconfigure()


@pytest.mark.parametrize(
    ("table", "key", "text"),
    [
        ("lease_ttl = 3", "url", "missing key 'url'"),
        ('url = "http://127.0.0.1:6379"', "url", "redis://"),
        ("url = 6379", "url", "expected a string, got 6379 (integer)"),
        ('url = "redis://h"\nlease_tll = 3', "lease_tll", "unknown key 'lease_tll' in [plugins.redis] (did you mean"),
        ('url = "redis://h"\nlease_ttl = 0.5', "lease_ttl", "seconds >= 1"),
        ('url = "redis://h"\nlease_ttl = "10"', "lease_ttl", '"10" (string)'),
        ('url = "redis://h"\nlease_ttl = true', "lease_ttl", "true (boolean)"),
        ('url = "redis://h"\nstream = ""', "stream", "key pattern"),
        ('url = "redis://h"\nstream = 3', "stream", 'got 3 (integer); e.g. stream = "sseplug:{connection}"'),
        ('url = "redis://h"\nstream = "s:{conection}"', "stream", "only placeholder"),
        ('url = "redis://h"\ndead_letter_stream = "d:{id}"', "dead_letter_stream", "only placeholder"),
        ('url = "redis://h"\nstream = "s:{connection}"\nmaxlen = 0', "maxlen", "integer >= 1"),
        ('url = "redis://h"\nmaxlen = 10', "maxlen", "set stream too"),
        ('url = "redis://h"\non_lost_state = "resume"', "on_lost_state", "expected one of 'stop', 'resume_from_memory'"),
        ('url = "redis://h"\nreconnect_rate = 0', "reconnect_rate", "integer >= 1"),
    ],
    ids=["no-url", "http-url", "int-url", "unknown-key", "short-ttl", "text-ttl", "bool-ttl", "empty-stream",
         "int-stream", "bad-placeholder", "bad-dead-letter-placeholder", "zero-maxlen", "maxlen-alone",
         "bad-lost-state-policy", "zero-reconnect-rate"],
)
def test_config_errors_name_the_key(tmp_path: Path, table: str, key: str, text: str) -> None:
    plugin = RedisLeases()
    with pytest.raises(ConfigError) as caught:
        plugin.sseplug_configure(make_config(tmp_path, table))
    assert caught.value.key == f"plugins.redis.{key}" and text in str(caught.value), str(caught.value)
    assert str(tmp_path / "run.toml") in str(caught.value)
    assert plugin.url is None  # stays inert


def test_valid_config_is_read_without_connecting(tmp_path: Path) -> None:
    plugin = RedisLeases()
    plugin.sseplug_configure(make_config(
        tmp_path, 'url = "redis://:secret@127.0.0.1:1/2"\nlease_ttl = 4\nstream = "ev:{connection}"\nmaxlen = 500\n'
        'on_lost_state = "resume_from_memory"\nreconnect_rate = 200', streams=3))
    try:
        assert (plugin.lease_ttl, plugin.stream, plugin.maxlen, plugin._ids) == (4.0, "ev:{connection}", 500,
                                                                                  ["c0", "c1", "c2"])
        assert (plugin.on_lost_state, plugin.reconnect_rate) == ("resume_from_memory", 200.0)
        assert "secret" not in repr(plugin) and plugin._greenlets == []
    finally:
        plugin.sseplug_unconfigure()
    assert sseplug_redis.plugin is not plugin and plugin.url is None
