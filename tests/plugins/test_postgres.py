"""The ``postgres`` plugin (sseplug-postgres) against a real PostgreSQL server: every event once and in
order, the checkpoint in the same transaction (SIGKILL at several moments, PostgreSQL restarted),
events PostgreSQL refuses under the errors policy, a slow query that stalls nobody, config checks."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import psycopg
import pytest

import sseplug_postgres
from sseplug import SSEClient, SSERequest, SSEResponse, hookimpl
from sseplug.builtin.sqlite import SQLiteCheckpoints
from sseplug.errors import PluginError, TemporaryPluginError
from sseplug.run.config import parse_config
from sseplug.server import Response, SSEServer
from sseplug.testing import DONE
from sseplug_postgres import PostgresSink

from ..integration import runner_process as rp
from . import sink_kit
from .postgres_server import PASSWORD, PostgresServer
from .sink_kit import HubWatch, wait_until

TIMEOUT = 20.0
MAX_HUB_STALL = 0.5  # far above a busy 2-core machine's noise, far below the 2 s a blocking query would show

make_config = functools.partial(sink_kit.make_config, plugin="postgres")
drain = functools.partial(sink_kit.drain, timeout=TIMEOUT, limit=20_000)


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.remove()


@pytest.fixture
def db(pg: PostgresServer) -> Iterator[psycopg.Connection[Any]]:
    """A session on a database emptied of sseplug's tables."""
    with pg.connect() as session:
        for (name,) in session.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall():
            session.execute(f'DROP TABLE "{name}"')
        yield session


@pytest.fixture
def sink(register_plugin: Callable[..., object]) -> Iterator[PostgresSink]:
    plugin = PostgresSink()
    yield from sink_kit.registered(register_plugin, plugin, "postgres", plugin.sseplug_unconfigure)


def rows(db: psycopg.Connection[Any], table: str = "sseplug_events") -> list[tuple[Any, ...]]:
    return db.execute(f'SELECT connection, seq, id, event, data, data_text FROM "{table}" '
                      "ORDER BY connection, seq").fetchall()


def checkpoints(db: psycopg.Connection[Any]) -> dict[str, tuple[str, int]]:
    return {c: (i, s) for c, i, s in db.execute("SELECT connection, last_event_id, seq FROM sseplug_checkpoints")}


def count(pg: PostgresServer, table: str = "sseplug_events") -> int:
    try:
        with pg.connect() as session:
            return int(session.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])  # type: ignore[index]
    except psycopg.errors.UndefinedTable:
        return 0


def parsed(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


def exactly_once_in_order(db: psycopg.Connection[Any], ids: list[str], total: int) -> None:
    for cid in ids:
        got = db.execute("SELECT seq, id FROM sseplug_events WHERE connection = %s ORDER BY seq", (cid,)).fetchall()
        assert [int(i) for _, i in got] == list(range(1, total + 1)), f"{cid}: not every event once, in order"
        assert [s for s, _ in got] == list(range(1, total + 1)), f"{cid}: seq has gaps"
    assert checkpoints(db) == {cid: (str(total), total) for cid in ids}


# -- rows and checkpoints ----------------------------------------------------------------------------


def test_every_event_a_row_once_in_order_json_as_jsonb_text_as_text(
    tmp_path: Path, pg: PostgresServer, db: psycopg.Connection[Any], sse_server: SSEServer, sink: PostgresSink,
    sse_client_for: Callable[..., SSEClient],
) -> None:
    body = [b'retry: 10\n\n: ping\n\nid: 1\ndata: {"n": 1, "s": "caf\xc3\xa9"}\n\n',
            b"id: 2\nevent: note\ndata: tab\there\ndata: back\\slash\n\n",
            b'id: 3\ndata: [DONE]\n\ndata: "quoted"\n\nid: 4\ndata: [1,\ndata: 2]\n\n']
    sse_server.script("/s", Response(body=body), DONE)
    client = sse_client_for(make_config(tmp_path, f'dsn = "{pg.dsn}"\nbatch_max = 2', ids=("s", "f")))
    jobs = [gevent.spawn(drain, client, "s", sse_server.url("/s")),
            gevent.spawn(drain, client, "f", sse_server.url("/feed/f?count=500&interval=0"))]
    gevent.joinall(jobs, timeout=TIMEOUT, raise_error=True)
    got = rows(db)
    assert [r for r in got if r[0] == "s"] == [
        ("s", 1, "1", "message", {"n": 1, "s": "café"}, None),
        ("s", 2, "2", "note", None, "tab\there\nback\\slash"),
        ("s", 3, "3", "message", None, "[DONE]"),
        ("s", 4, "3", "message", None, "quoted"),  # a JSON string: the text it decoded to
        ("s", 5, "4", "message", [1, 2], None),
    ]
    assert [r[4] for r in got if r[0] == "f"] == [{"feed": "f", "seq": n} for n in range(1, 501)]
    assert checkpoints(db) == {"s": ("4", 5), "f": ("500", 500)}
    assert db.execute("SELECT count(*) FROM sseplug_events WHERE received_at > now() - interval '1 minute'"
                      ).fetchone() == (505,)
    assert sink.rows_written == {"s": 5, "f": 500} and "sseplug_events" in repr(sink) and PASSWORD not in repr(sink)


class Recorder:
    """Another sink: the connection id of every event it got."""

    def __init__(self) -> None:
        self.got: list[str] = []

    @hookimpl
    def sseplug_handle_event(self, connection: Any) -> None:
        self.got.append(connection.id)


def test_routed_by_sinks_a_table_per_connection_and_other_routes_keep_sqlite(
    tmp_path: Path, pg: PostgresServer, db: psycopg.Connection[Any], sse_server: SSEServer, sink: PostgresSink,
    sse_client_for: Callable[..., SSEClient], register_plugin: Callable[..., object],
) -> None:
    """``a`` routes to postgres only, ``b-2`` to every sink, ``other`` to another sink only: its
    checkpoint stays the built-in sqlite's, and it gets no table, row or checkpoint row."""
    recorder, store = Recorder(), SQLiteCheckpoints()
    register_plugin(recorder, "rec")
    register_plugin(store, "sqlite")
    text = (f'[runner]\nstate_dir = "state"\n[[connections]]\nid = "a"\nurl = "http://x/"\nsinks = ["postgres"]\n'
            f'[[connections]]\nid = "b-2"\nurl = "http://x/"\n[[connections]]\nid = "other"\nurl = "http://x/"\n'
            f'sinks = ["rec"]\n[plugins.postgres]\ndsn = "{pg.dsn}"\ntable = "ev_{{connection}}"\n')
    config = parse_config(text, path=tmp_path / "run.toml")
    client = sse_client_for(config)
    for cid in ("a", "b-2", "other"):
        drain(client, cid, sse_server.url(f"/feed/{cid}?count=30&interval=0"), config)
    assert [r[2] for r in rows(db, "ev_a")] == [str(n) for n in range(1, 31)]
    assert len(rows(db, "ev_b-2")) == 30
    assert db.execute("SELECT to_regclass('ev_other')").fetchone() == (None,)
    assert checkpoints(db) == {"a": ("30", 30), "b-2": ("30", 30)}
    assert sorted(set(recorder.got)) == ["b-2", "other"] and len(recorder.got) == 60
    assert store.db is not None
    assert dict(store.db.execute("SELECT connection, last_event_id FROM checkpoints"))["other"] == "30"


# -- crashes and restarts ----------------------------------------------------------------------------


def runner_config(tmp_path: Path, server: SSEServer, pg: PostgresServer, ids: list[str], total: int) -> Path:
    config = tmp_path / "run.toml"
    text = '[runner]\nstate_dir = "state"\nshutdown_timeout = 5\n'
    for cid in ids:
        text += f'[[connections]]\nid = "{cid}"\nurl = "{server.url(f"/feed/{cid}?count={total}&interval=0.0002")}"\n'
    # jsonl alongside: at least once (its lines are flushed before the table commits)
    config.write_text(text + f'[plugins.postgres]\ndsn = "{pg.dsn}"\nbatch_max = 40\n[plugins.jsonl]\npath = "events.jsonl"\n')
    return config


def test_sigkill_at_several_moments_then_restart_leaves_every_event_exactly_once(
    tmp_path: Path, pg: PostgresServer, db: psycopg.Connection[Any], sse_server: SSEServer,
) -> None:
    """Three streams of 1500 events; the runner is SIGKILLed when the table holds 300, 1500 and
    3000 rows, restarted each time (the first run traces its hooks at DEBUG), then left to end."""
    ids, total = ["k0", "k1", "k2"], 1500
    config = runner_config(tmp_path, sse_server, pg, ids, total)
    trace = {"SSEPLUG_TRACE_PLUGINS": "1"}
    for moment in (300, 1500, 3000):
        err_path = tmp_path / f"{moment}.err"  # a file, not a pipe: a DEBUG trace would fill a pipe and block
        with open(err_path, "wb") as err_file:
            proc = subprocess.Popen([*rp.command(), *(("--log-level", "DEBUG") if trace else ()), "run", str(config)],
                                    stdout=subprocess.DEVNULL, stderr=err_file, cwd=tmp_path,
                                    env={**os.environ, **trace})
        try:
            wait_until(lambda: count(pg) >= moment or proc.poll() is not None, TIMEOUT,
                       lambda: f"the table did not reach {moment} rows (has {count(pg)})", step=0.005)
            assert proc.poll() is None, "the runner ended before the kill"
        finally:
            proc.kill()
            proc.wait(timeout=10)
        err = err_path.read_text(errors="replace")
        assert PASSWORD not in err, "the password written in the dsn is in the output"
        if trace:
            assert "sseplug_configure(config=Config(" in err and "sseplug:<redacted>@" in err  # tracing was on
            trace = {}
    proc = rp.start("run", str(config), cwd=tmp_path)
    status, out, err = rp.finish(proc, timeout=TIMEOUT)
    assert status == 0, err[-3000:]
    assert out == []  # the table is the sink: stdout's sink was dropped
    exactly_once_in_order(db, ids, total)
    lines = [parsed(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]  # a torn line: None
    assert {(line["connection"], line["id"]) for line in lines if line} == {(c, str(n)) for c in ids
                                                                          for n in range(1, total + 1)}
    resumed = [r for r in sse_server.requests if r.headers.get("last-event-id")]
    assert len(resumed) >= 3 * 3, "the restarts did not resume from the table's checkpoint"


def test_postgres_restarted_mid_stream_the_stream_waits_and_resumes_where_the_table_stops(
    tmp_path: Path, pg: PostgresServer, db: psycopg.Connection[Any], sse_server: SSEServer, sink: PostgresSink,
    sse_client_for: Callable[..., SSEClient], fast_retry: None, caplog: pytest.LogCaptureFixture,
) -> None:
    """One retry 50 ms later, then (action "skip") the stream lets go and waits for PostgreSQL,
    which is down for about a second."""
    caplog.set_level(logging.INFO, logger="sseplug.postgres")
    config = make_config(tmp_path, f'dsn = "{pg.dsn}"', ids=("r0", "r1"),
                         extra='errors = { retries = 1, backoff = 0.05, action = "skip" }')
    client = sse_client_for(config)
    total = 2000
    jobs = [gevent.spawn(drain, client, cid, sse_server.url(f"/feed/{cid}?count={total}&interval=0.0005"), config)
            for cid in ("r0", "r1")]
    wait_until(lambda: count(pg) >= 600, TIMEOUT, lambda: f"only {count(pg)} rows", step=0.005)
    pg.stop()
    gevent.sleep(0.8)
    assert not any(job.ready() for job in jobs)
    pg.start()
    gevent.joinall(jobs, timeout=TIMEOUT, raise_error=True)
    with pg.connect() as session:
        exactly_once_in_order(session, ["r0", "r1"], total)
    logged = caplog.text
    assert "PostgreSQL does not answer" in logged and "answers again" in logged
    assert PASSWORD not in logged


def test_postgres_away_past_the_retries_with_action_stop_stops_the_connection_checkpoint_unmoved(
    tmp_path: Path, pg: PostgresServer, db: psycopg.Connection[Any], sse_server: SSEServer, sink: PostgresSink,
    sse_client_for: Callable[..., SSEClient],
) -> None:
    config = make_config(tmp_path, f'dsn = "{pg.dsn}"', ids=("s",),
                         extra='errors = { retries = 2, backoff = 0.05, action = "stop" }')
    client = sse_client_for(config)
    # event 2 comes 0.6 s after event 1: PostgreSQL is stopped by then (a fast shutdown takes ~0.1 s)
    sse_server.script("/s", Response(body=[b"id: 1\ndata: one\n\n", 0.6, b"id: 2\ndata: two\n\n"]), DONE)
    stream = client.connect("s", SSERequest(sse_server.url("/s")), route=config.connections[0].route())
    assert next(stream).id == "1"
    assert checkpoints(db) == {"s": ("1", 1)}
    pg.stop()
    try:
        with pytest.raises(PluginError) as caught, gevent.Timeout(TIMEOUT):
            next(stream)
        assert not isinstance(caught.value, TemporaryPluginError)
        message = str(caught.value)
        assert "tried 3 times (errors.retries = 2)" in message and 'errors.action = "stop"' in message, message
        assert "sseplug:<redacted>@127.0.0.1" in message and PASSWORD not in message
    finally:
        pg.start()
    with pg.connect() as session:
        assert checkpoints(session) == {"s": ("1", 1)} and len(rows(session)) == 1


def test_a_password_postgresql_refuses_stops_the_connection_at_once_saying_so_without_it(
    tmp_path: Path, pg: PostgresServer, sse_server: SSEServer, sink: PostgresSink,
    sse_client_for: Callable[..., SSEClient],
) -> None:
    wrong = pg.dsn.replace(PASSWORD, "wrong-" + PASSWORD[::-1])
    client = sse_client_for(make_config(tmp_path, f'dsn = "{wrong}"'))
    with pytest.raises(PluginError) as caught:
        drain(client, "c", sse_server.url("/feed/c?count=5&interval=0"))
    message = str(caught.value)
    assert "password authentication failed" in message and "sseplug:<redacted>@127.0.0.1" in message, message
    assert PASSWORD[::-1] not in message and sse_server.requests == []  # no stream opened without a checkpoint


class FakeConnection:
    """What the plugin uses of a ``Connection``: id, request, last_event_id, stopping, release()."""

    def __init__(self, connection_id: str) -> None:
        self.id = connection_id
        self.request = SSERequest("http://127.0.0.1:9/")
        self.last_event_id = ""
        self.stopping = False
        self.released = 0

    def release(self) -> None:
        self.released += 1


def event(event_id: str, data: Any) -> SSEResponse:
    return SSEResponse(id=event_id, event="tick", data=data, comment="", raw_response=f"id: {event_id}", retry=None)


def test_the_checkpoint_row_fences_a_second_writer_of_one_stream(
    tmp_path: Path, pg: PostgresServer, db: psycopg.Connection[Any],
) -> None:
    """Two processes on one stream (a takeover, or a commit whose outcome was lost): the one whose
    checkpoint is stale writes nothing and reloads."""
    config = make_config(tmp_path, f'dsn = "{pg.dsn}"', ids=("f",))
    stale, owner = PostgresSink(), PostgresSink()
    try:
        for plugin in (stale, owner):
            plugin.sseplug_configure(config)
        old, new = FakeConnection("f"), FakeConnection("f")
        assert stale.sseplug_checkpoint_load(connection=old) == "" == owner.sseplug_checkpoint_load(connection=new)
        owner.sseplug_handle_event(event=event("1", {"n": 1}), connection=new)
        owner.sseplug_checkpoint_save(connection=new, last_event_id="1")
        stale.sseplug_handle_event(event=event("9", "late"), connection=old)
        with pytest.raises(sseplug_postgres.PostgresError, match="another writer moved") as caught:
            stale.sseplug_checkpoint_save(connection=old, last_event_id="9")
        assert caught.value.retryable is True and old.released == 1 and new.released == 0
        assert [(r[1], r[2]) for r in rows(db)] == [(1, "1")] and checkpoints(db) == {"f": ("1", 1)}
        assert stale.sseplug_checkpoint_load(connection=old) == "1"  # reloaded: it goes on from the table
        stale.sseplug_handle_event(event=event("2", "two"), connection=old)
        stale.sseplug_checkpoint_save(connection=old, last_event_id="2")
        assert [(r[1], r[2]) for r in rows(db)] == [(1, "1"), (2, "2")]
    finally:
        stale.sseplug_unconfigure()
        owner.sseplug_unconfigure()


def test_create_false_and_a_missing_table_stops_the_connection_naming_it(
    tmp_path: Path, pg: PostgresServer, db: psycopg.Connection[Any], sse_server: SSEServer, sink: PostgresSink,
    sse_client_for: Callable[..., SSEClient],
) -> None:
    client = sse_client_for(make_config(tmp_path, f'dsn = "{pg.dsn}"\ncreate = false\ntable = "mine"'))
    with pytest.raises(PluginError, match="the events table 'mine' does not exist; create it"):
        drain(client, "c", sse_server.url("/feed/c?count=5&interval=0"))
    assert db.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)


# -- events PostgreSQL cannot store ------------------------------------------------------------------


@pytest.mark.parametrize("action", ["skip", "dead_letter", "stop"])
def test_an_event_postgres_cannot_store_is_that_events_failure_under_the_errors_policy(
    tmp_path: Path, pg: PostgresServer, db: psycopg.Connection[Any], sse_server: SSEServer, sink: PostgresSink,
    sse_client_for: Callable[..., SSEClient], action: str,
) -> None:
    body = [b"id: 1\ndata: fine\n\nid: 2\ndata: nul\x00here\n\nid: 3\ndata: {\"n\": 3}\n\n"]
    sse_server.script("/s", Response(body=body), DONE)
    table = f'dsn = "{pg.dsn}"\ndead_letter_table = "dead"'
    config = make_config(tmp_path, table, ids=("s",),
                         extra=f'errors = {{ retries = 1, backoff = 0.01, action = "{action}" }}')
    client = sse_client_for(config)
    if action == "stop":
        with pytest.raises(PluginError, match="NUL character"):
            drain(client, "s", sse_server.url("/s"), config)
        assert [r[2] for r in rows(db)] == ["1"] and checkpoints(db) == {"s": ("1", 1)}
        return
    drain(client, "s", sse_server.url("/s"), config)
    assert [(r[2], r[4], r[5]) for r in rows(db)] == [("1", None, "fine"), ("3", {"n": 3}, None)]
    assert checkpoints(db) == {"s": ("3", 2)}
    letters = db.execute("SELECT connection, id, plugin, attempts, error, raw FROM dead").fetchall()
    if action == "skip":
        assert letters == []
    else:
        ((connection, event_id, plugin, attempts, error, raw),) = letters
        assert (connection, event_id, plugin, attempts) == ("s", "2", "postgres", 2)
        assert "EventRefused" in error and bytes(raw) == b"id: 2\ndata: nul\x00here"


def test_a_row_the_table_refuses_is_singled_out_and_its_event_dead_lettered(
    tmp_path: Path, pg: PostgresServer, db: psycopg.Connection[Any], sse_server: SSEServer, sink: PostgresSink,
    sse_client_for: Callable[..., SSEClient], fast_retry: None,
) -> None:
    """A CHECK constraint of the user's ("data too large"): the batch fails, the row is found,
    the batch is read again, and the errors policy dead-letters that event alone."""
    config = make_config(tmp_path, f'dsn = "{pg.dsn}"\ndead_letter_table = "dead"', ids=("s",),
                         extra='errors = { retries = 0, action = "dead_letter" }')
    client = sse_client_for(config)
    sink.sseplug_checkpoint_load(connection=client.connect("s", SSERequest(sse_server.url("/none")),
                                                           iterate=False).connection)  # creates the tables
    client.close("s")
    db.execute("ALTER TABLE sseplug_events ADD CONSTRAINT small CHECK (octet_length(data_text) < 100)")
    big = b"x" * 300
    body = [b"id: 1\ndata: small\n\nid: 2\ndata: " + big + b"\n\nid: 3\ndata: small too\n\n"]
    sse_server.script("/s", Response(body=body), Response(body=body), DONE)
    drain(client, "s", sse_server.url("/s"), config)
    assert [(r[1], r[2], r[5]) for r in rows(db)] == [(1, "1", "small"), (2, "3", "small too")]
    ((event_id, error),) = db.execute("SELECT id, error FROM dead").fetchall()
    assert event_id == "2" and 'violates check constraint "small"' in error
    assert [r.headers.get("last-event-id") for r in sse_server.requests_for("/s")][:2] == [None, None]


# -- the gevent hub ----------------------------------------------------------------------------------


def test_a_slow_query_in_one_connection_does_not_stall_the_others(
    tmp_path: Path, pg: PostgresServer, db: psycopg.Connection[Any], sse_server: SSEServer, sink: PostgresSink,
    sse_client_for: Callable[..., SSEClient],
) -> None:
    """The write into ``ev_slow`` takes 2 s in PostgreSQL (a trigger); meanwhile ``fast`` streams 300
    events into its table, and the gevent hub never stalls."""
    db.execute("CREATE TABLE ev_slow (connection text NOT NULL, seq bigint NOT NULL, id text NOT NULL, "
               "event text NOT NULL, data jsonb, data_text text, received_at timestamptz NOT NULL)")
    db.execute("CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS "
               "$$ BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$")
    db.execute("CREATE TRIGGER slow AFTER INSERT ON ev_slow FOR EACH STATEMENT EXECUTE FUNCTION slow()")
    client = sse_client_for(make_config(tmp_path, f'dsn = "{pg.dsn}"\ntable = "ev_{{connection}}"',
                                        ids=("slow", "fast")))
    sse_server.script("/slow", Response(body=[b"id: 1\ndata: a\n\n"]), DONE)
    watch = HubWatch()
    try:
        slow = gevent.spawn(drain, client, "slow", sse_server.url("/slow"))
        wait_until(lambda: db.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
                                      ).fetchone() == (1,), TIMEOUT, lambda: "the slow write is not in its trigger")
        fast = drain(client, "fast", sse_server.url("/feed/fast?count=300&interval=0"))
        slow_pending = not slow.ready() and sink.rows_written.get("slow", 0) == 0
        slow.join(timeout=TIMEOUT)
    finally:
        watch.stop()
    assert len(fast) == 300 and sink.rows_written["fast"] == 300
    assert slow_pending, "the fast stream ended only after the slow one's query"
    assert slow.successful() and sink.rows_written["slow"] == 1
    assert watch.longest < MAX_HUB_STALL, watch.longest


# -- config ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "key", "text"),
    [
        ("table = 'x'", "dsn", "missing key 'dsn'"),
        ('dsn = "host=h password=hunter2x bogus"', "dsn", "not a PostgreSQL connection string"),
        ('dsn = "postgresql://u:hunter2x@h/db"\ntabel = "x"', "tabel", "did you mean 'table'"),
        ('dsn = "postgresql://u:hunter2x@h/db"\ntable = ""', "table", "expected a table name"),
        ('dsn = "postgresql://u:hunter2x@h/db"\ntable = "a.b.c{x}"', "table", "unknown placeholder {x}"),
        ('dsn = "postgresql://u:hunter2x@h/db"\ntable = "' + "t" * 64 + '"', "table", "1 to 63 bytes"),
        ('dsn = "postgresql://u:hunter2x@h/db"\nbatch_max = 0', "batch_max", "integer from 1"),
        ('dsn = "postgresql://u:hunter2x@h/db"\ncreate = "yes"', "create", "true or false"),
        ('dsn = "postgresql://u:hunter2x@h/db"\ncheckpoint_table = "cp_{connection}"', "checkpoint_table",
         "remove {connection}"),
        ('dsn = "postgresql://u:hunter2x@h/db"\ndead_letter_table = "sseplug_events"', "dead_letter_table",
         "also the table"),
        ('dsn = "postgresql://u:hunter2x@h/db"\npool_size = 0', "pool_size", "integer from 1"),
        ('dsn = "postgresql://u:hunter2x@h/db"\nconnect_timeout = -1', "connect_timeout", "seconds > 0"),
        ("dsn = 5", "dsn", "expected a string, got 5 (integer)"),
    ],
    ids=["no-dsn", "bad-dsn", "unknown-key", "empty-table", "bad-placeholder", "long-table", "zero-batch",
         "text-create", "checkpoint-template", "same-table", "zero-pool", "negative-timeout", "int-dsn"],
)
def test_config_errors_name_the_key_and_never_show_the_password(tmp_path: Path, table: str, key: str, text: str) -> None:
    plugin = PostgresSink()
    error = sink_kit.configure_error(plugin, make_config(tmp_path, table))
    message = str(error)
    assert error.key == f"plugins.postgres.{key}" and text in message, message
    assert str(tmp_path / "run.toml") in message and "hunter2x" not in message
    assert plugin.settings is None


def test_a_dry_run_validates_without_connecting_and_the_plugin_is_inert_without_its_table(tmp_path: Path) -> None:
    plugin = PostgresSink()
    config = make_config(tmp_path, 'dsn = "postgresql://u:hunter2x@127.0.0.1:1/db"\ndead_letter_table = "d"')
    plugin.sseplug_configure(dataclasses.replace(config, dry_run=True))
    assert plugin.settings is None and plugin._store is None and not plugin.sseplug_sink
    plugin.sseplug_configure(make_config(tmp_path, None))
    assert plugin.settings is None
    plugin.sseplug_configure(None)
    assert plugin.settings is None
    # sseplug check itself: tests/plugins/test_sink_plugins_listed.py


def test_entry_point_and_settings_documented() -> None:
    from importlib.metadata import entry_points

    (ep,) = [ep for ep in entry_points(group="sseplug") if ep.name == "postgres"]
    assert ep.load() is sseplug_postgres.plugin and set(sseplug_postgres.SETTINGS) == set(sseplug_postgres.KEYS)
    docs = (Path(__file__).resolve().parents[2] / "docs" / "postgres.rst").read_text()
    assert all(f"{key} =" in docs for key in sseplug_postgres.KEYS)
    assert json.dumps(sseplug_postgres.SETTINGS)  # plain text, for the config reference
