"""The SQL side: sessions shared by the streams, the tables, and one batch's transaction."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gevent.lock
import psycopg
from psycopg import sql

from .rows import Row, copy_rows
from .settings import PostgresSettings

__all__ = ["Moved", "PostgresError", "Store", "refused", "select_patched", "transient"]

_TRANSIENT = ("08", "53", "57P", "40001", "40P01", "55P03")  # connection, resources, shutdown, conflicts
_BUSY = ("starting up", "shutting down", "too many", "recovery mode", "not yet accepting", "terminating")
_REFUSED_ROW = ("22", "23")  # data exception, integrity constraint violation
_COPY = "COPY {} (connection, seq, id, event, data, data_text, received_at) FROM STDIN"
_SCHEMAS = {
    "events": "CREATE TABLE IF NOT EXISTS {} (connection text NOT NULL, seq bigint NOT NULL, id text NOT NULL, "
              "event text NOT NULL, data jsonb, data_text text, received_at timestamptz NOT NULL, "
              "PRIMARY KEY (connection, seq))",
    "checkpoints": "CREATE TABLE IF NOT EXISTS {} (connection text PRIMARY KEY, last_event_id text NOT NULL, "
                   "seq bigint NOT NULL, saved_at timestamptz NOT NULL DEFAULT now())",
    "dead letters": "CREATE TABLE IF NOT EXISTS {} (connection text NOT NULL, id text NOT NULL, event text NOT NULL, "
                    "plugin text NOT NULL, attempts integer NOT NULL, error text NOT NULL, raw bytea NOT NULL, "
                    "failed_at timestamptz NOT NULL DEFAULT now())",
}


class PostgresError(Exception):
    """A batch could not be written. ``retryable``: the connection goes on from the table's
    checkpoint (PostgreSQL away, a refused row to single out); else the connection stops."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Moved(Exception):
    """The checkpoint row was not where this process left it: another writer moved it."""


class Store:
    """At most ``pool_size`` autocommit sessions, shared by the connections' greenlets, and the
    statements of the plugin."""

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self._idle: list[psycopg.Connection[Any]] = []
        self._slots = gevent.lock.BoundedSemaphore(settings.pool_size)
        self._ready: set[str] = set()  # tables created or found
        self._creating = gevent.lock.RLock()

    @contextmanager
    def session(self) -> Iterator[psycopg.Connection[Any]]:
        """An idle session, or a new one; kept for reuse unless it broke or was left in a transaction."""
        with self._slots:
            db = self._idle.pop() if self._idle else psycopg.connect(
                str.__str__(self.settings.dsn), autocommit=True, application_name="sseplug",
                connect_timeout=max(1, round(self.settings.connect_timeout)))
            try:
                yield db
            finally:
                if db.closed or db.broken or db.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    db.close()
                else:
                    self._idle.append(db)

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for db in idle:
            db.close()

    def prepare(self, db: psycopg.Connection[Any], cid: str, *, checkpoints: bool = True) -> None:
        """Create (``create = true``) or find the tables of connection ``cid``, once each."""
        settings = self.settings
        wanted = [("events", settings.table), ("checkpoints", settings.checkpoint_table)] if checkpoints else []
        if settings.dead_letter_table is not None:
            wanted.append(("dead letters", settings.dead_letter_table))
        for kind, template in wanted:
            name = template.format(connection=cid)
            if name in self._ready:
                continue
            with self._creating:  # concurrent CREATE TABLE IF NOT EXISTS of one name can collide
                if name in self._ready:
                    continue
                if settings.create:
                    db.execute(sql.SQL(_SCHEMAS[kind]).format(table_name(template, cid)))
                elif db.execute("SELECT to_regclass(%s)", (table_name(template, cid).as_string(db),)).fetchone() == (
                        None,):
                    raise PostgresError(f"the {kind} table {name!r} does not exist; create it (the schema is in the "
                                        "plugin's documentation) or set create = true", retryable=False)
                self._ready.add(name)

    def load(self, cid: str, start: str) -> tuple[str, int]:
        """The ``(last_event_id, seq)`` of connection ``cid``, its row made from ``start`` if missing."""
        with self.session() as db:
            self.prepare(db, cid)
            table = table_name(self.settings.checkpoint_table)
            db.execute(sql.SQL("INSERT INTO {} (connection, last_event_id, seq) VALUES (%s, %s, 0) "
                               "ON CONFLICT (connection) DO NOTHING").format(table), (cid, start))
            row = db.execute(sql.SQL("SELECT last_event_id, seq FROM {} WHERE connection = %s").format(table),
                             (cid,)).fetchone()
        assert row is not None
        return str(row[0]), int(row[1])

    def commit(self, cid: str, committed: tuple[str, int], rows: list[Row], letters: list[tuple[Any, ...]],
               checkpoint: str) -> tuple[str, int]:
        """One transaction: the checkpoint row moved from ``committed`` to ``checkpoint`` (``Moved``
        if it was not there), the rows, the dead letters. Returns the new ``(last_event_id, seq)``."""
        settings, (loaded_id, seq) = self.settings, committed
        with self.session() as db:
            self.prepare(db, cid)
            with db.transaction(), db.cursor() as cur:
                # The fence first: after a commit whose outcome was lost with the session (it may
                # have committed), the retry finds the checkpoint moved and reloads it, instead of
                # meeting its own rows' keys
                cur.execute(sql.SQL("UPDATE {} SET last_event_id = %s, seq = %s, saved_at = now() "
                                    "WHERE connection = %s AND last_event_id = %s AND seq = %s").format(
                    table_name(settings.checkpoint_table)), (checkpoint, seq + len(rows), cid, loaded_id, seq))
                if cur.rowcount != 1:
                    raise Moved()
                if rows:
                    with cur.copy(sql.SQL(_COPY).format(table_name(settings.table, cid))) as copy:
                        copy.write(copy_rows(cid, seq, rows))
                if letters:
                    assert settings.dead_letter_table is not None
                    cur.executemany(self._letter_statement(cid), letters)
        return checkpoint, seq + len(rows)

    def single_out(self, cid: str, seq: int, rows: list[Row]) -> list[tuple[Row, psycopg.Error]]:
        """The rows PostgreSQL refuses, each tried alone (everything rolled back), with why."""
        statement = sql.SQL(_COPY).format(table_name(self.settings.table, cid))
        found = []
        with self.session() as db, db.transaction(force_rollback=True), db.cursor() as cur:
            for index, row in enumerate(rows):
                try:
                    with db.transaction(), cur.copy(statement) as copy:
                        copy.write(copy_rows(cid, seq + index, [row]))
                except psycopg.Error as error:
                    if not refused(error):
                        raise
                    found.append((row, error))
        return found

    def insert_letter(self, cid: str, letter: tuple[Any, ...]) -> None:
        """One dead letter, in its own transaction."""
        with self.session() as db:
            self.prepare(db, cid, checkpoints=False)
            db.execute(self._letter_statement(cid), letter)

    def _letter_statement(self, cid: str) -> sql.Composed:
        assert self.settings.dead_letter_table is not None
        return sql.SQL("INSERT INTO {} (connection, id, event, plugin, attempts, error, raw) "
                       "VALUES (%s, %s, %s, %s, %s, %s, %s)").format(table_name(self.settings.dead_letter_table, cid))


def table_name(template: str, cid: str = "") -> sql.Identifier:
    """The quoted (``schema.``)``table`` of ``template`` for connection ``cid``."""
    return sql.Identifier(*(part.format(connection=cid) for part in template.split(".", 1)))


def transient(error: BaseException) -> bool:
    """Whether ``error`` is PostgreSQL away, restarting or busy (worth trying again)."""
    state = getattr(error, "sqlstate", None)
    if state is not None:
        return str(state).startswith(_TRANSIENT)
    if not isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        return False
    # A failed connect has no SQLSTATE: a server that answered FATAL refused us for good (a
    # password, a database), unless it said it is starting, stopping or full.
    text = str(error)
    return "FATAL:" not in text or any(reason in text for reason in _BUSY)


def refused(error: BaseException) -> bool:
    """Whether ``error`` is PostgreSQL refusing a value (a type, a constraint)."""
    state = getattr(error, "sqlstate", None)
    return state is not None and str(state).startswith(_REFUSED_ROW)


def select_patched() -> bool:
    """Whether gevent patched ``select`` (psycopg then waits cooperatively, if imported after)."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched("select"))
