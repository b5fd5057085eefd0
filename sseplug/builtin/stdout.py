"""Built-in plugin ``stdout``: the runner's default sink, one JSON object per event and line.

The runner keeps it only when no other plugin handles events. Lines are flushed before the
checkpoint of their batch is saved, so a printed-then-crashed event is never skipped on restart.
"""

from __future__ import annotations

import json
import sys
from typing import IO, TYPE_CHECKING

from ..hookspecs import hookimpl
from ..models import SSEResponse

__all__ = ["StdoutSink"]

if TYPE_CHECKING:
    from ..connection import Connection


class StdoutSink:
    """Writes ``{"connection", "id", "event", "data"}`` lines to ``stream`` (default: stdout)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream

    @hookimpl(trylast=True)
    def sseplug_handle_event(self, event: SSEResponse, connection: Connection) -> None:
        """Write the event's line (buffered until the checkpoint)."""
        line = {"connection": connection.id, "id": event.id, "event": event.event, "data": event.data}
        (self.stream or sys.stdout).write(json.dumps(line, ensure_ascii=False, default=str) + "\n")

    @hookimpl(tryfirst=True)  # first: the lines must be out before any plugin saves the checkpoint
    def sseplug_checkpoint_save(self) -> None:
        """Flush the lines of the batch."""
        (self.stream or sys.stdout).flush()

    @hookimpl
    def sseplug_unconfigure(self) -> None:
        """Flush what is left."""
        (self.stream or sys.stdout).flush()
