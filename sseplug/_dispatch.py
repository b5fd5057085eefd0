"""What happens to parsed events: filters, end and error events, deserialize, handlers, checkpoint, hand-over.

One ``Dispatcher`` per connection. It caches the per-event hook callers (looked up again only
when the plugins change), runs a batch through the route's filters and the handler chain, and
applies the route's ``ErrorPolicy`` when a handler raises: the handler chain is an ordered list
of ``(name, handler)`` (the route's ``sseplug_handle_event`` plugins in call order, then the
request's ``on_data``), so redelivering an event to the handler that failed, then giving it to
the ones after, is a position in that list. It waits with the ``sleep`` it was given (a test
passes one that records), and counts in one ``ConnectionStats`` what metrics and ``/status``
show. Nothing here opens a socket.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import gevent

from .errors import PluginError, ServerEventError, SSEError, TemporaryPluginError
from .models import SSERequest, SSEResponse
from .parser import Comment
from .plugins import PluginManager
from .route import Route

__all__ = ["ON_DATA", "ConnectionStats", "Counted", "Dispatcher", "EventHooks", "Handler"]

log = logging.getLogger("sseplug.connection")

ON_DATA = "on_data callback"
"""The name of the request's ``on_data`` callback in the handler chain and in errors."""

Handler = Callable[[SSEResponse, Any], Any]
"""An entry of the handler chain: called with the event and the connection."""

_new_event = tuple.__new__
_DATA = SSEResponse._fields.index("data")


@dataclass(slots=True)
class ConnectionStats:
    """A connection's counts, as metrics and ``/status`` show them."""

    events_total: int = 0  #: events that went through the handlers (filtered ones too) and were checkpointed
    bytes_total: int = 0  #: bytes read from the stream
    reconnects_total: int = 0  #: reconnections made
    events_filtered: int = 0  #: left out by the route's event-type and ``where`` filters
    handler_errors: int = 0  #: exceptions raised by event handlers, each redelivery counted
    events_skipped: int = 0  #: events a handler kept failing on, skipped for it (action "skip")
    dead_letters: int = 0  #: events a handler kept failing on, stored by sseplug_dead_letter
    last_event_at: float | None = None  #: ``time.time()`` when the last event was handled


class Counted:
    """A base giving the counters of ``stats`` the names they have as attributes of a connection
    (read by metrics, plugins and tests; ``events_total`` may be set)."""

    stats: ConnectionStats

    @property
    def events_total(self) -> int:
        """Events that went through the handlers (filtered ones too) and were checkpointed."""
        return self.stats.events_total

    @events_total.setter
    def events_total(self, value: int) -> None:
        """Set the count (a test or a tool starting from a known figure)."""
        self.stats.events_total = value

    @property
    def bytes_total(self) -> int:
        """Bytes read from the stream."""
        return self.stats.bytes_total

    @property
    def reconnects_total(self) -> int:
        """Reconnections made."""
        return self.stats.reconnects_total

    @property
    def events_filtered(self) -> int:
        """Events left out by the route's event-type and ``where`` filters."""
        return self.stats.events_filtered

    @property
    def handler_errors(self) -> int:
        """Exceptions raised by event handlers, each redelivery counted."""
        return self.stats.handler_errors

    @property
    def events_skipped(self) -> int:
        """Events a handler kept failing on, skipped for it (errors action ``"skip"``)."""
        return self.stats.events_skipped

    @property
    def dead_letters(self) -> int:
        """Events a handler kept failing on, stored by ``sseplug_dead_letter``."""
        return self.stats.dead_letters

    @property
    def last_event_at(self) -> float | None:
        """``time.time()`` when the last event was handled."""
        return self.stats.last_event_at


class EventHooks(NamedTuple):
    """The per-event hook callers that have implementations (``None`` when none has)."""

    generation: int
    decode_data: Callable[[str], Any] | None  # stands for deserialize, applied by the parser
    deserialize: Any
    handle_event: Any
    checkpoint_save: Any


_NO_HOOKS = EventHooks(-1, None, None, None, None)  # shared until a first lookup: thousands of idle connections
_NO_CHAIN: tuple[int, list[tuple[str, Handler]]] = (-1, [])  # replaced, never changed in place


class Owner(Protocol):
    """The connection as the dispatcher sees it: what errors name, and the id to resume from."""

    id: str
    url: str
    last_event_id: str


class Dispatcher:
    """Runs the events of ``connection`` through the plugins of ``route``; ``deliver`` (if any)
    receives each batch after the handlers and the checkpoint."""

    __slots__ = ("_chain", "_clock", "_deliver", "_hooks", "_plugins", "_sleep", "connection", "request", "route",
                 "stats")

    def __init__(
        self,
        connection: Owner,
        request: SSERequest,
        *,
        plugins: PluginManager,
        route: Route,
        deliver: Callable[[list[SSEResponse]], Any] | None = None,
        sleep: Callable[[float], Any] = gevent.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.connection = connection
        self.request = request
        self.route = route
        self.stats = ConnectionStats()
        self._plugins = plugins
        self._deliver = deliver
        self._sleep = sleep
        self._clock = clock
        self._hooks = _NO_HOOKS
        self._chain: tuple[int, list[tuple[str, Handler]]] = _NO_CHAIN

    # -- hook callers ----------------------------------------------------------------------------

    def hooks(self) -> EventHooks:
        """The per-event hook callers, looked up again only when the plugins changed."""
        pm = self._plugins
        if self._hooks.generation != pm.generation:
            decode_data = pm.text_decoder()
            self._hooks = EventHooks(
                pm.generation,
                decode_data,
                None if decode_data else pm.direct_caller("sseplug_deserialize", ("event", "connection")),
                pm.direct_caller("sseplug_handle_event", ("event", "connection"), self.route.sinks),
                pm.direct_caller("sseplug_checkpoint_save", ("connection", "last_event_id")),
            )
        return self._hooks

    def handler_chain(self) -> list[tuple[str, Handler]]:
        """The handlers in the order they get an event: the route's ``sseplug_handle_event``
        plugins as pluggy calls them, then ``on_data``; each entry calls that handler alone."""
        pm = self._plugins
        if self._chain[0] != pm.generation:
            chain: list[tuple[str, Handler]] = []
            for name in pm.call_order("sseplug_handle_event", self.route.sinks):
                caller = pm.direct_caller("sseplug_handle_event", ("event", "connection"), (name,))
                if caller is not None:
                    chain.append((name, caller))
            on_data = self.request.on_data
            if on_data is not None:
                chain.append((ON_DATA, lambda event, connection: on_data(event)))
            self._chain = (pm.generation, chain)
        return self._chain[1]

    def call(self, name: str, **kwargs: Any) -> Any:
        """Call hook ``name``; an implementation that raises becomes a ``PluginError``."""
        try:
            return getattr(self._plugins.hook, name)(**kwargs)
        except Exception as error:
            plugin = self._plugins.plugin_that_raised(name, error)
            raise self.plugin_error(plugin, name, error, self.connection.last_event_id) from error

    def plugin_error(self, plugin: str, hook: str, error: Exception, event_id: str | None) -> PluginError:
        """The error for a hook implementation that raised; retryable when the exception says so
        (a ``retryable = True`` attribute): the connection then reconnects from its checkpoint."""
        connection = self.connection
        log.error("plugin %r failed in %s on connection %r at event id %r: %s: %s",
                  plugin, hook, connection.id, event_id, type(error).__name__, error)
        kind = TemporaryPluginError if getattr(error, "retryable", False) is True else PluginError
        return kind(
            f"plugin {plugin!r} raised in {hook} at event id {event_id!r}: {type(error).__name__}: {error}",
            plugin=plugin, hook=hook, event_id=event_id, connection_id=connection.id, url=connection.url,
        )

    # -- batches ---------------------------------------------------------------------------------

    def parsed(self, items: Sequence[SSEResponse | Comment], last_event_id: str | None) -> bool:
        """Dispatch what the parser returned: runs of events, and comments to ``on_comment`` in
        between; ``last_event_id`` (``None``: the last event's) is checkpointed after the last
        run. True when an end event ended the stream."""
        on_comment = self.request.on_comment
        run: list[SSEResponse] = []
        for item in items:
            if type(item) is not Comment:
                run.append(item)  # type: ignore[arg-type]  # an SSEResponse
                continue
            if run:
                if self.dispatch(run, run[-1].id):
                    return True
                run = []
            try:
                on_comment(str(item))  # type: ignore[misc]  # set: the parser reports Comments only then
            except Exception as error:
                raise self.plugin_error("on_comment callback", "on_comment", error,
                                        self.connection.last_event_id) from error
        if run:
            return self.dispatch(run, run[-1].id if last_event_id is None else last_event_id)
        if last_event_id is not None and last_event_id != self.connection.last_event_id:
            self.checkpoint(last_event_id)  # an id-only block after the comments
        return False

    def dispatch(self, events: list[SSEResponse], last_event_id: str) -> bool:
        """Dispatch a batch up to its first end or error event, if the request names any; True
        when an end event came (the stream is over), ``ServerEventError`` for an error event."""
        request = self.request
        if request.end_events or request.end_data or request.error_events:
            for index, event in enumerate(events):
                if event.event in request.error_events:
                    if index:
                        self._handle(events[:index], events[index - 1].id)
                    raise self._server_error(event)
                if event.event in request.end_events or (type(event.data) is str and event.data in request.end_data):
                    self._handle(events[: index + 1], event.id)
                    return True
        self._handle(events, last_event_id)
        return False

    def _server_error(self, event: SSEResponse) -> ServerEventError:
        """The error for one of the request's ``error_events``, its data as the handlers would see it."""
        deserialize = self.hooks().deserialize
        if deserialize is not None:
            event = self.deserialize(deserialize, [event])[0]
        data = event.data if isinstance(event.data, str) else json.dumps(event.data, default=str)
        return ServerEventError(
            f"the server sent an {event.event!r} event (id {event.id!r}), one of error_events: {data[:200]}",
            event=event, connection_id=self.connection.id, url=self.connection.url,
        )

    def _handle(self, events: list[SSEResponse], last_event_id: str) -> None:
        """Deserialize, filter, handle, checkpoint, deliver: in that order, for one batch."""
        hooks = self.hooks()
        if hooks.deserialize is not None:
            events = self.deserialize(hooks.deserialize, events)
        self.stats.last_event_at = self._clock()
        if self.route.filters:
            events = self._filter(events)
        handle, on_data = hooks.handle_event, self.request.on_data
        if handle is not None or on_data is not None:
            connection = self.connection
            for index, event in enumerate(events):
                if handle is not None:
                    try:
                        handle(event, connection)
                    except Exception as error:
                        plugin = self._plugins.plugin_that_raised("sseplug_handle_event", error)
                        self._recover(event, error, events[:index], plugin)
                        continue  # on_data too had the event, from _recover
                if on_data is not None:
                    try:
                        on_data(event)
                    except Exception as error:
                        self._recover(event, error, events[:index], ON_DATA)
        self.checkpoint(last_event_id)
        self.hand_over(events)

    def _filter(self, events: list[SSEResponse]) -> list[SSEResponse]:
        """The events the route's filters let through; the others are counted."""
        accepts = self.route.accepts
        try:
            kept = [event for event in events if accepts(event)]
        except Exception as error:
            raise PluginError(
                f"the where filter raised: {type(error).__name__}: {error}",
                plugin="where", connection_id=self.connection.id, url=self.connection.url,
            ) from error
        dropped = len(events) - len(kept)
        self.stats.events_filtered += dropped
        self.stats.events_total += dropped  # processed too: they are checkpointed past
        return kept

    # -- the errors policy -----------------------------------------------------------------------

    def _recover(self, event: SSEResponse, error: Exception, done: list[SSEResponse], plugin: str) -> None:
        """Handler ``plugin`` raised ``error`` on ``event`` (after the batch handled ``done``):
        redeliver it to that handler by the route's ``ErrorPolicy``, then give the handlers after
        it the event; or skip it, dead-letter it, or raise the ``PluginError`` that stops the
        connection (after checkpointing and delivering ``done``)."""
        chain = self.handler_chain()
        names = [name for name, _ in chain]
        index = names.index(plugin) if plugin in names else -1
        while True:
            self._retry(event, error, done, plugin, chain[index][1] if index >= 0 else None)
            after = index + 1  # the handlers after it still get the event
            try:
                for index in range(after, len(chain)):
                    chain[index][1](event, self.connection)
                return
            except Exception as next_error:
                error, plugin = next_error, names[index]

    def _retry(
        self, event: SSEResponse, error: Exception, done: list[SSEResponse], plugin: str, handler: Handler | None
    ) -> None:
        """Redeliver ``event`` to ``handler`` (``plugin``'s, ``None`` when unknown) up to the
        policy's ``retries`` times; returns once it took the event, or the policy passed it
        (skipped, dead-lettered); raises what stops the connection."""
        hook = "on_data" if plugin == ON_DATA else "sseplug_handle_event"
        stats, policy, attempts = self.stats, self.route.errors, 1
        stats.handler_errors += 1
        retryable = getattr(error, "retryable", False) is True  # reconnects instead
        while handler is not None and not retryable and attempts <= policy.retries:
            log.warning("connection %r: %s failed on event id %r (attempt %d of %d), retrying in %.2fs: %s: %s",
                        self.connection.id, plugin, event.id, attempts, policy.retries + 1, policy.delay(attempts),
                        type(error).__name__, error)
            self._sleep(policy.delay(attempts))
            attempts += 1
            try:
                handler(event, self.connection)
                return
            except Exception as again:
                error = again
                stats.handler_errors += 1
        try:
            if handler is None or retryable or not self._gave_up(event, plugin, error, attempts):
                raise self.plugin_error(plugin, hook, error, event.id) from error
        except SSEError:
            if done:  # what the handlers finished is checkpointed and delivered
                self.checkpoint(done[-1].id)
                self.hand_over(done)
            raise

    def _gave_up(self, event: SSEResponse, plugin: str, error: Exception, attempts: int) -> bool:
        """The policy's action once ``plugin`` failed ``attempts`` times: True when the event may
        be passed (skipped, or stored as a dead letter), False to stop."""
        action, connection = self.route.errors.action, self.connection
        if action == "skip":
            self.stats.events_skipped += 1
            log.error("connection %r: %s failed %d times on event id %r; skipped (errors.action = \"skip\"): %s: %s",
                      connection.id, plugin, attempts, event.id, type(error).__name__, error)
            return True
        if action != "dead_letter":
            return False
        try:
            stored = self._plugins.hook.sseplug_dead_letter(
                event=event, connection=connection, plugin=plugin, error=error, attempts=attempts)
        except Exception as store_error:
            store = self._plugins.plugin_that_raised("sseplug_dead_letter", store_error)
            raise self.plugin_error(store, "sseplug_dead_letter", store_error, event.id) from store_error
        if stored is not True:
            raise PluginError(
                f"no plugin stored the dead letter of event id {event.id!r} ({plugin} failed {attempts} times: "
                f"{type(error).__name__}: {error}); enable the deadletter plugin or a sink's dead-letter setting",
                plugin=plugin, hook="sseplug_dead_letter", event_id=event.id, connection_id=connection.id,
                url=connection.url,
            ) from error
        self.stats.dead_letters += 1
        log.error("connection %r: %s failed %d times on event id %r; stored as a dead letter: %s: %s",
                  connection.id, plugin, attempts, event.id, type(error).__name__, error)
        return True

    # -- data, checkpoint, hand-over -------------------------------------------------------------

    def deserialize(self, deserialize: Callable[..., Any], events: list[SSEResponse]) -> list[SSEResponse]:
        """The events with ``data`` replaced by what the deserialize hook answered."""
        out: list[SSEResponse] = []
        append, connection = out.append, self.connection
        event = events[0]
        try:
            for event in events:
                data = deserialize(event, connection)
                # _replace(data=...) at C speed: every other field is carried over, whatever they are
                append(event if data is None else _new_event(SSEResponse, (*event[:_DATA], data, *event[_DATA + 1 :])))
        except Exception as error:
            plugin = self._plugins.plugin_that_raised("sseplug_deserialize", error)
            raise self.plugin_error(plugin, "sseplug_deserialize", error, event.id) from error
        return out

    def checkpoint(self, last_event_id: str) -> None:
        """Record the id to resume from and tell the checkpoint plugins, once per handled batch
        (also when the id did not change: sinks flush there, before any checkpoint is stored)."""
        save = self.hooks().checkpoint_save
        if save is not None:
            try:
                save(self.connection, last_event_id)
            except Exception as error:
                plugin = self._plugins.plugin_that_raised("sseplug_checkpoint_save", error)
                raise self.plugin_error(plugin, "sseplug_checkpoint_save", error, last_event_id) from error
        self.connection.last_event_id = last_event_id  # only now: a reconnect resumes after this batch

    def hand_over(self, events: list[SSEResponse]) -> None:
        """Count the batch as handled and pass it to ``deliver``."""
        self.stats.events_total += len(events)
        if self._deliver is not None:
            self._deliver(events)
