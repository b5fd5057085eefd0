"""Route: which handlers get a connection's events, which events, and what a failing handler costs."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from .models import SSEResponse, expected_integer, expected_seconds

__all__ = ["ERROR_ACTIONS", "ErrorPolicy", "Route"]

ERROR_ACTIONS = ("stop", "skip", "dead_letter")
"""What ``ErrorPolicy.action`` may say, once a handler failed on an event every time."""


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    """What happens when an event handler raises on an event.

    The event is delivered again to the handler that raised, up to ``retries`` more times,
    waiting ``backoff`` seconds before the first redelivery and twice as long before each next
    one; the handlers after it then get the event as usual. Should it fail every time,
    ``action`` says what follows: ``"stop"`` the connection (a ``PluginError``; the event is not
    checkpointed past), ``"skip"`` the event for that handler (logged and counted in
    ``Connection.events_skipped``), or ``"dead_letter"``: hand it to ``sseplug_dead_letter``
    (counted in ``Connection.dead_letters``; if no plugin stores it, the connection stops).
    The default, plain library use's, stops at the first failure.
    """

    retries: int = 0
    backoff: float = 1.0
    action: str = "stop"

    def __post_init__(self) -> None:
        for name, expected in (
            ("retries", expected_integer(self.retries, minimum=0)),
            ("backoff", expected_seconds(self.backoff, minimum=0)),  # the config's rule too
        ):
            if expected is not None:
                raise ValueError(f"{name}: expected {expected}, got {getattr(self, name)!r}")
        if self.action not in ERROR_ACTIONS:
            raise ValueError(f"action: expected one of {', '.join(map(repr, ERROR_ACTIONS))}, got {self.action!r}")

    def delay(self, redelivery: int) -> float:
        """Seconds to wait before redelivery number ``redelivery`` (from 1)."""
        return float(self.backoff * 2 ** (redelivery - 1))


@dataclass(frozen=True, slots=True)
class Route:
    """Where one connection's events go.

    ``sinks``: the names of the plugins whose ``sseplug_handle_event`` gets the events (``None``:
    every plugin implementing it). ``events``: the event types handled (``None``: all); ``where``:
    a predicate on the event (``None``: all). Events left out by ``events`` or ``where`` reach no
    handler, callback or iterator, are counted in ``Connection.events_filtered``, and are
    checkpointed past like handled ones. ``errors``: the ``ErrorPolicy`` of the handlers.
    """

    sinks: tuple[str, ...] | None = None
    events: frozenset[str] | None = None
    where: Callable[[SSEResponse], bool] | None = None
    errors: ErrorPolicy = field(default_factory=ErrorPolicy)

    def __post_init__(self) -> None:
        for name in ("sinks", "events"):
            value: Collection[str] | None = getattr(self, name)
            if value is not None and (isinstance(value, str) or not all(isinstance(item, str) for item in value)):
                raise ValueError(f"{name}: expected a collection of names, got {value!r}")
        if self.sinks is not None:
            object.__setattr__(self, "sinks", tuple(self.sinks))
        if self.events is not None:
            object.__setattr__(self, "events", frozenset(self.events))

    @property
    def filters(self) -> bool:
        """Whether some events may be left out."""
        return self.events is not None or self.where is not None

    def accepts(self, event: SSEResponse) -> bool:
        """Whether ``event`` passes the ``events`` and ``where`` filters."""
        if self.events is not None and event.event not in self.events:
            return False
        return self.where is None or bool(self.where(event))


DEFAULT_ROUTE = Route()
