"""Built-in plugin ``sqlite``: last event id per connection in ``<state_dir>/checkpoints.sqlite3``.

Active only where a runner config gives a ``state_dir``; plain library use writes nothing. The
database is in WAL mode with ``synchronous=NORMAL``: a saved checkpoint survives a crash of the
process (not a power cut of the machine).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..hookspecs import hookimpl

__all__ = ["FILENAME", "SQLiteCheckpoints"]

if TYPE_CHECKING:
    from ..connection import Connection

FILENAME = "checkpoints.sqlite3"


class SQLiteCheckpoints:
    """Checkpoint store: loaded before the first connect, saved after every handled batch."""

    def __init__(self) -> None:
        self.db: sqlite3.Connection | None = None
        self._saved: dict[str, str] = {}  # connection id -> id last written: skip rewriting it

    def open(self, state_dir: Path) -> None:
        """Open (creating if needed) the database in ``state_dir``."""
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(state_dir / FILENAME, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS checkpoints ("
                "connection TEXT PRIMARY KEY, last_event_id TEXT NOT NULL, saved_at REAL NOT NULL)"
            )
        except (OSError, sqlite3.Error) as error:
            raise ConfigError(
                f"cannot open the checkpoint database in {state_dir}: {error}; "
                "check that state_dir is a writable directory",
                key="runner.state_dir",
            ) from error
        self.db = db

    @hookimpl(trylast=True)
    def sseplug_configure(self, config: Any) -> None:
        """Open the database when the config has a runner state_dir (not under ``sseplug check``)."""
        if config is not None and self.db is None and not config.dry_run:
            self.open(Path(config.runner.state_dir))
            self._saved.clear()

    @hookimpl(trylast=True)
    def sseplug_checkpoint_load(self, connection: Connection) -> str | None:
        """The saved last event id of the connection, or no answer."""
        if self.db is None:
            return None
        row = self.db.execute(
            "SELECT last_event_id FROM checkpoints WHERE connection = ?", (connection.id,)
        ).fetchone()
        return None if row is None else str(row[0])

    @hookimpl(trylast=True)
    def sseplug_checkpoint_save(self, connection: Connection, last_event_id: str) -> None:
        """Save (upsert) the connection's last event id."""
        if self.db is not None and self._saved.get(connection.id) != last_event_id:
            self.db.execute(
                "INSERT INTO checkpoints VALUES (?, ?, ?) ON CONFLICT(connection) DO UPDATE "
                "SET last_event_id = excluded.last_event_id, saved_at = excluded.saved_at",
                (connection.id, last_event_id, time.time()),
            )
            self._saved[connection.id] = last_event_id

    @hookimpl
    def sseplug_unconfigure(self) -> None:
        """Close the database."""
        if self.db is not None:
            self.db.close()
            self.db = None
