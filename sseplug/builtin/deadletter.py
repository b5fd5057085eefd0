"""Built-in plugin ``deadletter``: the runner's last resort for events a handler kept failing on.

With ``errors.action = "dead_letter"``, a sink that stores dead letters itself answers
``sseplug_dead_letter`` first; otherwise this plugin appends one JSON line per event to
``<state_dir>/dead-letter.jsonl``, written through to the disk before the event is checkpointed
past. The file is created at the first dead letter (``sseplug check`` creates nothing).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..hookspecs import hookimpl
from ..models import SSEResponse

__all__ = ["FILENAME", "DeadLetterFile", "letter"]

FILENAME = "dead-letter.jsonl"

if TYPE_CHECKING:
    from ..connection import Connection


def letter(event: SSEResponse, connection: Connection, plugin: str, error: BaseException, attempts: int) -> dict[str, Any]:
    """What a dead letter records, the same in every store: ``{"time", "connection", "plugin",
    "attempts", "error", "event"}``, ``event`` holding ``id``, ``event``, ``data`` and ``raw``
    (the block as received)."""
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "connection": connection.id,
        "plugin": plugin,
        "attempts": attempts,
        "error": f"{type(error).__name__}: {error}",
        "event": {"id": event.id, "event": event.event, "data": event.data, "raw": event.raw_response},
    }


class DeadLetterFile:
    """Appends ``{"time", "connection", "plugin", "attempts", "error", "event"}`` lines to
    ``<state_dir>/dead-letter.jsonl``; ``event`` holds ``id``, ``event``, ``data`` (decoded, or
    its text when it has no JSON form) and ``raw`` (the block as received)."""

    def __init__(self) -> None:
        self.path: Path | None = None  # set by a runner config

    @hookimpl
    def sseplug_configure(self, config: Any) -> None:
        """Take the file's place from the runner's state_dir (library use has none)."""
        self.path = None if config is None else Path(config.runner.state_dir) / FILENAME

    @hookimpl(trylast=True)
    def sseplug_dead_letter(
        self, event: SSEResponse, connection: Connection, plugin: str, error: BaseException, attempts: int
    ) -> bool | None:
        """Append the dead letter and sync it to the disk; no answer without a state_dir."""
        if self.path is None:
            return None
        line = letter(event, connection, plugin, error, attempts)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
            file.flush()
            os.fsync(file.fileno())
        return True
