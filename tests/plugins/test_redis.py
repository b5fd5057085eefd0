"""The ``redis`` plugin (sseplug-redis) against a real redis-server: leases, spread, takeover,
fenced checkpoints, the Redis Streams sink, Redis going away, config validation."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import signal
import socket
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gevent
import gevent.monkey
import pytest
import redis

import sseplug_redis
from sseplug.run.config import Config, parse_config
from sseplug.builtin import deadletter
from sseplug.errors import ConfigError
from sseplug.plugins import create_plugin_manager
from sseplug.server import SSEServer
from sseplug_redis import RUNNERS_KEY, RedisLeases, checkpoint_key, lease_key

from ..integration import runner_process as rp
from .redis_server import RedisServer

TTL = 3.0
RENEWAL = TTL / 3
TOKEN = re.compile(r"runner token ([0-9a-f]{32})")


# -- fixtures and helpers ----------------------------------------------------------------------------


_select = gevent.monkey.get_original("select", "select")


def client_still_there(sock: socket.socket) -> bool:
    """Whether the client of ``sock`` still has its end open (no FIN or reset arrived yet)."""
    if sock.fileno() < 0:
        return False
    readable, _, _ = _select([sock], [], [], 0)
    if not readable:
        return True
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except OSError:
        return False


class CountingServer(SSEServer):
    """The embedded SSE server, recording every event stream that opened while another response on
    the same path still had its client: two consumers at once. (``open_streams`` counts a response
    until the server's next write fails; a client that closed its socket first is no consumer.)"""

    def __init__(self) -> None:
        super().__init__()
        self.overlaps: list[tuple[str, float]] = []  # (path, monotonic time)
        self._socket_of: dict[Any, socket.socket] = {}  # serving greenlet -> its client socket
        self._reading: defaultdict[str, set[socket.socket]] = defaultdict(set)

    def _handle(self, sock: socket.socket, address: tuple[str, int]) -> None:
        self._socket_of[gevent.getcurrent()] = sock
        try:
            super()._handle(sock, address)
        finally:
            del self._socket_of[gevent.getcurrent()]
            for sockets in self._reading.values():
                sockets.discard(sock)

    def _route(self, request: Any) -> Any:
        response, body = super()._route(request)
        if response.status == 200:
            sockets = self._reading[request.path]
            if any(client_still_there(other) for other in sockets):
                self.overlaps.append((request.path, time.monotonic()))
            sockets.add(self._socket_of[gevent.getcurrent()])
        return response, body


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


@pytest.fixture
def feeds() -> Iterator[CountingServer]:
    with CountingServer() as server:
        yield server


def write_config(tmp_path: Path, connections: list[tuple[str, str]], redis_table: str) -> Path:
    path = tmp_path / "run.toml"
    text = '[runner]\nstate_dir = "state"\nshutdown_timeout = 5\n\n'
    text += "".join(f'[[connections]]\nid = "{cid}"\nurl = "{url}"\n\n' for cid, url in connections)
    path.write_text(text + f"[plugins.redis]\n{redis_table}\n")
    return path


class Runner:
    """One ``sseplug run`` subprocess, its stdout and stderr in files (read any time, never blocking)."""

    def __init__(self, config: Path, name: str) -> None:
        self.name = name
        self.err_path = config.parent / f"{name}.err"
        self.out_path = config.parent / f"{name}.out"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([*rp.command(), "run", str(config)], stdout=out, stderr=err,
                                         cwd=config.parent)

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def token(self, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = TOKEN.search(self.stderr)
            if found:
                return found.group(1)
            assert self.proc.poll() is None, f"{self.name} exited:\n{self.stderr}"
            gevent.sleep(0.05)
        raise AssertionError(f"{self.name} logged no token within {timeout}s:\n{self.stderr}")

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"{self.name} did not exit within {timeout}s:\n{self.stderr[-3000:]}")
            gevent.sleep(0.05)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def owners(client: redis.Redis, ids: list[str]) -> dict[str, str | None]:
    values = client.mget([lease_key(cid) for cid in ids])
    return {cid: None if value is None else value.decode() for cid, value in zip(ids, values)}


def wait_until(condition: Any, timeout: float, message: Any, step: float = 0.02) -> float:
    """Poll ``condition`` until true; the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message() if callable(message) else message)
        gevent.sleep(step)
    return time.monotonic()


def first_request_after(server: SSEServer, path: str, moment: float) -> float | None:
    times = [request.received_at for request in server.requests_for(path) if request.received_at > moment]
    return min(times) if times else None


def stream_ids(client: redis.Redis, key: str) -> list[int]:
    return [int(fields[b"id"]) for _, fields in client.xrange(key)]


def check_no_gap(ids: list[int], count: int, where: str) -> int:
    """Every id 1..count, new ids in order (each one more than the highest so far); the duplicates."""
    highest = 0
    for index, value in enumerate(ids):
        assert value <= highest + 1, f"{where}: gap before id {value} at entry {index} (highest so far {highest})"
        highest = max(highest, value)
    assert highest == count, f"{where}: ends at {highest}, expected {count}"
    return len(ids) - count


# -- three runners, twenty streams -------------------------------------------------------------------


def test_three_runners_share_streams_take_over_on_kill_and_release_on_sigterm(
    tmp_path: Path, feeds: CountingServer, db: redis.Redis, redis_server: RedisServer
) -> None:
    streams, count, interval = 20, 600, 0.02
    ids = [f"s{i}" for i in range(streams)]
    config = write_config(
        tmp_path, [(cid, feeds.url(f"/feed/{cid}?count={count}&interval={interval}")) for cid in ids],
        f'url = "{redis_server.url}"\nlease_ttl = {TTL}\nstream = "sseplug:{{connection}}"\n',
    )
    share = math.ceil(streams / 3)
    runners = [Runner(config, name) for name in ("a", "b", "c")]
    samples: list[tuple[float, dict[str, str | None]]] = []

    def sample_forever() -> None:
        while True:
            samples.append((time.monotonic(), owners(db, ids)))
            gevent.sleep(0.05)

    sampler = gevent.spawn(sample_forever)
    try:
        tokens = {runner.name: runner.token() for runner in runners}
        # spread: all three consume, then none holds more than its share
        wait_until(lambda: samples and set(tokens.values()) <= set(samples[-1][1].values()), 15,
                   lambda: f"not every runner took a stream: {samples[-1:]}")
        gevent.sleep(2 * RENEWAL + 1.5)  # a renewal round hands over what a fast starter took
        settled = time.monotonic()
        gevent.sleep(1.0)
        held = Counter(samples[-1][1].values())
        assert set(held) == set(tokens.values()) and sum(held.values()) == streams, held
        over = [(t, Counter(owned.values())) for t, owned in samples if t >= settled
                and max(Counter(owned.values()).values()) > share]
        assert not over, f"a runner held more than {share} once all ran: {over[:3]}"

        # SIGKILL: the others resume its streams within lease_ttl + one renewal
        victim = runners[0]
        orphans = [cid for cid, token in owners(db, ids).items() if token == tokens["a"]]
        assert orphans
        killed_at = time.monotonic()
        victim.kill()
        resumed = {}
        for cid in orphans:
            path = f"/feed/{cid}"
            wait_until(lambda: first_request_after(feeds, path, killed_at) is not None, TTL + RENEWAL + 5,
                       f"{cid} not resumed after the kill")
            resumed[cid] = first_request_after(feeds, path, killed_at) - killed_at  # type: ignore[operator]
        assert max(resumed.values()) <= TTL + RENEWAL + 0.5, f"takeover too slow: {resumed}"
        assert all(feeds.requests_for(f"/feed/{cid}")[-1].headers.get("last-event-id") for cid in orphans)

        # SIGTERM: exit 0, its leases deleted at once, its streams taken over before they could expire
        gevent.sleep(1.0)
        leaving = runners[1]
        left_behind = [cid for cid, token in owners(db, ids).items() if token == tokens["b"]]
        assert left_behind
        termed_at = time.monotonic()
        leaving.proc.send_signal(signal.SIGTERM)
        assert leaving.wait(timeout=10) == 0, leaving.stderr[-3000:]
        assert tokens["b"] not in owners(db, ids).values()
        assert db.zscore(RUNNERS_KEY, tokens["b"]) is None
        for cid in left_behind:
            path = f"/feed/{cid}"
            wait_until(lambda: first_request_after(feeds, path, termed_at) is not None, TTL,
                       f"{cid} not taken over within {TTL}s of the SIGTERM")
        handover = max(first_request_after(feeds, f"/feed/{cid}", termed_at) for cid in left_behind) - termed_at
        assert handover < TTL - RENEWAL, f"SIGTERM hand-over took {handover:.2f}s: as slow as an expiry"

        # the last runner finishes every stream by itself, then exits 0 leaving no lease behind
        last = runners[2]
        assert last.wait(timeout=40) == 0, last.stderr[-3000:]
    finally:
        sampler.kill()
        for runner in runners:
            runner.kill()
    assert db.keys("sseplug:lease:*") == []
    assert db.zcard(RUNNERS_KEY) == 0 or set(db.zrange(RUNNERS_KEY, 0, -1)) == {tokens["a"].encode()}
    assert feeds.overlaps == [], "two consumers of one stream at once"
    assert [runner.out_path.read_text() for runner in runners] == ["", "", ""]  # the sink replaced stdout
    duplicates = {cid: check_no_gap(stream_ids(db, f"sseplug:{cid}"), count, cid) for cid in ids}
    # the batch and its checkpoint are written by one fenced script: a takeover repeats nothing
    assert sum(duplicates.values()) == 0, duplicates
    assert all(db.get(checkpoint_key(cid)) == str(count).encode() for cid in ids)
    print(f"takeover after SIGKILL: {max(resumed.values()):.2f}s max over {len(orphans)} streams; "
          f"after SIGTERM: {handover:.2f}s over {len(left_behind)}; duplicates {sum(duplicates.values())}")


# -- Redis going away --------------------------------------------------------------------------------


def test_redis_going_away_stops_the_streams_and_says_why_then_resumes(tmp_path: Path, feeds: CountingServer) -> None:
    server = RedisServer(tmp_path / "redis").start()
    ids = [f"r{i}" for i in range(5)]
    config = write_config(
        tmp_path, [(cid, feeds.url(f"/feed/{cid}?count=100000&interval=0.05")) for cid in ids],
        f'url = "{server.url}"\nlease_ttl = {TTL}\nstream = "sseplug:{{connection}}"\n',
    )
    runner = Runner(config, "solo")
    paths = [f"/feed/{cid}" for cid in ids]
    try:
        wait_until(lambda: all(feeds.open_streams(path) == 1 for path in paths), 10,
                   lambda: f"streams not all open:\n{runner.stderr}")
        server.kill()
        wait_until(lambda: all(feeds.open_streams(path) == 0 for path in paths), RENEWAL + 2,
                   lambda: f"streams still read after Redis went away:\n{runner.stderr}")
        requests = len(feeds.requests)
        gevent.sleep(2 * RENEWAL)
        assert runner.proc.poll() is None, f"the runner died:\n{runner.stderr}"
        assert len(feeds.requests) == requests, "the runner kept connecting without Redis"
        err = runner.stderr
        # the error as redis-py words it: refused (a new connection) or reset (one in use)
        assert f"cannot reach Redis at {server.url} (ConnectionError: " in err, err
        assert err.count("cannot reach Redis") == 1, "the error is logged once, not once per claim"
        assert "ERROR sseplug.redis" in err

        server.start()  # an empty Redis on the same port: the streams are claimed anew
        wait_until(lambda: all(feeds.open_streams(path) == 1 for path in paths), TTL + 3,
                   lambda: f"streams not resumed once Redis was back:\n{runner.stderr}")
        assert "answers again" in runner.stderr
        runner.proc.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=10) == 0, runner.stderr[-3000:]
    finally:
        runner.kill()
        server.stop()
    assert feeds.overlaps == []


# -- fencing, renewal, spread (one process, fake connections) ----------------------------------------


class FakeConnection:
    """What the plugin uses of a ``Connection``: id, request, state, release()."""

    def __init__(self, connection_id: str) -> None:
        self.id = connection_id
        self.request = SimpleNamespace(last_event_id="")
        self.state = "open"
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
    made: list[RedisLeases] = []

    def make(streams: int = 1, extra: str = "") -> RedisLeases:
        plugin = RedisLeases()
        plugin.sseplug_configure(make_config(tmp_path, f'url = "{redis_server.url}"\nlease_ttl = {TTL}\n{extra}',
                                             streams))
        made.append(plugin)
        return plugin

    yield make
    for plugin in made:
        plugin.sseplug_unconfigure()


def claim(plugin: RedisLeases, connection: FakeConnection) -> bool | float | None:
    """The claim after the jittered first one."""
    plugin.sseplug_claim(connection=connection)
    return plugin.sseplug_claim(connection=connection)


def event(event_id: str, data: Any) -> Any:
    return SimpleNamespace(id=event_id, event="tick", data=data)


def test_a_runner_that_lost_its_lease_cannot_write_events_or_rewind_the_checkpoint(
    make_plugin: Any, db: redis.Redis
) -> None:
    stale, owner = make_plugin(extra='stream = "out:{connection}"'), make_plugin(extra='stream = "out:{connection}"')
    old, new = FakeConnection("c0"), FakeConnection("c0")
    assert claim(stale, old) is True and db.get(lease_key("c0")) == stale.token.encode()
    assert stale.sseplug_checkpoint_load(connection=old) == ""
    stale.sseplug_handle_event(event=event("5", {"n": 5}), connection=old)
    stale.sseplug_checkpoint_save(connection=old, last_event_id="5")
    assert db.get(checkpoint_key("c0")) == b"5" and stream_ids(db, "out:c0") == [5]

    db.delete(lease_key("c0"))  # the lease expired (a stalled process) ...
    assert claim(owner, new) is True  # ... and another runner took it
    assert owner.sseplug_checkpoint_load(connection=new) == "5"
    owner.sseplug_handle_event(event=event("6", "six"), connection=new)
    owner.sseplug_checkpoint_save(connection=new, last_event_id="6")

    stale.sseplug_handle_event(event=event("3", "late"), connection=old)
    stale.sseplug_checkpoint_save(connection=old, last_event_id="3")  # a stale batch, fenced out
    assert db.get(checkpoint_key("c0")) == b"6"
    assert [(f[b"id"], f[b"data"]) for _, f in db.xrange("out:c0")] == [(b"5", b'{"n":5}'), (b"6", b"six")]
    assert old.released >= 1 and "c0" not in stale.held and new.released == 0
    assert db.get(lease_key("c0")) == owner.token.encode()


def test_a_failed_renewal_releases_the_stream_and_a_crowded_runner_hands_streams_over(
    make_plugin: Any, db: redis.Redis
) -> None:
    plugin = make_plugin(streams=4)
    connections = [FakeConnection(f"c{i}") for i in range(4)]
    assert [claim(plugin, c) for c in connections] == [True] * 4  # alone: a share of 4
    db.set(lease_key("c0"), "someone-else")
    plugin.renew()
    assert connections[0].released == 1 and "c0" not in plugin.held
    assert db.get(lease_key("c0")) == b"someone-else"  # not ours: left alone

    other = make_plugin(streams=4)
    other._heartbeat()  # a second runner is alive: the share drops to 2
    connections[3].state = "waiting"  # not reading: its lease goes at once
    plugin.renew()
    assert len(plugin.held) == 2 and sum(c.released for c in connections[1:]) == 1
    assert db.get(lease_key("c3")) is None
    assert isinstance(plugin.sseplug_claim(connection=connections[3]), float)  # at its share: standby
    assert claim(other, FakeConnection("c3")) is True

    plugin._redis_failed(redis.ConnectionError("gone"))  # a blip: every stream stops, leases stay in Redis
    assert plugin.held == {} and connections[1].released == connections[2].released == 1
    assert plugin.sseplug_claim(connection=connections[1]) is True  # its own lease, taken back at once


def test_maxlen_trims_the_stream_and_finished_or_unconfigured_streams_free_their_leases(
    make_plugin: Any, db: redis.Redis
) -> None:
    plugin = make_plugin(streams=2, extra='stream = "out:{connection}"\nmaxlen = 10')
    first, second = FakeConnection("c0"), FakeConnection("c1")
    assert claim(plugin, first) is True and claim(plugin, second) is True
    for batch in range(3):
        for n in range(batch * 100 + 1, batch * 100 + 101):
            plugin.sseplug_handle_event(event=event(str(n), [n]), connection=first)
        plugin.sseplug_checkpoint_save(connection=first, last_event_id=str(batch * 100 + 100))
    assert db.xlen("out:c0") < 300 and stream_ids(db, "out:c0")[-1] == 300  # MAXLEN ~: whole nodes go
    assert db.xrange("out:c0", count=1)[0][1][b"data"].startswith(b"[")
    plugin.sseplug_connection_finished(connection=first)
    assert db.get(lease_key("c0")) is None and db.get(lease_key("c1")) == plugin.token.encode()
    assert db.zscore(RUNNERS_KEY, plugin.token) is not None
    plugin.sseplug_unconfigure()
    assert db.keys("sseplug:lease:*") == [] and db.zscore(RUNNERS_KEY, plugin.token) is None


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
    try:
        waits = [claim(plugin, connection) for _ in range(2)]
        assert all(isinstance(wait, float) and TTL / 6 <= wait <= TTL / 3 for wait in waits), waits
        assert plugin.held == {}
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
    ],
    ids=["no-url", "http-url", "int-url", "unknown-key", "short-ttl", "text-ttl", "bool-ttl", "empty-stream",
         "int-stream", "bad-placeholder", "bad-dead-letter-placeholder", "zero-maxlen", "maxlen-alone"],
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
        tmp_path, 'url = "redis://:secret@127.0.0.1:1/2"\nlease_ttl = 4\nstream = "ev:{connection}"\nmaxlen = 500',
        streams=3))
    try:
        assert (plugin.lease_ttl, plugin.stream, plugin.maxlen, plugin.total) == (4.0, "ev:{connection}", 500, 3)
        assert "secret" not in repr(plugin) and plugin._renewer is None
    finally:
        plugin.sseplug_unconfigure()
    assert sseplug_redis.plugin is not plugin and plugin.url is None
