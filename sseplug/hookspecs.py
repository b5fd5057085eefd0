"""The hook specifications of sseplug (pluggy project "sseplug") and the markers plugins use.

Calling convention (pluggy's): hooks are called with keyword arguments only, and an
implementation may accept any subset of a hook's arguments. Implementations run last-registered
first; built-in plugins are marked ``trylast`` so that installed plugins run before them.
``firstresult`` hooks stop at the first implementation returning something other than ``None``.
An exception in an implementation stops the hook and fails the connection with a ``PluginError``
naming the plugin (unless it is ``retryable``, see ``PLUGIN_ATTRIBUTES``); it is never swallowed.

``connection`` is one stream's connection: hooks may rely on what ``HookConnection`` describes,
no more (it is a ``sseplug.connection.Connection``, whose other members may change). Besides
hooks, the runtime reads the plugin attributes of ``PLUGIN_ATTRIBUTES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

import pluggy

__all__ = ["HookConnection", "PLUGIN_ATTRIBUTES", "PROJECT", "hookimpl", "hookspec"]  # and the specs

if TYPE_CHECKING:
    from .errors import SSEError
    from .models import SSERequest, SSEResponse

PROJECT = "sseplug"

hookspec = pluggy.HookspecMarker(PROJECT)
"""Marks a function in this module as a hook specification."""

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin function as the implementation of the hook of the same name."""


# -- what hooks may rely on --------------------------------------------------------------------
# A protocol, not sseplug.connection.Connection: the specs state the contract (and import no
# module above them); Connection provides it (tests/plugins/test_docs.py checks that).


@runtime_checkable
class HookConnection(Protocol):
    """The ``connection`` argument of the hooks. Read-only for plugins: they act on a connection
    through ``stop()`` and ``release()`` alone."""

    @property
    def id(self) -> str:
        """The stream's name, unique in its client or runner (what checkpoints are stored under)."""

    @property
    def request(self) -> SSERequest:
        """The request the stream was opened with."""

    @property
    def url(self) -> str:
        """The request's URL (redirects followed do not change it)."""

    @property
    def last_event_id(self) -> str:
        """The id to resume from: the last one every handler finished with (``""``: none yet)."""

    @property
    def attempt(self) -> int:
        """Consecutive failures so far; reset once a response delivered events."""

    @property
    def backoff_step(self) -> int:
        """Reconnects since the stream was last healthy (open for 60 s): what a backoff doubles on."""

    @property
    def retry_ms(self) -> int | None:
        """The server's last ``retry:`` value, or ``None``."""

    @property
    def state(self) -> str:
        """Where the connection is in its life: ``"new"``, ``"standby"``, ``"connecting"``,
        ``"open"``, ``"waiting"``, ``"ended"`` or ``"failed"`` (a ``ConnectionState``, a ``str``)."""

    @property
    def stopping(self) -> bool:
        """Whether ``stop()`` was called."""

    def stop(self) -> None:
        """End the stream cleanly: no reconnect follows (closed ``reason``: ``"stopped"``)."""

    def release(self) -> None:
        """Give the stream up for now (a lease lost): ``sseplug_claim`` is asked again before it
        resumes from ``sseplug_checkpoint_load``; not a failure."""


# -- plugin attributes -------------------------------------------------------------------------
# What the runtime reads from plugins besides their hooks' answers: documented here, next to the
# hooks (tests/plugins/test_docs.py checks every one is documented and tested).

PLUGIN_ATTRIBUTES: Final[Mapping[str, str]] = {
    "text_decoder": (
        "On a sseplug_deserialize implementation function: a pure function from the data text to "
        "what that implementation returns for it (None: the text stays), raising what it raises. "
        "When it is the only sseplug_deserialize implementation and no call monitor is attached, "
        "the parser calls it while building each event and the hook is not called "
        "(PluginManager.text_decoder); the built-in json plugin has one."
    ),
    "sseplug_sink": (
        "On a plugin implementing sseplug_handle_event: false when it stores no events (it counts, "
        "logs, forwards), so the runner keeps its stdout sink; true or absent, it is an event sink "
        "and the stdout sink is dropped (sseplug.run.runner.keep_stdout_only_without_other_sinks). "
        "Read after sseplug_configure, so it may depend on the plugin's configuration."
    ),
    "sseplug_always_on": (
        "On an installed plugin (entry point group sseplug): true when it acts in the runner even "
        "without a [plugins.NAME] table in the config; absent or false, the runner leaves an "
        "installed plugin that has no table out (it stays inert until configured). Built-ins and "
        "runner.plugins.modules are always registered."
    ),
    "sseplug_checkpoint_store": (
        "On a plugin implementing sseplug_checkpoint_load/save: true while it keeps the "
        "checkpoints itself (the redis plugin of a fleet); the runner then unregisters the built-in "
        "sqlite store and takes no lock on state_dir (sseplug.run.runner.keep_one_checkpoint_store). "
        "Read after sseplug_configure."
    ),
    "retryable": (
        "On an exception an implementation raises: exactly True (a backend briefly down) makes "
        "the failure a TemporaryPluginError, after which the connection reconnects and resumes "
        "from its last checkpoint instead of failing for good."
    ),
}
"""Every plugin attribute sseplug reads: name -> where it goes and what it means."""


# -- configure ---------------------------------------------------------------------------------


@hookspec(historic=True)
def sseplug_configure(config: Any) -> None:
    """Called once, when a client or runner starts, before any connection opens; a plugin
    registered later gets the call at registration (a historic hook, as pytest's configure).

    ``config`` is the runner's ``sseplug.run.config.Config`` (read your own ``[plugins.NAME]`` table
    with the typed readers of ``config.plugin_settings(NAME, known=KEYS)``: ``string``,
    ``integer``, ``seconds``, ``one_of``... each raising a ``ConfigError`` keyed
    ``plugins.NAME.KEY``), or ``None`` in plain library use. Results are ignored.
    """


# -- connect -----------------------------------------------------------------------------------


@hookspec
def sseplug_auth_headers(connection: HookConnection, request: SSERequest) -> Mapping[str, str] | None:
    """Called before every connect and reconnect, so tokens can be refreshed.

    Return headers to add to the request, or ``None``. The results of every plugin are merged
    (the first-run plugin wins a conflict) over the request's own headers.
    """


@hookspec(firstresult=True)
def sseplug_schedule(streams: Any) -> bool | None:
    """Called once by ``sseplug run``, after ``sseplug_configure`` and before any stream starts:
    does a plugin decide which of the config's streams this process runs?

    ``streams`` is the runner's ``sseplug.run.streams.StreamControl``: ``ids()`` (the config's
    connection ids, reloads included), ``start(id)``, ``stop(id, then)``, ``running()``,
    ``abort(message)`` and ``report(...)`` (lease and readiness facts for ``/status`` and
    ``/ready``). Return ``True`` to take the decision: the runner then starts no stream by itself
    and runs until it is stopped (a fleet plugin starts the streams whose leases it holds).
    First non-``None`` result wins; when no plugin answers, the runner starts every stream.
    """


@hookspec(firstresult=True)
def sseplug_claim(connection: HookConnection) -> bool | float | None:
    """Called before every connect and reconnect: may this process consume the stream now?

    Return ``True`` (or nothing) to go ahead, ``False`` to ask again in a second, or a number of
    seconds to wait before asking again (the connection is in state ``"standby"`` meanwhile).
    First non-``None`` result wins; when no plugin answers, the claim is granted. Lease plugins
    implement it, and call ``connection.release()`` when they lose a stream they held.
    """


@hookspec(firstresult=True)
def sseplug_checkpoint_load(connection: HookConnection) -> str | None:
    """Called before the first connect, and again after a released stream was claimed back.

    Return the last event id saved for ``connection.id`` to resume with ``Last-Event-ID``.
    First non-``None`` result wins; when no plugin answers, the request's ``last_event_id`` is
    used (empty by default: no ``Last-Event-ID`` header).
    """


@hookspec
def sseplug_connection_opened(connection: HookConnection, status: int, headers: Mapping[str, str]) -> None:
    """Called when a response was accepted as an event stream (status 200, right Content-Type);
    ``headers`` are the response's, looked up without regard to case (``headers["content-type"]``).

    Results are ignored.
    """


# -- event -------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def sseplug_deserialize(event: SSEResponse, connection: HookConnection) -> Any:
    """Called for each event; return the value ``event.data`` should hold instead of its text.

    First non-``None`` result wins; when no plugin answers, ``data`` stays the text. Not called
    at all when no plugin implements it.
    """


@hookspec
def sseplug_handle_event(event: SSEResponse, connection: HookConnection) -> None:
    """Called for each event, in stream order, by every plugin (sinks, user handlers); in the
    runner only by the connection's ``sinks`` when it names them, and only for the events its
    ``events`` and ``where`` filters let through.

    Runs after ``sseplug_deserialize`` and before the event's id is checkpointed. An exception
    is handled by the connection's error policy (the runner's ``[runner.errors]``): the event is
    redelivered to the plugin that raised, up to ``retries`` times with backoff, then the
    connection stops (the event is not checkpointed past), skips it for that plugin, or hands it
    to ``sseplug_dead_letter``. An exception with ``retryable = True`` instead reconnects from
    the last checkpoint (see ``PLUGIN_ATTRIBUTES``). Results are ignored.
    """


@hookspec(firstresult=True)
def sseplug_dead_letter(
    event: SSEResponse, connection: HookConnection, plugin: str, error: BaseException, attempts: int
) -> bool | None:
    """Called when plugin ``plugin``'s ``sseplug_handle_event`` still raised ``error`` on
    ``event`` after ``attempts`` deliveries, and the connection's error action is
    ``"dead_letter"``. Store the event durably and return ``True``; return ``None`` to leave it
    to the next implementation (the built-in ``deadletter`` plugin, last, appends a JSON line to
    ``<state_dir>/dead-letter.jsonl``). First non-``None`` result wins. The event is checkpointed past only once an
    implementation returned ``True``; if one raises, or none stores it, the connection stops
    with a ``PluginError``: nothing is dropped silently.
    """


@hookspec
def sseplug_checkpoint_save(connection: HookConnection, last_event_id: str) -> None:
    """Called once per batch of events, after every handler returned for all of them (also when
    the id did not change, so sinks can flush here first), and after an id-only block.

    ``last_event_id`` is the id to resume from after a restart. Results are ignored.
    """


# -- failure -----------------------------------------------------------------------------------


@hookspec(firstresult=True)
def sseplug_retry_decision(
    connection: HookConnection, attempt: int, error: SSEError | None, status: int | None
) -> float | bool | None:
    """Called after a response ended (``error`` is ``None``) or failed with a retryable error.

    ``attempt`` counts consecutive failures, from 1; ``status`` is the HTTP status, if any.
    Base a backoff on ``connection.backoff_step``, not on ``attempt``: a server that closes
    after every event resets ``attempt`` each time. Return the seconds to wait before
    reconnecting (capped at 6 hours), or ``False`` to stop. First non-``None``
    result wins; when no plugin answers, the stream stops. Not called when the request has
    ``retry=False``, for fatal errors, or once ``max_retries`` is exceeded.
    """


@hookspec
def sseplug_connection_closed(connection: HookConnection, reason: str) -> None:
    """Called whenever a response ends, or a connect fails: ``reason`` says why (``"eof"``,
    ``"204"``, ``"end event"``, ``"stopped"`` (``stop()``), ``"restarted"``, ``"released"``, or the error).

    Results are ignored.
    """


@hookspec
def sseplug_connection_finished(connection: HookConnection, error: SSEError | None) -> None:
    """Called once per connection, when it ended for good: ``error`` is ``None`` after a clean
    end (204, ``retry=False``, a retry decision to stop, ``stop()``), else what failed it.

    Results are ignored.
    """


# -- shutdown ----------------------------------------------------------------------------------


@hookspec
def sseplug_unconfigure() -> None:
    """Called once, when the client or runner shuts down, after every connection ended.

    Results are ignored.
    """
