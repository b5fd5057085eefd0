"""Reconnection as a value: ``Backoff`` decides what follows a response, and checks the plugins' answers.

Nothing here sleeps or calls a hook. After each response the connection asks
``Backoff.after(error, delivered)`` for the next value and a ``Verdict``: end cleanly, raise
(the error, or ``RetriesExhaustedError``), or ask ``sseplug_retry_decision``; the hook's answer
goes through ``Backoff.wait`` into the seconds to wait. The rules are docs/design.rst's
"Reconnection" section.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from .errors import NetworkError, PluginError, RetriesExhaustedError, SSEError
from .models import MAX_WAIT, SSERequest

__all__ = ["ASK", "END", "HEALTHY_AFTER", "Backoff", "Verdict", "checked_last_event_id", "seconds"]

HEALTHY_AFTER = 60.0
"""Seconds a response must stay open before the backoff starts again from its first step."""


class Verdict(NamedTuple):
    """What follows a response: ``action`` is ``"end"`` (cleanly), ``"raise"`` (``error``),
    ``"ask"`` (the plugins: ``sseplug_retry_decision``) or ``"wait"`` (``seconds``, then reconnect)."""

    action: str
    error: SSEError | None = None
    seconds: float = 0.0


END = Verdict("end")
ASK = Verdict("ask")


def _ended(error: SSEError | None) -> Verdict:
    """End the stream: by raising ``error`` when there is one, else cleanly."""
    return END if error is None else Verdict("raise", error)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Where a connection is in its reconnects. ``attempt``: consecutive failures, reset once a
    response delivered events; ``step``: reconnects since the stream was last healthy (open for
    ``HEALTHY_AFTER`` seconds), what a backoff doubles on; ``retry_ms``: the server's last
    ``retry:`` value. Every change returns a new value."""

    attempt: int = 0
    step: int = 0
    retry_ms: int | None = None

    def with_retry(self, retry_ms: int) -> Backoff:
        """The value after the server sent ``retry: retry_ms``."""
        return replace(self, retry_ms=retry_ms)

    def healthy(self) -> Backoff:
        """The value after a response stayed open ``HEALTHY_AFTER`` seconds: the next reconnect
        starts the backoff over (the failure count stays)."""
        return replace(self, step=0)

    def after(
        self, error: SSEError | None, *, delivered: bool, request: SSERequest, events_total: int,
        connection_id: str | None = None,
    ) -> tuple[Backoff, Verdict]:
        """The next value, and what follows a response that ended with ``error`` (``None``: a
        clean EOF) after delivering events or not; ``events_total`` counts the stream's events
        so far (a request with a body is not sent again once it delivered any)."""
        attempt = 1 if delivered else self.attempt + 1  # delivering resets the failure count, not the backoff
        after = Backoff(attempt, self.step + 1, self.retry_ms)
        mode = request.reconnect_mode
        if mode == "never" or (error is None and mode == "on_error"):
            return after, _ended(error)
        if error is not None and events_total and not request.resends and request.resume_url is None:
            method = str(getattr(request.method, "value", request.method))
            broke = NetworkError(
                f"the response broke after {events_total} events ({error.message}); a "
                f"{method} request with a body is not sent again, as it would start over: set "
                "resume_url to resume with a GET and Last-Event-ID, or reconnect='always' if the "
                "server resumes the request from Last-Event-ID",
                connection_id=connection_id, url=request.url,
            )
            broke.__cause__ = error
            return after, Verdict("raise", broke)
        if attempt > request.max_retries:
            last = "the stream ended without events" if error is None else error.message
            exhausted = RetriesExhaustedError(
                f"gave up after {attempt} failed attempts in a row, max_retries = "
                f"{request.max_retries} (the last: {last}); check the server, or raise max_retries",
                attempts=attempt - 1,
                connection_id=connection_id,
                url=request.url,
            )
            exhausted.__cause__ = error
            return after, Verdict("raise", exhausted)
        return after, ASK

    @staticmethod
    def wait(answer: Any, error: SSEError | None, *, connection_id: str | None = None,
             url: str | None = None) -> Verdict:
        """What ``sseplug_retry_decision``'s ``answer`` means after ``error``: ``None`` or
        ``False`` end the stream (raising ``error`` if there is one), a number is seconds to
        wait (capped); anything else is a ``PluginError``."""
        if answer is None or answer is False:
            return _ended(error)
        return Verdict("wait", seconds=seconds("sseplug_retry_decision", answer, connection_id=connection_id, url=url))


def seconds(hook: str, answer: Any, *, connection_id: str | None = None, url: str | None = None) -> float:
    """A wait a plugin answered, capped at ``MAX_WAIT``; a ``PluginError`` if it is no number."""
    if isinstance(answer, bool) or not isinstance(answer, (int, float)) or math.isnan(answer):
        raise PluginError(f"a {hook} implementation answered {answer!r}; expected seconds to wait",
                          hook=hook, connection_id=connection_id, url=url)
    return min(max(float(answer), 0.0), MAX_WAIT)


def checked_last_event_id(loaded: Any, *, connection_id: str | None = None, url: str | None = None) -> str:
    """A last event id from ``sseplug_checkpoint_load``; one a request cannot carry is a ``PluginError``."""
    if isinstance(loaded, str) and not any(c in loaded for c in "\x00\r\n"):
        try:
            loaded.encode("utf-8")
            return loaded
        except UnicodeEncodeError:
            pass
    raise PluginError(
        f"a sseplug_checkpoint_load implementation loaded {loaded!r}, which is not a str a "
        "Last-Event-ID header can carry (UTF-8, without NUL, CR or LF); fix or delete that checkpoint",
        hook="sseplug_checkpoint_load", connection_id=connection_id, url=url,
    )
