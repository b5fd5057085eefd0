"""Checkpoints and the Redis Streams sink: a batch's events and its checkpoint written by one
fenced script (nothing is written once the lease is another runner's), and the checkpoint a
stream resumes from."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from sseplug.builtin.deadletter import letter
from sseplug.hookspecs import hookimpl

from .scripts import checkpoint_key, lease_key, session_key
from .state import FleetState, log

if TYPE_CHECKING:
    from sseplug.connection import Connection
    from sseplug.models import SSEResponse

__all__ = ["Sink"]



class Sink(FleetState):
    """The checkpoint and sink hooks of the plugin."""

    @hookimpl
    def sseplug_checkpoint_load(self, connection: Connection) -> str | None:
        """The checkpoint in Redis (read when the lease was taken, or now), else the request's own
        start: Redis is the only authority (a local store or memory may be past the Redis stream)."""
        if self.url is None:
            return None
        connection_id = connection.id
        self._connections[connection_id] = connection
        self._pending.pop(connection_id, None)
        start = connection.request.last_event_id or ""
        if connection_id in self._loaded:
            value = self._loaded.pop(connection_id)
        elif connection_id in self.held and connection_id in self._saved and connection_id not in self._unsure:
            value = self._saved[connection_id]  # held since it was read or written: what Redis holds
        else:
            try:
                raw = self._db().get(checkpoint_key(connection_id))
            except RedisError as error:
                self._redis_failed(error)
                connection.release()  # back to standby unread: it loads again once Redis answers
                return start
            value = None if raw is None else raw.decode("utf-8", "surrogateescape")
            self._unsure.discard(connection_id)
        if value is None and self._state_lost:
            log.warning("redis: %r has no checkpoint in Redis (it lost its state): it starts %s", connection_id,
                        f"from the request's last_event_id {start!r}" if start else "without Last-Event-ID")
        loaded = start if value is None else value
        self._saved[connection_id] = loaded
        return loaded

    # trylast: the event is buffered only once every other handler took it, so a handler that
    # raises leaves it out of the batch that is checkpointed before the connection fails

    @hookimpl(trylast=True)
    def sseplug_handle_event(self, event: SSEResponse, connection: Connection) -> None:
        """Buffer the event: it goes to the Redis stream with the batch's checkpoint, atomically."""
        if self.stream is None or self.url is None:
            return
        data = event.data
        if not isinstance(data, str):
            try:
                data = json.dumps(data, default=str, ensure_ascii=False, separators=(",", ":"))
            except ValueError:
                data = str(data)
        pending = self._pending.get(connection.id)
        if pending is None:
            pending = self._pending[connection.id] = []
        pending += (_utf8(event.id), _utf8(event.event), _utf8(data))

    @hookimpl
    def sseplug_dead_letter(
        self, event: SSEResponse, connection: Connection, plugin: str, error: BaseException, attempts: int
    ) -> bool | None:
        """With ``dead_letter_stream``: XADD the dead letter (fields connection, plugin, attempts,
        error, id, event, data, raw, time); a Redis failure raises. Without it, no answer."""
        if self.dead_letter_stream is None or self.url is None:
            return None
        record = letter(event, connection, plugin, error, attempts)
        data = event.data if isinstance(event.data, str) else json.dumps(event.data, default=str, ensure_ascii=False)
        fields = {**{key: str(record[key]) for key in ("connection", "plugin", "attempts", "error", "time")},
                  "id": event.id, "event": event.event, "data": data, "raw": event.raw_response}
        self._db().xadd(self.dead_letter_stream.format(connection=connection.id),
                        {name: _utf8(value) for name, value in fields.items()})
        return True

    @hookimpl
    def sseplug_checkpoint_save(self, connection: Connection, last_event_id: str) -> None:
        """One script: if the lease still holds our token and our session lives, XADD the batch
        and save the checkpoint; if not, write nothing and stop the stream."""
        if self.url is None:
            return
        connection_id = connection.id
        pending = self._pending.pop(connection_id, None)
        if not pending and self._saved.get(connection_id) == last_event_id:
            return  # nothing new to write
        stream = self.stream.format(connection=connection_id) if self.stream is not None else ""
        try:
            written = self._scripts["save"](
                keys=[lease_key(connection_id), checkpoint_key(connection_id), stream or lease_key(connection_id),
                      session_key(self.token)],
                args=[self.token, _utf8(last_event_id), "" if self.maxlen is None else self.maxlen,
                      connection_id, *(pending or ())],
            )
        except RedisError as error:  # _saved keeps the last id written: the memory on_lost_state may need
            self._unsure.add(connection_id)  # the script may have run: the resume reads Redis
            self._redis_failed(error)
            connection.release()  # unsaved: it waits, then resumes from the checkpoint in Redis
            return
        if written == 1:
            self._saved[connection_id] = last_event_id
            return
        if written == -1 and connection_id in self.held:  # lease or session gone: the next heartbeat decides
            self._down = self._down or "a lease or this runner's session is gone from Redis"
            connection.release()
            return
        self._saved.pop(connection_id, None)
        if connection_id in self.held:
            self._lost(connection_id, f"not saving event id {last_event_id!r}: its lease is not this runner's "
                                      "any more (another runner holds it)")
        else:
            log.debug("redis: not saving %r at event id %r: this runner does not hold its lease",
                      connection_id, last_event_id)
            connection.release()


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (e.g. from JSON "\ud800"): keep them visible
        return text.encode("utf-8", "backslashreplace")
