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

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import gevent
import psycopg
import psycopg.waiting

from sseplug.hookspecs import hookimpl
from sseplug.route import ErrorPolicy

from .rows import Batch, EventRefused, Row, RowMaker, last_index, storable
from .settings import KEYS, NAME, SETTINGS, PostgresSettings, read_settings, scrub
from .store import Moved, PostgresError, Store, refused, select_patched, transient

if TYPE_CHECKING:
    from sseplug.connection import Connection
    from sseplug.models import SSEResponse
    from sseplug.run.config import Config

__all__ = ["KEYS", "NAME", "SETTINGS", "EventRefused", "PostgresError", "PostgresSettings", "PostgresSink", "plugin"]

__version__ = "0.1.0"

MAX_WAIT = 10.0
"""Seconds between two tries at most while PostgreSQL is away before a stream resumes."""
REMEMBERED = 10_000
"""Refused events remembered at most (the oldest are forgotten first)."""

log = logging.getLogger("sseplug.postgres")


class PostgresSink:
    """The sink: one instance per plugin manager; inert until configured with a ``[plugins.postgres]`` table."""

    def __init__(self) -> None:
        self.settings: PostgresSettings | None = None  # None: inert
        self.rows_written: dict[str, int] = {}  # per connection id, since configure
        self._store: Store | None = None
        self._sinks: dict[str, tuple[str, ...] | None] = {}  # the config's routes, by connection id
        self._policies: dict[str, ErrorPolicy] = {}
        self._pending: dict[str, Batch] = {}
        self._committed: dict[str, tuple[str, int]] = {}  # connection id -> (last_event_id, seq) in the table
        self._refused: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        self._rows = RowMaker()
        self._down = False

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
        settings = read_settings(config)
        if getattr(config, "dry_run", False):
            return
        self.settings, self._store = settings, Store(settings)
        self._sinks = {c.id: c.sinks for c in config.connections}
        self._policies = {c.id: c.errors for c in config.connections}
        if psycopg.waiting.wait is getattr(psycopg.waiting, "wait_c", None) and select_patched():
            log.warning("postgres: psycopg was imported before gevent's patches: its waits block every stream")

    @hookimpl
    def sseplug_unconfigure(self) -> None:
        """Close the sessions and forget every stream; inert until configured again."""
        if self._store is not None:
            self._store.close()
        self.settings = self._store = None
        for state in (self._sinks, self._policies, self._pending, self._committed, self._refused, self.rows_written):
            state.clear()
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
        wait = 0.5
        while True:
            try:
                loaded = self._store_().load(cid, connection.request.last_event_id or "")
                break
            except psycopg.Error as error:
                if not transient(error):
                    raise PostgresError(self._said(error, "loading the checkpoint"), retryable=False) from None
                self._away(error)
                if connection.stopping or self.settings is None:
                    raise PostgresError(self._said(error, "loading the checkpoint"), retryable=True) from None
                gevent.sleep(wait)
                wait = min(wait * 2, MAX_WAIT)
        self._back()
        self._committed[cid] = loaded
        return loaded[0]

    @hookimpl
    def sseplug_checkpoint_save(self, connection: Connection, last_event_id: str) -> None:
        """Write the batch's rows, its dead letters and the checkpoint in one transaction
        (``batch_max`` rows per transaction at most)."""
        if not self._routed(connection):
            return
        cid = connection.id
        batch = self._pending.pop(cid, None) or Batch()
        committed = self._committed.get(cid)
        if committed is None:
            connection.release()  # never loaded (or a load was cut short): load it before writing
            raise PostgresError("the checkpoint of this stream is not loaded; reloading it", retryable=True)
        if not batch.rows and not batch.letters and committed[0] == last_event_id:
            return
        rows = batch.rows
        cut = last_index(rows, last_event_id)
        if cut is not None:  # rows after the checkpointed event were not checkpointed: they come again
            rows = rows[: cut + 1]
        size = self._settings().batch_max
        chunks = [rows[start:start + size] for start in range(0, len(rows), size)] or [[]]
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            self._write(connection, chunk, batch.letters if index == 0 else [],
                        last_event_id if last else chunk[-1][0])

    def _write(self, connection: Connection, rows: list[Row], letters: list[tuple[Any, ...]],
               checkpoint: str) -> None:
        """One transaction, tried again by the connection's error policy while PostgreSQL is away."""
        policy, attempt, said, cid = self._policy(connection), 0, "", connection.id
        while True:
            try:
                self._committed[cid] = self._store_().commit(cid, self._committed[cid], rows, letters, checkpoint)
                self.rows_written[cid] = self.rows_written.get(cid, 0) + len(rows)
                self._back()
                return
            except Moved:
                connection.release()
                raise PostgresError("another writer moved this stream's checkpoint in PostgreSQL; "
                                    "reloading it (two runners on one stream?)", retryable=True) from None
            except psycopg.Error as error:
                if refused(error):
                    raise self._single_out(cid, rows, error) from None
                if not transient(error):
                    raise PostgresError(self._said(error, "writing a batch"), retryable=False) from None
                self._away(error)
                attempt, said = attempt + 1, self._said(error, "writing a batch")
                if attempt > policy.retries:
                    break
                log.warning("postgres: writing %d rows of %r failed (attempt %d of %d), again in %.2fs: %s",
                            len(rows), cid, attempt, policy.retries + 1, policy.delay(attempt), self._said(error))
                gevent.sleep(policy.delay(attempt))
        failed = f"{said}; tried {attempt} times (errors.retries = {policy.retries})"
        if policy.action == "stop":
            raise PostgresError(f"{failed}; stopping (errors.action = \"stop\"), nothing after the table's "
                                "checkpoint was saved", retryable=False) from None
        connection.release()  # resume from the table once PostgreSQL answers (the load waits for it)
        raise PostgresError(f"{failed}; waiting for PostgreSQL, then resuming where the table stops",
                            retryable=True) from None

    def _single_out(self, cid: str, rows: list[Row], error: psycopg.Error) -> PostgresError:
        """The error after a refused batch: its refused rows found and their events remembered, so
        that reading the batch again lets the errors policy handle them."""
        try:
            found = self._store_().single_out(cid, self._committed[cid][1], rows)
        except psycopg.Error as other:
            return PostgresError(self._said(other, "singling out a refused row"), retryable=True)
        if not found:  # only the batch as a whole was refused (a deferred constraint, say)
            return PostgresError(self._said(error, "writing a batch") + "; no row is refused alone", retryable=False)
        for row, why in found:
            self._refused[(cid, row[0], row[2])] = self._said(why)
        while len(self._refused) > REMEMBERED:
            self._refused.popitem(last=False)
        return PostgresError(f"PostgreSQL refused {len(found)} row(s) of this batch ({self._said(error)}); reading "
                             "the batch again so that the errors policy handles those events", retryable=True)

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
            batch = self._pending[cid] = Batch()
        batch.rows.append((event.id, self._rows.row(event), event.raw_response))

    @hookimpl
    def sseplug_dead_letter(
        self, event: SSEResponse, connection: Connection, plugin: str, error: BaseException, attempts: int
    ) -> bool | None:
        """With ``dead_letter_table``: store the dead letter, in the transaction of the batch's
        checkpoint for a routed connection (exactly once), else at once. Without it, no answer."""
        settings = self.settings
        if settings is None or settings.dead_letter_table is None:
            return None
        row = (connection.id, storable(event.id), storable(event.event), plugin, attempts,
               storable(f"{type(error).__name__}: {error}"), event.raw_response.encode("utf-8", "surrogatepass"))
        if self._routed(connection):
            batch = self._pending.get(connection.id)
            if batch is None:
                batch = self._pending[connection.id] = Batch()
            batch.letters.append(row)
            return True
        self._store_().insert_letter(connection.id, row)
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

    def _store_(self) -> Store:
        if self._store is None:
            raise RuntimeError("the postgres plugin is not configured")
        return self._store

    def _said(self, error: BaseException, doing: str = "") -> str:
        """What PostgreSQL said, on one line, without the DSN's password."""
        diag = getattr(error, "diag", None)  # PostgreSQL's own words, without the DETAIL holding row values
        first = " ".join(((diag.message_primary if diag is not None else None) or str(error)).split())
        where = f" at {self.settings.shown_dsn}" if self.settings is not None else ""
        said = f"{type(error).__name__}: {first}"
        text = f"{doing}{where} failed: {said}" if doing else said
        return scrub(text, self.settings.dsn if self.settings is not None else "")

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
