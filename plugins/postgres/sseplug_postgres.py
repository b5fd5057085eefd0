"""sseplug plugin ``postgres``: every event a row of a PostgreSQL table, exactly once.

Theory of operation
-------------------
``sseplug_handle_event`` only checks and buffers: it turns the event into the text of one COPY
row (refusing at once, as that event's failure, what PostgreSQL cannot store: a NUL character,
a lone surrogate, a NaN, a value over the type's size limit). ``sseplug_checkpoint_save`` then
writes the connection's buffered rows with one ``COPY`` and moves that connection's row of the
checkpoint table, in one transaction. The checkpoint lives in PostgreSQL
(``sseplug_checkpoint_load`` reads it), so the table and the checkpoint can never disagree: a
crash before the commit loses the rows and the checkpoint together (the stream resumes before
them), a crash after it keeps both (the stream resumes after them). Rows get ``seq``, a
per-connection sequence number kept in the checkpoint row, without gaps.

The checkpoint row is also a fence: its update names the ``(last_event_id, seq)`` this process
loaded or wrote last. Another writer that moved it (a second runner on the same stream) makes the
update find no row; the transaction is rolled back and the stream reloads its checkpoint.

Failures. A transaction that fails because PostgreSQL is away or restarting is tried again in
place, ``errors.retries`` times ``errors.backoff`` seconds apart (doubling), the connection's
error policy; then ``action = "stop"`` stops the connection, any other action lets the response
go and waits for PostgreSQL (``sseplug_checkpoint_load`` waits, backing off up to
``MAX_WAIT``), to resume where the table stops. A row PostgreSQL refuses (a constraint, a type)
fails the transaction; the rows are then tried one by one, each refused event is remembered, and
the batch is read again: ``sseplug_handle_event`` raises for the remembered events, so the
connection's error policy (retry, skip, dead letter, stop) decides for each of them.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gevent
import gevent.lock
import psycopg
import psycopg.conninfo
import psycopg.waiting
from psycopg import sql

from sseplug.errors import ConfigError
from sseplug.hookspecs import hookimpl
from sseplug.redaction import REDACTED, hide_credentials
from sseplug.route import ErrorPolicy

if TYPE_CHECKING:
    from sseplug.connection import Connection
    from sseplug.models import SSEResponse
    from sseplug.run.config import Config, TableReader

__all__ = ["NAME", "SETTINGS", "EventRefused", "PostgresError", "PostgresSettings", "PostgresSink", "plugin"]

__version__ = "0.1.0"

NAME = "postgres"
"""The plugin's name: entry point, ``[plugins.postgres]`` table, ``runner.plugins.disable`` entry."""

SETTINGS: dict[str, str] = {
    "dsn": "Required. A libpq URI or key=value string; ${VAR} allowed; its password is shown nowhere.",
    "table": 'The events table (default "sseplug_events"); may be "schema.table" and name {connection}.',
    "create": "Create the tables that are missing (default true); false: they must exist.",
    "batch_max": "Events per transaction at most (default 1000); a larger batch commits in several.",
    "checkpoint_table": 'The checkpoint table, one row per connection (default "sseplug_checkpoints").',
    "dead_letter_table": "Optional: store the runner's dead letters in this table (may name {connection}).",
    "pool_size": "PostgreSQL sessions at most, shared by the connections (default 10).",
    "connect_timeout": "Seconds to open a session before it counts as PostgreSQL being away (default 5).",
}
"""Every key of ``[plugins.postgres]`` and its meaning (the docs' config reference lists them)."""

KEYS = tuple(SETTINGS)
DEFAULT_TABLE = "sseplug_events"
DEFAULT_CHECKPOINT_TABLE = "sseplug_checkpoints"
DEFAULT_BATCH_MAX = 1000
DEFAULT_POOL_SIZE = 10
DEFAULT_CONNECT_TIMEOUT = 5.0
MAX_WAIT = 10.0
"""Seconds between two tries at most while PostgreSQL is away before a stream resumes."""
REMEMBERED = 10_000
"""Refused events remembered at most (the oldest are forgotten first)."""
MAX_JSONB = (1 << 28) - 1  # PostgreSQL's limit for one jsonb value, in bytes
MAX_TEXT = (1 << 30) - 1  # and for one text value
_IDENTIFIER_BYTES = 63  # longer names are cut by PostgreSQL: two connections could share a table
_TRANSIENT = ("08", "53", "57P", "40001", "40P01", "55P03")  # connection, resources, shutdown, conflicts
_BUSY = ("starting up", "shutting down", "too many", "recovery mode", "not yet accepting", "terminating")
_REFUSED_ROW = ("22", "23")  # data exception, integrity constraint violation
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

log = logging.getLogger("sseplug.postgres")

_Row = tuple[str, str, str]  # (event id, COPY text from the id column on, the raw block)


class EventRefused(Exception):
    """PostgreSQL cannot store this event (or refused its row): the event's failure, which the
    connection's error policy handles (retry, skip, dead letter or stop)."""

    retryable = False


class PostgresError(Exception):
    """A batch could not be written. ``retryable``: the connection goes on from the table's
    checkpoint (PostgreSQL away, a refused row to single out); else the connection stops."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    """A validated ``[plugins.postgres]`` table; its repr hides the password of ``dsn``."""

    dsn: str = field(repr=False)
    table: str = DEFAULT_TABLE
    create: bool = True
    batch_max: int = DEFAULT_BATCH_MAX
    checkpoint_table: str = DEFAULT_CHECKPOINT_TABLE
    dead_letter_table: str | None = None
    pool_size: int = DEFAULT_POOL_SIZE
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    @property
    def shown_dsn(self) -> str:
        """``dsn`` fit for a log line: its password replaced by ``<redacted>``."""
        return hide_credentials(str.__str__(self.dsn))


@dataclass(slots=True)
class _Batch:
    """A connection's rows (event id, COPY text from the ``id`` column on, raw block) and dead
    letters, buffered until its checkpoint."""

    rows: list[_Row] = field(default_factory=list)
    letters: list[tuple[Any, ...]] = field(default_factory=list)


class _Pool:
    """At most ``size`` autocommit sessions, shared by the connections' greenlets."""

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self._idle: list[psycopg.Connection[Any]] = []
        self._slots = gevent.lock.BoundedSemaphore(settings.pool_size)

    @contextmanager
    def session(self) -> Iterator[psycopg.Connection[Any]]:
        with self._slots:
            db = self._idle.pop() if self._idle else psycopg.connect(
                str.__str__(self.settings.dsn), autocommit=True, connect_timeout=max(1, round(self.settings.connect_timeout)),
                application_name="sseplug")
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


class PostgresSink:
    """The sink: one instance per plugin manager; inert until configured with a ``[plugins.postgres]`` table."""

    def __init__(self) -> None:
        self.settings: PostgresSettings | None = None  # None: inert
        self.rows_written: dict[str, int] = {}  # per connection id, since configure
        self._pool: _Pool | None = None
        self._sinks: dict[str, tuple[str, ...] | None] = {}  # the config's routes, by connection id
        self._policies: dict[str, ErrorPolicy] = {}
        self._pending: dict[str, _Batch] = {}
        self._committed: dict[str, tuple[str, int]] = {}  # connection id -> (last_event_id, seq) in the table
        self._refused: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        self._tables_ready: set[str] = set()
        self._creating = gevent.lock.RLock()
        self._down = False
        self._stamp = (0, "")  # (second, its text): received_at is formatted once a second

    def __repr__(self) -> str:
        if self.settings is None:
            return "<PostgresSink inactive>"
        return f"<PostgresSink {self.settings.table!r} at {self.settings.shown_dsn}>"

    @property
    def sseplug_sink(self) -> bool:
        """An event sink (the runner then drops its stdout sink) once configured."""
        return self.settings is not None

    # -- configure -------------------------------------------------------------------------------

    @hookimpl
    def sseplug_configure(self, config: Config | None) -> None:
        """Validate ``[plugins.postgres]``; connect nowhere yet (a stream's first checkpoint load
        does). Inert without config or table; under ``sseplug check`` validate only."""
        self.sseplug_unconfigure()
        if config is None or NAME not in config.plugins:
            return
        settings = _settings(config)
        if getattr(config, "dry_run", False):
            return
        self.settings, self._pool = settings, _Pool(settings)
        self._sinks = {c.id: c.sinks for c in config.connections}
        self._policies = {c.id: c.errors for c in config.connections}
        if psycopg.waiting.wait is getattr(psycopg.waiting, "wait_c", None) and _select_patched():
            log.warning("postgres: psycopg was imported before gevent's patches: its waits block every stream")

    @hookimpl
    def sseplug_unconfigure(self) -> None:
        """Close the sessions and forget every stream; inert until configured again."""
        if self._pool is not None:
            self._pool.close()
        self.settings = self._pool = None
        for state in (self._sinks, self._policies, self._pending, self._committed, self._refused, self.rows_written):
            state.clear()
        self._tables_ready.clear()
        self._down = False

    def _routed(self, connection: Connection) -> bool:
        """Whether ``connection``'s events come here (its ``sinks`` name us, or it names none)."""
        if self.settings is None:
            return False
        sinks = self._sinks[connection.id] if connection.id in self._sinks else \
            getattr(getattr(connection, "route", None), "sinks", None)  # a connection a reload added
        return sinks is None or NAME in sinks

    def _policy(self, connection: Connection) -> ErrorPolicy:
        policy = self._policies.get(connection.id) or getattr(getattr(connection, "route", None), "errors", None)
        return policy if isinstance(policy, ErrorPolicy) else ErrorPolicy()

    # -- checkpoints -----------------------------------------------------------------------------

    @hookimpl
    def sseplug_checkpoint_load(self, connection: Connection) -> str | None:
        """The last event id the table holds for a routed connection (creating its tables and
        checkpoint row first); waits while PostgreSQL is away. Other connections: no answer."""
        if not self._routed(connection):
            return None
        cid = connection.id
        self._pending.pop(cid, None)
        self._committed.pop(cid, None)
        start = connection.request.last_event_id or ""
        wait = 0.5
        while True:
            try:
                with self._session() as db:
                    self._prepare(db, cid)
                    table = _name(self._settings().checkpoint_table)
                    db.execute(sql.SQL("INSERT INTO {} (connection, last_event_id, seq) VALUES (%s, %s, 0) "
                                       "ON CONFLICT (connection) DO NOTHING").format(table), (cid, start))
                    row = db.execute(sql.SQL("SELECT last_event_id, seq FROM {} WHERE connection = %s").format(table),
                                     (cid,)).fetchone()
                break
            except psycopg.Error as error:
                if not _transient(error):
                    raise PostgresError(self._said(error, "loading the checkpoint"), retryable=False) from None
                self._away(error)
                if connection.stopping or self.settings is None:
                    raise PostgresError(self._said(error, "loading the checkpoint"), retryable=True) from None
                gevent.sleep(wait)
                wait = min(wait * 2, MAX_WAIT)
        self._back()
        assert row is not None
        self._committed[cid] = (str(row[0]), int(row[1]))
        return str(row[0])

    @hookimpl
    def sseplug_checkpoint_save(self, connection: Connection, last_event_id: str) -> None:
        """Write the batch's rows, its dead letters and the checkpoint in one transaction
        (``batch_max`` rows per transaction at most)."""
        if not self._routed(connection):
            return
        cid = connection.id
        batch = self._pending.pop(cid, None) or _Batch()
        committed = self._committed.get(cid)
        if committed is None:
            connection.release()  # never loaded (or a load was cut short): load it before writing
            raise PostgresError("the checkpoint of this stream is not loaded; reloading it", retryable=True)
        if not batch.rows and not batch.letters and committed[0] == last_event_id:
            return
        rows = batch.rows
        cut = _last_index(rows, last_event_id)
        if cut is not None:  # rows after the checkpointed event were not checkpointed: they come again
            rows = rows[: cut + 1]
        size = self._settings().batch_max
        chunks = [rows[start:start + size] for start in range(0, len(rows), size)] or [[]]
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            self._write(connection, chunk, batch.letters if index == 0 else [],
                        last_event_id if last else chunk[-1][0])

    def _write(self, connection: Connection, rows: list[_Row], letters: list[tuple[Any, ...]],
               checkpoint: str) -> None:
        """One transaction, tried again by the connection's error policy while PostgreSQL is away."""
        policy, attempt, said = self._policy(connection), 0, ""
        while True:
            try:
                self._commit(connection.id, rows, letters, checkpoint)
                self._back()
                return
            except _Moved:
                connection.release()
                raise PostgresError("another writer moved this stream's checkpoint in PostgreSQL; "
                                    "reloading it (two runners on one stream?)", retryable=True) from None
            except psycopg.Error as error:
                if _refused(error):
                    raise self._single_out(connection.id, rows, error) from None
                if not _transient(error):
                    raise PostgresError(self._said(error, "writing a batch"), retryable=False) from None
                self._away(error)
                attempt, said = attempt + 1, self._said(error, "writing a batch")
                if attempt > policy.retries:
                    break
                log.warning("postgres: writing %d rows of %r failed (attempt %d of %d), again in %.2fs: %s",
                            len(rows), connection.id, attempt, policy.retries + 1, policy.delay(attempt),
                            self._said(error))
                gevent.sleep(policy.delay(attempt))
        failed = f"{said}; tried {attempt} times (errors.retries = {policy.retries})"
        if policy.action == "stop":
            raise PostgresError(f"{failed}; stopping (errors.action = \"stop\"), nothing after the table's "
                                "checkpoint was saved", retryable=False) from None
        connection.release()  # resume from the table once PostgreSQL answers (the load waits for it)
        raise PostgresError(f"{failed}; waiting for PostgreSQL, then resuming where the table stops",
                            retryable=True) from None

    def _commit(self, cid: str, rows: list[_Row], letters: list[tuple[Any, ...]], checkpoint: str) -> None:
        settings = self._settings()
        loaded_id, seq = self._committed[cid]
        with self._session() as db:
            self._prepare(db, cid)
            with db.transaction(), db.cursor() as cur:
                # The fence first: after a commit whose outcome was lost with the session (it may
                # have committed), the retry finds the checkpoint moved and reloads it, instead of
                # meeting its own rows' keys
                cur.execute(sql.SQL("UPDATE {} SET last_event_id = %s, seq = %s, saved_at = now() "
                                    "WHERE connection = %s AND last_event_id = %s AND seq = %s").format(
                    _name(settings.checkpoint_table)), (checkpoint, seq + len(rows), cid, loaded_id, seq))
                if cur.rowcount != 1:
                    raise _Moved()
                if rows:
                    with cur.copy(sql.SQL("COPY {} (connection, seq, id, event, data, data_text, received_at) "
                                          "FROM STDIN").format(_name(settings.table, cid))) as copy:
                        copy.write(_copy_rows(cid, seq, rows))
                if letters:
                    assert settings.dead_letter_table is not None
                    cur.executemany(sql.SQL("INSERT INTO {} (connection, id, event, plugin, attempts, error, raw) "
                                            "VALUES (%s, %s, %s, %s, %s, %s, %s)").format(
                        _name(settings.dead_letter_table, cid)), letters)
        self._committed[cid] = (checkpoint, seq + len(rows))
        self.rows_written[cid] = self.rows_written.get(cid, 0) + len(rows)

    def _single_out(self, cid: str, rows: list[_Row], error: psycopg.Error) -> PostgresError:
        """The rows refused: each tried alone (rolled back), each refused event remembered; the
        error that has the batch read again so the error policy handles them."""
        settings, found = self._settings(), 0
        loaded_id, seq = self._committed[cid]
        statement = sql.SQL("COPY {} (connection, seq, id, event, data, data_text, received_at) FROM STDIN").format(
            _name(settings.table, cid))
        try:
            with self._session() as db, db.transaction(force_rollback=True), db.cursor() as cur:
                for index, row in enumerate(rows):
                    try:
                        with db.transaction(), cur.copy(statement) as copy:
                            copy.write(_copy_rows(cid, seq + index, [row]))
                    except psycopg.Error as refused:
                        if not _refused(refused):
                            raise
                        self._remember(cid, row, self._said(refused))
                        found += 1
        except psycopg.Error as other:
            return PostgresError(self._said(other, "singling out a refused row"), retryable=True)
        if not found:  # only the batch as a whole was refused (a deferred constraint, say)
            return PostgresError(self._said(error, "writing a batch") + "; no row is refused alone", retryable=False)
        return PostgresError(f"PostgreSQL refused {found} row(s) of this batch ({self._said(error)}); reading the "
                             "batch again so that the errors policy handles those events", retryable=True)

    # -- events and dead letters -----------------------------------------------------------------

    # trylast: the row is buffered only once every other handler took the event, so one that
    # raises (and stops the connection) leaves it out of the batch committed before the stop
    @hookimpl(trylast=True)
    def sseplug_handle_event(self, event: SSEResponse, connection: Connection) -> None:
        """Buffer the event's row; an event PostgreSQL cannot store raises ``EventRefused``."""
        if self.settings is None:
            return
        cid = connection.id
        if self._refused:
            said = self._refused.get((cid, event.id, event.raw_response))
            if said is not None:
                raise EventRefused(f"PostgreSQL refused the row of event id {event.id!r}: {said}")
        batch = self._pending.get(cid)
        if batch is None:
            batch = self._pending[cid] = _Batch()
        batch.rows.append((event.id, self._row(event), event.raw_response))

    @hookimpl
    def sseplug_dead_letter(
        self, event: SSEResponse, connection: Connection, plugin: str, error: BaseException, attempts: int
    ) -> bool | None:
        """With ``dead_letter_table``: store the dead letter, in the transaction of the batch's
        checkpoint for a routed connection (exactly once), else at once. Without it, no answer."""
        settings = self.settings
        if settings is None or settings.dead_letter_table is None:
            return None
        row = (connection.id, _storable(event.id), _storable(event.event), plugin, attempts,
               _storable(f"{type(error).__name__}: {error}"), event.raw_response.encode("utf-8", "surrogatepass"))
        if self._routed(connection):
            batch = self._pending.get(connection.id)
            if batch is None:
                batch = self._pending[connection.id] = _Batch()
            batch.letters.append(row)
            return True
        with self._session() as db:
            self._prepare(db, connection.id, checkpoints=False)
            db.execute(sql.SQL("INSERT INTO {} (connection, id, event, plugin, attempts, error, raw) "
                               "VALUES (%s, %s, %s, %s, %s, %s, %s)").format(
                _name(settings.dead_letter_table, connection.id)), row)
        return True

    @hookimpl
    def sseplug_connection_closed(self, connection: Connection) -> None:
        """Forget the unsaved batch; if the table is ahead of the connection (part of a batch
        committed before a failure), the stream reloads its checkpoint from the table."""
        if not self._routed(connection):
            return
        self._pending.pop(connection.id, None)
        committed = self._committed.get(connection.id)
        if committed is not None and committed[0] != connection.last_event_id:
            connection.release()

    @hookimpl
    def sseplug_connection_finished(self, connection: Connection) -> None:
        """The stream ended for good: forget its state here."""
        self._pending.pop(connection.id, None)
        self._committed.pop(connection.id, None)

    # -- helpers ---------------------------------------------------------------------------------

    def _settings(self) -> PostgresSettings:
        if self.settings is None:
            raise RuntimeError("the postgres plugin is not configured")
        return self.settings

    @contextmanager
    def _session(self) -> Iterator[psycopg.Connection[Any]]:
        if self._pool is None:
            raise RuntimeError("the postgres plugin is not configured")
        with self._pool.session() as db:
            yield db

    def _prepare(self, db: psycopg.Connection[Any], cid: str, *, checkpoints: bool = True) -> None:
        """Create (``create = true``) or find the tables of connection ``cid``, once each."""
        settings = self._settings()
        wanted = [("events", settings.table), ("checkpoints", settings.checkpoint_table)] if checkpoints else []
        if settings.dead_letter_table is not None:
            wanted.append(("dead letters", settings.dead_letter_table))
        for kind, template in wanted:
            name = template.format(connection=cid)
            if name in self._tables_ready:
                continue
            with self._creating:  # concurrent CREATE TABLE IF NOT EXISTS of one name can collide
                if name in self._tables_ready:
                    continue
                if settings.create:
                    db.execute(sql.SQL(_SCHEMAS[kind]).format(_name(template, cid)))
                elif db.execute("SELECT to_regclass(%s)", (_name(template, cid).as_string(db),)).fetchone() == (None,):
                    raise PostgresError(f"the {kind} table {name!r} does not exist; create it (the schema is in the "
                                        "plugin's documentation) or set create = true", retryable=False)
                self._tables_ready.add(name)

    def _row(self, event: SSEResponse) -> str:
        """The COPY text of the event's columns from ``id`` to ``received_at`` (tab-separated, ended)."""
        data = event.data
        if type(data) is str:
            value, text = r"\N", _text(data, "the data", MAX_TEXT, event)
        else:
            try:
                encoded = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str)
            except ValueError:
                raise EventRefused(f"event id {event.id!r}: its data holds NaN or Infinity (or refers to "
                                   "itself), which jsonb cannot store") from None
            if "\\u0000" in encoded:
                raise EventRefused(f"event id {event.id!r}: its data holds a NUL character (\\u0000), which jsonb "
                                   "cannot store")
            value, text = _text(encoded, "the data", MAX_JSONB, event), r"\N"
        now = time.time()
        second = int(now)
        if self._stamp[0] != second:
            self._stamp = (second, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second)))
        stamp = f"{self._stamp[1]}.{int((now - second) * 1e6):06d}+00"
        return (f"{_text(event.id, 'the id', MAX_TEXT, event)}\t{_text(event.event, 'the event type', MAX_TEXT, event)}"
                f"\t{value}\t{text}\t{stamp}\n")

    def _remember(self, cid: str, row: _Row, said: str) -> None:
        """Remember a refused row by its event (id and raw block: found again when read again)."""
        self._refused[(cid, row[0], row[2])] = said
        while len(self._refused) > REMEMBERED:
            self._refused.popitem(last=False)

    def _said(self, error: BaseException, doing: str = "") -> str:
        """What PostgreSQL said, on one line, without the DSN's password."""
        diag = getattr(error, "diag", None)  # PostgreSQL's own words, without the DETAIL holding row values
        first = " ".join(((diag.message_primary if diag is not None else None) or str(error)).split())
        where = f" at {self.settings.shown_dsn}" if self.settings is not None else ""
        text = f"{doing}{where} failed: {type(error).__name__}: {first}" if doing else f"{type(error).__name__}: {first}"
        return _scrub(text, self.settings.dsn if self.settings is not None else "")

    def _away(self, error: BaseException) -> None:
        if not self._down:
            self._down = True
            log.error("postgres: PostgreSQL does not answer (%s); streams routed here wait and retry",
                      self._said(error))

    def _back(self) -> None:
        if self._down:
            self._down = False
            log.info("postgres: PostgreSQL at %s answers again", self._settings().shown_dsn)


plugin = PostgresSink()
"""The instance the ``postgres`` entry point registers (``sseplug_postgres:plugin``)."""


class _Moved(Exception):
    """The checkpoint row was not where this process left it."""


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


def _copy_rows(cid: str, seq: int, rows: list[_Row]) -> bytes:
    """COPY text rows of connection ``cid``, numbered from ``seq + 1``."""
    head = cid.translate(_COPY_ESCAPES)
    return "".join(f"{head}\t{seq + number}\t{row[1]}" for number, row in enumerate(rows, 1)).encode(
        "utf-8", "surrogatepass")


def _last_index(rows: list[_Row], event_id: str) -> int | None:
    """The index of the last row of event ``event_id``, or ``None``."""
    for index in range(len(rows) - 1, -1, -1):
        if rows[index][0] == event_id:
            return index
    return None


def _text(value: str, what: str, limit: int, event: SSEResponse) -> str:
    """``value`` escaped for COPY text; what PostgreSQL cannot store raises ``EventRefused``."""
    if "\x00" in value:
        raise EventRefused(f"event id {event.id!r}: {what} holds a NUL character, which PostgreSQL text cannot store")
    if not value.isascii():
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise EventRefused(f"event id {event.id!r}: {what} holds a lone surrogate, which UTF-8 cannot "
                               "encode") from None
        if size > limit:
            raise EventRefused(f"event id {event.id!r}: {what} is {size} bytes, over PostgreSQL's limit of {limit}")
    elif len(value) > limit:
        raise EventRefused(f"event id {event.id!r}: {what} is {len(value)} bytes, over PostgreSQL's limit of {limit}")
    return value.translate(_COPY_ESCAPES) if _needs_escape(value) else value


def _needs_escape(value: str) -> bool:
    return "\\" in value or "\t" in value or "\n" in value or "\r" in value


def _storable(text: str) -> str:
    """``text`` as a text column can hold it: NUL and lone surrogates as U+FFFD (dead letters
    keep the exact block in ``raw``)."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _transient(error: BaseException) -> bool:
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


def _refused(error: BaseException) -> bool:
    """Whether ``error`` is PostgreSQL refusing a value (a type, a constraint)."""
    state = getattr(error, "sqlstate", None)
    return state is not None and state.startswith(_REFUSED_ROW)


def _name(template: str, cid: str = "") -> sql.Composable:
    """The quoted (``schema.``)``table`` of ``template`` for connection ``cid``."""
    return sql.Identifier(*(part.format(connection=cid) for part in template.split(".", 1)))


def _select_patched() -> bool:
    import sys

    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched("select"))


_URI_PASSWORD = re.compile(r"://[^:/?#@\s]*:(?P<secret>[^\s]*?)@[^@\s/?#]*(?:[/?#\s]|$)")
_KV_PASSWORD = re.compile(r"(?i)password\s*=\s*(?P<secret>'(?:[^'\\]|\\.)*'|[^\s&]+)")


def _scrub(text: str, dsn: str) -> str:
    """``text`` (an error message) without the password of ``dsn``, in any form it was written."""
    text = hide_credentials(text)
    secrets = {match["secret"] for pattern in (_URI_PASSWORD, _KV_PASSWORD) for match in pattern.finditer(dsn)}
    for secret in sorted(secrets, key=len, reverse=True):
        for form in {secret, secret.strip("'"), *secret.strip("'").split()}:
            if len(form) >= 3:
                text = text.replace(form, REDACTED)
    return text


# -- settings ----------------------------------------------------------------------------------------


def _settings(config: Config) -> PostgresSettings:
    """The validated ``[plugins.postgres]`` table, or a ``ConfigError`` naming the key."""
    read = config.plugin_settings(NAME, known=KEYS)
    dsn = read.string("dsn", example='"postgresql://sseplug:${PGPASSWORD}@127.0.0.1:5432/events"')
    try:
        psycopg.conninfo.conninfo_to_dict(str.__str__(dsn))  # parsed by libpq; connects nowhere
    except psycopg.Error as error:
        raise read.error("dsn", f"not a PostgreSQL connection string ({_scrub(str(error), dsn)}); write a URI "
                                '"postgresql://user:password@host:5432/dbname" or "host=... dbname=..." pairs') from None
    ids = [connection.id for connection in config.connections]
    table = _table(read, "table", DEFAULT_TABLE, ids)
    checkpoint_table = _table(read, "checkpoint_table", DEFAULT_CHECKPOINT_TABLE, [])
    dead_letter_table = _table(read, "dead_letter_table", None, ids)
    if "{connection}" in checkpoint_table:
        raise read.error("checkpoint_table", "one checkpoint table holds every connection: remove {connection}")
    names = {checkpoint_table: "checkpoint_table"}
    for key, template in (("table", table), ("dead_letter_table", dead_letter_table)):
        for cid in ids if template is not None and "{connection}" in template else [""]:
            name = template.format(connection=cid) if template is not None else None
            if name is not None and names.setdefault(name, key) != key:
                raise read.error(key, f"{name!r} is also the {names[name]}; give each table its own name")
    timeout = read.seconds("connect_timeout", DEFAULT_CONNECT_TIMEOUT, example="5")
    return PostgresSettings(
        dsn=dsn, table=table, create=read.boolean("create", True),
        batch_max=read.integer("batch_max", DEFAULT_BATCH_MAX, minimum=1, maximum=1_000_000, example="1000"),
        checkpoint_table=checkpoint_table, dead_letter_table=dead_letter_table,
        pool_size=read.integer("pool_size", DEFAULT_POOL_SIZE, minimum=1, maximum=1000, example="10"),
        connect_timeout=math.ceil(timeout),
    )


_PART = re.compile(r"[^\x00]+")


def _table(read: TableReader, key: str, default: str | None, ids: list[str]) -> Any:
    """A table name, ``schema.table`` or a ``{connection}`` template of one, checked for every connection."""
    example = f'"{default or "sseplug_dead_letters"}" or "events_{{connection}}"'
    template = read.template(key, default, example=example)
    if template is None:
        return None
    parts = template.split(".", 1)
    for cid in ids if "{connection}" in template else [""]:
        for part in parts:
            name = part.format(connection=cid)
            whose = f" for connection {cid!r}" if cid else ""
            if not _PART.fullmatch(name) or len(name.encode("utf-8")) > _IDENTIFIER_BYTES:
                raise read.error(key, f"expected a table name (or schema.table) of 1 to {_IDENTIFIER_BYTES} bytes "
                                      f"without NUL{whose}, got {name!r} in {template!r}; e.g. {key} = {example}")
    return template
