"""What a scheduling plugin (``sseplug_schedule``) may do with the runner's streams.

In a fleet, which streams a runner reads is decided by the plugin that holds the leases, not by
the config alone: the runner hands it a ``StreamControl`` and starts nothing by itself. The
plugin starts a stream once it holds its lease and stops it when it hands the lease over or can
no longer confirm it; the runner keeps one place (its ``streams``) for what runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runner import Runner

__all__ = ["StreamControl"]


class StreamControl:
    """The runner's streams as a scheduling plugin sees them (its ``sseplug_schedule`` argument)."""

    __slots__ = ("_runner", "lease", "unready")

    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self.lease: Callable[[str], bool] | None = None  # connection id -> holds its lease (/status)
        self.unready: Callable[[], str | None] = lambda: None  # why this runner is not ready, or None

    def ids(self) -> list[str]:
        """The config's connection ids, in config order (after a reload: the new config's)."""
        return [connection.id for connection in self._runner.config.connections]

    def running(self) -> set[str]:
        """The ids whose stream was started and has not ended."""
        return {cid for cid, stream in self._runner.streams.items() if not stream.state.final}

    def start(self, connection_id: str) -> bool:
        """Start the stream now; False (nothing done) when stopping, unknown, or already started
        (a stream that ended for good stays ended)."""
        return self._runner.start_scheduled(connection_id)

    def stop(self, connection_id: str, then: Callable[[], None] | None = None) -> None:
        """Stop the stream gracefully in the background (handlers finish, its checkpoint is
        saved, within ``shutdown_timeout``), forget it, then call ``then()``."""
        self._runner.stop_scheduled(connection_id, then)

    def abort(self, message: str) -> None:
        """Stop the whole runner (every stream, gracefully), exit status 1; ``message`` is logged."""
        self._runner.abort(message)

    def report(self, *, lease: Callable[[str], bool], unready: Callable[[], str | None]) -> None:
        """Facts for ``/status`` (``lease(id)``: this runner holds the stream's lease) and
        ``/ready`` (``unready()``: why the runner is not ready, e.g. Redis unreachable, or None)."""
        self.lease, self.unready = lease, unready
