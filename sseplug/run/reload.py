"""The reload diff (SIGHUP): what a new config file changes in the running one, decided without I/O.

The runner reads the file, then asks ``reload_diff(old, new, sinks)`` what to do and does it:
stop the removed and changed connections gracefully (handlers finish, checkpoints saved), start
the added and changed ones (a changed one resumes from its checkpoint), leave the unchanged ones
alone (their responses stay open). A diff with ``refused`` set changes nothing. Only
``[[connections]]`` are applied; ``[runner]`` and ``[plugins]`` changes wait for the next start
(the plugins are configured once).
"""

from __future__ import annotations

import dataclasses
from ..errors import ConfigError
from .assembly import EventSinks
from .config import Config

__all__ = ["DEFERRED_WARNING", "ReloadDiff", "reload_diff"]

DEFERRED_WARNING = ("reload: changes to [runner] and [plugins] take effect at the next start; "
                    "applying the [[connections]] changes only")


@dataclasses.dataclass(frozen=True, slots=True)
class ReloadDiff:
    """Connection ids by what a reload does to them (``added``, ``changed`` and ``unchanged`` in
    the new file's order, ``removed`` in the old one's), or why it does nothing (``refused``)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()  # the same id, another value: restarted from its checkpoint
    unchanged: tuple[str, ...] = ()
    deferred: bool = False  # [runner] or [plugins] differ: applied at the next start only
    refused: ConfigError | None = None

    def to_stop(self) -> list[str]:
        """The ids to stop where they run (a scheduled runner runs only its share of them)."""
        return [*self.removed, *self.changed]

    def to_start(self, *, scheduled: bool) -> list[str]:
        """The ids to start; none when a scheduling plugin starts the streams (``sseplug_schedule``)."""
        return [] if scheduled else [*self.added, *self.changed]

    def summary(self) -> str:
        """The counts and ids, as the runner logs them after a reload."""
        return (f"{len(self.added)} added {list(self.added)}, {len(self.removed)} removed {list(self.removed)}, "
                f"{len(self.changed)} changed {list(self.changed)}, {len(self.unchanged)} unchanged")


def reload_diff(old: Config, new: Config, sinks: EventSinks) -> ReloadDiff:
    """What replacing ``old`` by ``new`` does, connection by connection; refused when a ``sinks``
    entry of ``new`` names no event handler of the running plugins (``sinks``), as at start."""
    refused = sinks.route_error(new)
    if refused is not None:
        return ReloadDiff(refused=refused)
    before = {connection.id: connection for connection in old.connections}
    after = {connection.id: connection for connection in new.connections}
    return ReloadDiff(
        added=tuple(cid for cid in after if cid not in before),
        removed=tuple(cid for cid in before if cid not in after),
        changed=tuple(cid for cid in after if cid in before and after[cid] != before[cid]),
        unchanged=tuple(cid for cid in after if cid in before and after[cid] == before[cid]),
        deferred=(new.runner, new.plugins) != (old.runner, old.plugins),
    )
