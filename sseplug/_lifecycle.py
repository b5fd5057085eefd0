"""A connection's life as data: its states, the transitions allowed between them, and the one
pending ``Interrupt`` (stop outranks release, release outranks restart) that ``stop()``,
``release()`` and ``restart()`` set for the running loop (``connection.py``)."""

from __future__ import annotations

import enum

import gevent
import gevent.event
import urllib3

__all__ = ["TRANSITIONS", "ConnectionState", "Interrupt", "Lifecycle"]


class ConnectionState(str, enum.Enum):
    """Where a connection is in its life; a ``str``, so it reads as its value in JSON and logs."""

    NEW = "new"  #: created, not started
    STANDBY = "standby"  #: another process holds the stream (``sseplug_claim``)
    CONNECTING = "connecting"  #: request sent, response head not complete yet
    OPEN = "open"  #: reading events
    WAITING = "waiting"  #: between a response's end and the next reconnect
    ENDED = "ended"  #: ended for good, cleanly (204, no retry, a stop)
    FAILED = "failed"  #: ended for good with ``error``

    @property
    def final(self) -> bool:
        """Whether the connection ended for good."""
        return self in (ConnectionState.ENDED, ConnectionState.FAILED)

    def __str__(self) -> str:
        return self.value


_S = ConnectionState
TRANSITIONS: dict[ConnectionState, frozenset[ConnectionState]] = {
    _S.NEW: frozenset({_S.STANDBY, _S.CONNECTING, _S.ENDED, _S.FAILED}),
    _S.STANDBY: frozenset({_S.STANDBY, _S.CONNECTING, _S.ENDED, _S.FAILED}),
    # a restart or a release reconnects (or claims again) without waiting
    _S.CONNECTING: frozenset({_S.CONNECTING, _S.STANDBY, _S.OPEN, _S.WAITING, _S.ENDED, _S.FAILED}),
    _S.OPEN: frozenset({_S.CONNECTING, _S.STANDBY, _S.WAITING, _S.ENDED, _S.FAILED}),
    _S.WAITING: frozenset({_S.STANDBY, _S.CONNECTING, _S.ENDED, _S.FAILED}),
    _S.ENDED: frozenset(),
    _S.FAILED: frozenset(),
}
"""The states each state may move to; any other move is a bug (``_enter`` raises)."""


class Interrupt(enum.Enum):
    """What cut the connection's current step short; its value is the close reason."""

    RESTART = "restarted"  #: reconnect now, nothing counted (``restart()``)
    RELEASE = "released"  #: give the stream up, claim it again, resume from the checkpoint (``release()``)
    STOP = "stopped"  #: end for good, cleanly (``stop()``); never taken back

    @property
    def rank(self) -> int:
        """Which interrupt wins when two are asked for: the higher rank."""
        return _RANKS[self]


_RANKS = {Interrupt.RESTART: 0, Interrupt.RELEASE: 1, Interrupt.STOP: 2}


class Lifecycle:
    """A connection's state, moved only by ``_enter`` (``TRANSITIONS``), and its pending
    ``Interrupt``: what ``stop()``, ``release()`` and ``restart()`` ask of the running loop."""

    id: str

    def __init__(self) -> None:
        self._state = ConnectionState.NEW
        self._interrupt: Interrupt | None = None
        self._wakeup = gevent.event.Event()  # set to cut a wait short (a stop, a restart)
        self._response: urllib3.BaseHTTPResponse | None = None  # the response being read, to close

    @property
    def state(self) -> ConnectionState:
        """Where the connection is in its life."""
        return self._state

    @property
    def stopping(self) -> bool:
        """Whether ``stop()`` was called."""
        return self._interrupt is Interrupt.STOP

    def _enter(self, state: ConnectionState) -> None:
        """Move to ``state``; a ``RuntimeError`` (a bug) if ``TRANSITIONS`` does not allow it."""
        if state not in TRANSITIONS[self._state]:
            raise RuntimeError(f"connection {self.id!r}: no transition from {self._state} to {state}")
        self._state = state

    def stop(self) -> None:
        """Stop reading and reconnecting: ``run()`` returns soon after, without an error."""
        self._interrupt_with(Interrupt.STOP)
        self._wakeup.set()

    def restart(self) -> None:
        """Drop the current response and reconnect at once, with Last-Event-ID; not a failure:
        neither the retry count nor the backoff moves. A wait to reconnect is cut short."""
        self._interrupt_with(Interrupt.RESTART)
        self._wakeup.set()

    def release(self) -> None:
        """Give the stream up for now (a lease plugin lost it): the current response is closed,
        then the connection asks ``sseplug_claim`` again and, once it has the stream back,
        resumes from ``sseplug_checkpoint_load``. Not a failure: the retry count is untouched."""
        self._interrupt_with(Interrupt.RELEASE)

    def _interrupt_with(self, interrupt: Interrupt) -> None:
        """Ask for ``interrupt`` (unless one that outranks it is pending), and close the response."""
        if self._interrupt is None or interrupt.rank > self._interrupt.rank:
            self._interrupt = interrupt
        response = self._response
        if response is not None:
            try:
                response.shutdown()  # wakes a read blocked on the socket
            except (ValueError, RuntimeError, OSError):
                pass

    def _take(self, *interrupts: Interrupt) -> Interrupt | None:
        """The pending interrupt if it is one of ``interrupts``, now acted on: cleared, and the
        wake-up with it (a stop stays: it is for good)."""
        interrupt = self._interrupt
        if interrupt is None or interrupt not in interrupts:
            return None
        if interrupt is not Interrupt.STOP:
            self._interrupt = None
            self._wakeup.clear()
        return interrupt
