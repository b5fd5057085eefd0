"""sseplug plugin ``jsonl``: append every event to a JSON Lines file, flushed before its checkpoint."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING

from sseplug.builtin.deadletter import letter
from sseplug.errors import ConfigError
from sseplug.hookspecs import hookimpl

if TYPE_CHECKING:
    from sseplug.run.config import Config, TableReader
    from sseplug.connection import Connection
    from sseplug.models import SSEResponse

__all__ = ["NAME", "JsonlSink", "plugin"]

__version__ = "0.1.0"

NAME = "jsonl"
"""The plugin's name: entry point, ``[plugins.jsonl]`` table, ``runner.plugins.disable`` entry."""

KEYS = ("path", "max_bytes", "backups", "fsync", "dead_letter_path")
MIN_MAX_BYTES = 1024
DEFAULT_BACKUPS = 5
BUFFER_SIZE = 64 * 1024
PLACEHOLDERS = ("connection",)


class JsonlSink:
    """The sink: one instance per plugin manager; inactive until configured with a ``[plugins.jsonl]`` table.

    Each event becomes one line ``{"connection", "id", "event", "data"}``, written with a single
    ``write`` call into a buffer. Nothing between the rotation check and that call yields to
    another greenlet (file I/O is not cooperative under gevent), so lines of concurrent
    connections never interleave inside a line and rotation always falls between lines.
    ``path`` may name ``{connection}``: one file per connection. With ``dead_letter_path``, the
    sink stores the dead letters of the runner's ``errors.action = "dead_letter"`` too.
    """

    def __init__(self) -> None:
        self.path: Path | None = None  # the file, or its template with {connection}; None: inactive
        self.dead_letter_path: Path | None = None
        self.max_bytes: int | None = None
        self.backups = DEFAULT_BACKUPS
        self.fsync = False
        self._files: dict[Path, _LineFile] = {}

    def __repr__(self) -> str:
        return f"<JsonlSink {str(self.path) if self.path else 'inactive'}>"

    # -- hooks ---------------------------------------------------------------------------------

    @hookimpl
    def sseplug_configure(self, config: Config | None) -> None:
        """Validate ``[plugins.jsonl]`` and open the file of every connection routed to it; stay
        inactive without config or table, create nothing under ``sseplug check``."""
        self.close()
        if config is None or NAME not in config.plugins:
            return
        path, max_bytes, backups, fsync, dead_letter_path = _settings(config)
        if getattr(config, "dry_run", False):  # sseplug check: validated, nothing created
            return
        self.path, self.max_bytes, self.backups, self.fsync = path, max_bytes, backups, fsync
        self.dead_letter_path = dead_letter_path
        templates = {"path": path, "dead_letter_path": dead_letter_path}
        routed = [c for c in config.connections if NAME in (getattr(c, "sinks", None) or (NAME,))]
        for key, template in ((key, template) for key, template in templates.items() if template is not None):
            # checked up front: the event files are opened; a dead-letter file is only found
            # creatable (its existence then means a dead letter, for whoever watches for one)
            for connection in routed:
                try:
                    if key == "path":
                        self._file(template, connection.id)
                    else:
                        _check_creatable(_resolved(template, connection.id))
                except OSError as error:
                    shown = _resolved(template, connection.id)
                    self.close()
                    raise ConfigError(
                        f"cannot open {str(shown)!r} for appending ({error.strerror or error}); "
                        "check that the directory is writable and the path is not a directory",
                        key=f"plugins.{NAME}.{key}",
                        path=str(config.path),
                    ) from error

    @hookimpl
    def sseplug_handle_event(self, event: SSEResponse, connection: Connection) -> None:
        """Append the event's line; flush at once when no checkpoint will follow for it."""
        if self.path is None:
            return
        self.write(connection.id, event)
        if event.id == connection.last_event_id:
            # The connection saves a checkpoint (and so calls our flush) only when the id moves
            # on; a stream without ids never checkpoints, so its lines are flushed right here.
            self.flush()

    # tryfirst: the checkpoint store (the built-in sqlite, redis...) must find these lines on disk
    # before it records last_event_id; saved first and flushed after, a crash in between would
    # resume past lines that never reached the file, breaking at-least-once delivery. Plain
    # registration order would not do: pluggy runs the last-registered plugin first.
    @hookimpl(tryfirst=True)
    def sseplug_checkpoint_save(self) -> None:
        """Flush the buffered lines (and fsync when configured) before any checkpoint is saved."""
        self.flush()

    @hookimpl
    def sseplug_dead_letter(
        self, event: SSEResponse, connection: Connection, plugin: str, error: BaseException, attempts: int
    ) -> bool | None:
        """With ``dead_letter_path``: append the dead letter, synced to the disk; else no answer."""
        if self.dead_letter_path is None:
            return None
        record = letter(event, connection, plugin, error, attempts)
        file = self._file(self.dead_letter_path, connection.id)
        file.write(_line(record), max_bytes=None)
        file.flush(fsync=True)
        return True

    @hookimpl
    def sseplug_unconfigure(self) -> None:
        """Flush and close the files; the sink is inactive until configured again."""
        self.close()

    # -- files ---------------------------------------------------------------------------------

    def write(self, connection_id: str, event: SSEResponse) -> None:
        """Append one line for ``event``, rotating first if it would overflow ``max_bytes``."""
        if self.path is None:
            raise RuntimeError("the jsonl sink is not configured")
        record = {"connection": connection_id, "id": event.id, "event": event.event, "data": event.data}
        self._file(self.path, connection_id).write(_line(record), self.max_bytes)

    def flush(self) -> None:
        """Hand buffered lines to the OS (and to the disk with ``fsync``); cheap when nothing is new."""
        for file in self._files.values():
            file.flush(self.fsync)

    def close(self) -> None:
        """Flush and close the files, if open; the sink becomes inactive."""
        files, self._files = list(self._files.values()), {}
        try:
            for file in files:
                file.close(self.fsync)
        finally:
            self.path = self.dead_letter_path = None

    def _file(self, template: Path, connection_id: str) -> _LineFile:
        """The open file of ``connection_id`` under ``template``, opened (and created) on first use."""
        path = _resolved(template, connection_id)
        file = self._files.get(path)
        if file is None:
            file = self._files[path] = _LineFile(path, self.backups)
        return file


class _LineFile:
    """One JSON Lines file: appended through a buffer, whole lines only, rotated by size."""

    def __init__(self, path: Path, backups: int) -> None:
        self.path, self.backups = path, backups
        self._file: IO[bytes] | None = None
        self._size = 0  # bytes in the file, buffered ones included
        self._dirty = False  # written since the last flush
        self._open()

    def write(self, line: bytes, max_bytes: int | None) -> None:
        if self._file is None:
            self._open()  # raises (failing the connection) rather than dropping the line
        if max_bytes is not None and self._size and self._size + len(line) > max_bytes:
            self._rotate()
        assert self._file is not None
        self._file.write(line)  # one call per line: whole lines, whichever greenlet writes
        self._size += len(line)
        self._dirty = True

    def flush(self, fsync: bool) -> None:
        if self._file is None or not self._dirty:
            return
        self._file.flush()
        if fsync:
            os.fsync(self._file.fileno())
        self._dirty = False

    def close(self, fsync: bool) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                if self._dirty and fsync:
                    file.flush()
                    os.fsync(file.fileno())
            finally:
                file.close()
                self._dirty = False

    def _open(self, mode: str = "ab") -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, mode, buffering=BUFFER_SIZE)  # kept open until unconfigure
        try:
            self._size = os.fstat(file.fileno()).st_size
            if self._size and _last_byte(self.path) != b"\n":
                # A crash mid-flush left a torn line: end it, so the next line stays parseable
                # on its own (the torn event was not checkpointed and will be delivered again).
                file.write(b"\n")
                file.flush()
                self._size += 1
        except BaseException:
            file.close()
            raise
        self._file = file
        self._dirty = False

    def _rotate(self) -> None:
        """events.jsonl -> .1 -> .2 ... -> .N (the oldest dropped), like logging's RotatingFileHandler."""
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())  # lines of a batch not yet checkpointed move to .1
        self._file.close()
        self._file = None
        if self.backups == 0:
            self._open("wb")  # no backups: start the file over
            return
        for index in range(self.backups - 1, 0, -1):
            older = _numbered(self.path, index)
            if older.exists():
                os.replace(older, _numbered(self.path, index + 1))
        os.replace(self.path, _numbered(self.path, 1))
        self._open()


plugin = JsonlSink()
"""The instance the ``jsonl`` entry point registers (``sseplug_jsonl:plugin``)."""


def _line(record: dict[str, object]) -> bytes:
    try:
        return (json.dumps(record, default=str, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (e.g. from JSON "\ud800"): escape them instead
        return (json.dumps(record, default=str) + "\n").encode("ascii")


def _check_creatable(path: Path) -> None:
    """Raise the ``OSError`` that appending to ``path`` would meet (it, or its nearest existing
    directory, not writable; a directory in its place), creating nothing."""
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    existing = path if path.exists() else next(parent for parent in path.absolute().parents if parent.exists())
    if not existing.is_dir() and existing != path:
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
    if not os.access(existing, os.W_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(existing))


def _resolved(template: Path, connection_id: str) -> Path:
    return Path(str(template).format(connection=connection_id))


def _settings(config: Config) -> tuple[Path, int | None, int, bool, Path | None]:
    """``(path, max_bytes, backups, fsync, dead_letter_path)`` from ``[plugins.jsonl]``, or a
    ``ConfigError`` naming the key."""
    read = config.plugin_settings(NAME, known=KEYS)
    path = _path(read, config, "path", read.template("path", example='"events.jsonl" (relative to the config file)'))
    max_bytes = read.integer(
        "max_bytes", None, minimum=MIN_MAX_BYTES, example="104857600 (leave it out to never rotate)"
    )
    raw_dead = read.template("dead_letter_path", None, example='"dead-letters/{connection}.jsonl"')
    dead = None if raw_dead is None else _path(read, config, "dead_letter_path", raw_dead)
    return path, max_bytes, read.integer("backups", DEFAULT_BACKUPS, minimum=0), read.boolean("fsync", False), dead


def _path(read: TableReader, config: Config, key: str, raw: str) -> Path:
    """A file path or ``{connection}`` template of the table, relative to the config file."""
    if not raw.strip():
        raise read.error(key, f'expected a file path, got {raw!r}; e.g. {key} = "events.jsonl"')
    path = Path(raw).expanduser()
    return path if path.is_absolute() else config.path.absolute().parent / path


def _numbered(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1)
