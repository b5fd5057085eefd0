"""sseplug plugin ``kafka``: produce every event to a Kafka topic, acknowledged before its checkpoint."""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import confluent_kafka
import gevent
import gevent.event

from sseplug.builtin.deadletter import letter
from sseplug.errors import ConfigError
from sseplug.hookspecs import hookimpl

if TYPE_CHECKING:
    from gevent import Greenlet

    from sseplug.run.config import Config, TableReader
    from sseplug.connection import Connection
    from sseplug.models import SSEResponse

__all__ = ["NAME", "DeliveryError", "KafkaSettings", "KafkaSink", "plugin"]

__version__ = "0.1.0"

NAME = "kafka"
"""The plugin's name: entry point, ``[plugins.kafka]`` table, ``runner.plugins.disable`` entry."""

KEYS = ("bootstrap_servers", "topic", "acks", "linger_ms", "client_id", "delivery_timeout_ms", "dead_letter_topic")
ACKS = {"all": "all", -1: "all", 1: "1", 0: "0"}
DEFAULT_ACKS = "all"
DEFAULT_LINGER_MS = 0
DEFAULT_CLIENT_ID = "sseplug"
DEFAULT_DELIVERY_TIMEOUT_MS = 30_000
MAX_LINGER_MS = 900_000  # librdkafka's own bounds
MAX_DELIVERY_TIMEOUT_MS = 2_147_483_647

POLL_INTERVAL = 0.001
"""Seconds between ``poll(0)`` calls while draining a full queue or at shutdown."""
SPIN_TIME = 0.0005
"""Seconds a checkpoint's wait polls on every turn of the hub (``gevent.sleep(0)``: cooperative,
but busy) before it polls once a millisecond: a loopback or LAN acknowledgement often comes
within that, and the hub's timers cannot sleep less than a millisecond (epoll's resolution)."""
IDLE_POLL_INTERVAL = 0.1
"""Seconds between ``poll(0)`` calls otherwise (client logs and errors are served by poll too)."""
WAIT_MARGIN = 5.0
"""Seconds a checkpoint waits beyond ``delivery_timeout_ms``: librdkafka reports every message
by then, so running out of it means something is wrong with the client, not the broker."""
CLOSE_TIMEOUT = 5.0
"""Seconds ``sseplug_unconfigure`` lets unreported messages drain (none of them was checkpointed)."""
ERRORS_KEPT = 5

_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_SERVER = re.compile(r"[^\s,]+")

log = logging.getLogger("sseplug.kafka")
client_log = logging.getLogger("sseplug.kafka.librdkafka")

ProducerFactory = Callable[[dict[str, Any]], confluent_kafka.Producer]


class DeliveryError(Exception):
    """The broker did not acknowledge every message of a batch: the batch must not be checkpointed.

    ``errors`` holds the first few ``confluent_kafka.KafkaError`` reports (empty after a timeout).
    ``retryable``: sseplug reconnects and resumes from the last checkpoint instead of giving up.
    """

    retryable = True

    def __init__(self, message: str, *, errors: tuple[confluent_kafka.KafkaError, ...] = ()) -> None:
        super().__init__(message)
        self.errors = errors


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """A validated ``[plugins.kafka]`` table."""

    bootstrap_servers: tuple[str, ...]
    topic: str
    acks: str = DEFAULT_ACKS
    linger_ms: int = DEFAULT_LINGER_MS
    client_id: str = DEFAULT_CLIENT_ID
    delivery_timeout_ms: int = DEFAULT_DELIVERY_TIMEOUT_MS
    dead_letter_topic: str | None = None

    def topic_for(self, connection_id: str, template: str | None = None) -> str:
        """The topic of a connection's events (``template``: another topic setting), ``{connection}`` filled in."""
        return (self.topic if template is None else template).format(connection=connection_id)

    @property
    def wait_timeout(self) -> float:
        """Seconds a checkpoint waits for the delivery reports of its batch, at most."""
        return (self.delivery_timeout_ms + self.linger_ms) / 1000 + WAIT_MARGIN

    def producer_config(self) -> dict[str, Any]:
        """The librdkafka settings of the producer (callbacks are added by the sink)."""
        return {
            "bootstrap.servers": ",".join(self.bootstrap_servers),
            "client.id": self.client_id,
            "acks": self.acks,
            "linger.ms": self.linger_ms,
            "delivery.timeout.ms": self.delivery_timeout_ms,
            # One request in flight per broker keeps the order per key through librdkafka's
            # retries. The idempotent producer would allow five, but it cannot recover from a
            # broker that forgot its producer id (an in-memory broker restarted): every later
            # message times out until the process restarts. A retry may duplicate a message,
            # which at-least-once delivery allows anyway.
            "enable.idempotence": False,
            "max.in.flight.requests.per.connection": 1,
        }


class _Batch:
    """The messages of one connection produced since its last checkpoint, and their reports."""

    __slots__ = ("sink", "connection_id", "produced", "pending", "failed", "errors", "done")

    def __init__(self, sink: KafkaSink, connection_id: str) -> None:
        self.sink = sink
        self.connection_id = connection_id
        self.produced = 0
        self.pending = 0
        self.failed = 0
        self.errors: list[confluent_kafka.KafkaError] = []
        self.done = gevent.event.Event()

    def report(self, error: confluent_kafka.KafkaError | None, message: Any) -> None:
        """The delivery callback of each message, served by ``poll()`` on a greenlet of ours."""
        self.pending -= 1
        sink = self.sink
        sink._in_flight[self.connection_id] -= 1
        if error is None:
            sink.acknowledged[self.connection_id] += 1
        else:
            sink.failed[self.connection_id] += 1
            self.failed += 1
            if len(self.errors) < ERRORS_KEPT:
                self.errors.append(error)
        if self.pending == 0:
            self.done.set()


class KafkaSink:
    """The sink: one producer per plugin manager; inactive until configured with a ``[plugins.kafka]`` table.

    Each event becomes one message: key the connection id, value the data, headers ``id`` and
    ``event``. ``produce()`` only queues it in librdkafka, whose own threads talk to the brokers;
    the delivery reports come back through ``poll(0)``, which never blocks, called by one poller
    greenlet. ``sseplug_checkpoint_save`` waits (cooperatively) until every message of the
    connection's batch was acknowledged, and raises if one was not.
    """

    def __init__(self, producer_factory: ProducerFactory = confluent_kafka.Producer) -> None:
        self.settings: KafkaSettings | None = None  # None: inactive
        self.acknowledged: Counter[str] = Counter()  # per connection id, since configure
        self.failed: Counter[str] = Counter()
        self._in_flight: Counter[str] = Counter()
        self._producer_factory = producer_factory
        self._producer: confluent_kafka.Producer | None = None
        self._poller: Greenlet[Any, Any] | None = None
        self._batches: dict[str, _Batch] = {}
        self._waiting = 0  # checkpoints waiting for reports: the poller polls fast meanwhile
        self._active = 0.0  # perf_counter() when a report was last served or a wait began
        self._wake = gevent.event.Event()

    def __repr__(self) -> str:
        if self.settings is None:
            return "<KafkaSink inactive>"
        return f"<KafkaSink {self.settings.topic!r} on {','.join(self.settings.bootstrap_servers)}>"

    def pending(self, connection_id: str | None = None) -> int:
        """Messages produced and not yet reported (for one connection, or for all)."""
        if connection_id is not None:
            return self._in_flight[connection_id]
        return sum(self._in_flight.values())

    # -- hooks ---------------------------------------------------------------------------------

    @hookimpl
    def sseplug_configure(self, config: Config | None) -> None:
        """Validate ``[plugins.kafka]`` and create the producer; stay inactive without config or table."""
        self.close()
        if config is None or NAME not in config.plugins:
            return
        settings = _settings(config)
        if getattr(config, "dry_run", False):  # sseplug check: validated, no producer (it would connect)
            return
        producer_config = settings.producer_config()
        producer_config.update(error_cb=self._client_error, logger=client_log)  # served by poll()
        try:
            producer = self._producer_factory(producer_config)
        except (confluent_kafka.KafkaException, ValueError, TypeError) as error:
            raise ConfigError(
                f"the Kafka client refused these settings: {error}; check the [plugins.{NAME}] table",
                key=f"plugins.{NAME}",
                path=str(config.path),
            ) from error
        self.settings, self._producer = settings, producer
        self.acknowledged.clear()
        self.failed.clear()
        self._in_flight.clear()
        self._poller = gevent.spawn(self._poll_forever, producer)

    @hookimpl
    def sseplug_handle_event(self, event: SSEResponse, connection: Connection) -> None:
        """Queue the event's message; the checkpoint of its batch waits for its acknowledgement."""
        producer, settings = self._producer, self.settings
        if producer is None or settings is None:
            return
        connection_id = connection.id
        batch = self._batches.get(connection_id)
        if batch is None:
            batch = self._batches[connection_id] = _Batch(self, connection_id)
        key = _utf8(connection_id)
        value = _value(event.data)
        headers: list[tuple[str, str | bytes | None]] = [("id", _utf8(event.id)), ("event", _utf8(event.event))]
        deadline: float | None = None
        while True:
            try:
                producer.produce(settings.topic_for(connection_id), value, key, headers=headers,
                                 on_delivery=batch.report)
                break
            except BufferError:
                # librdkafka's queue is full (the brokers are slow or away): serve reports and
                # give the hub back until there is room, for as long as a delivery may take.
                now = time.monotonic()
                if deadline is None:
                    deadline = now + settings.wait_timeout
                elif now > deadline:
                    raise DeliveryError(
                        f"the Kafka producer queue stayed full for {settings.wait_timeout:.0f}s; "
                        "is the broker reachable?"
                    ) from None
                producer.poll(0)
                gevent.sleep(POLL_INTERVAL)
        batch.produced += 1
        batch.pending += 1
        self._in_flight[connection_id] += 1

    # tryfirst: the checkpoint store (the built-in sqlite, redis...) must not record last_event_id
    # before the broker acknowledged every message up to it; raising here stops the hook before
    # the stores run, so the batch is not checkpointed. Plain registration order would not do:
    # pluggy runs the last-registered plugin first.
    @hookimpl(tryfirst=True)
    def sseplug_checkpoint_save(self, connection: Connection) -> None:
        """Wait until the broker acknowledged every message of the batch; raise if one failed."""
        batch = self._batches.pop(connection.id, None)
        if batch is None or self.settings is None:
            return
        timeout = self.settings.wait_timeout
        if batch.pending:
            self._waiting += 1
            self._active = time.perf_counter()
            self._wake.set()
            try:
                reported = batch.done.wait(timeout)
            finally:
                self._waiting -= 1
            if not reported:
                raise DeliveryError(
                    f"no delivery report for {batch.pending} of {batch.produced} message(s) to topic "
                    f"{self.settings.topic_for(connection.id)!r} within {timeout:.0f}s; the batch is not checkpointed"
                )
        if batch.failed:
            raise DeliveryError(
                f"the broker did not acknowledge {batch.failed} of {batch.produced} "
                f"message(s) to topic {self.settings.topic_for(connection.id)!r} ({batch.errors[0].str()}); "
                "the batch is not checkpointed",
                errors=tuple(batch.errors),
            )

    @hookimpl
    def sseplug_dead_letter(
        self, event: SSEResponse, connection: Connection, plugin: str, error: BaseException, attempts: int
    ) -> bool | None:
        """With ``dead_letter_topic``: produce the dead letter (key the connection id, value a
        JSON object with the event, the plugin, the error and the attempts) and wait for the
        broker's acknowledgement; a failure raises ``DeliveryError``. Without it, no answer."""
        producer, settings = self._producer, self.settings
        if producer is None or settings is None or settings.dead_letter_topic is None:
            return None
        topic = settings.topic_for(connection.id, settings.dead_letter_topic)
        record = letter(event, connection, plugin, error, attempts)
        reports: list[confluent_kafka.KafkaError | None] = []
        done = gevent.event.Event()

        def report(failure: confluent_kafka.KafkaError | None, message: Any) -> None:
            reports.append(failure)
            done.set()

        producer.produce(topic, json.dumps(record, default=str).encode(), _utf8(connection.id), on_delivery=report)
        self._waiting += 1
        self._active = time.perf_counter()
        self._wake.set()
        try:
            delivered = done.wait(settings.wait_timeout)
        finally:
            self._waiting -= 1
        if not delivered or reports[0] is not None:
            reason = "no delivery report" if not delivered else reports[0].str()  # type: ignore[union-attr]
            raise DeliveryError(f"the dead letter of event {event.id!r} did not reach topic {topic!r}: {reason}")
        return True

    @hookimpl
    def sseplug_connection_closed(self, connection: Connection) -> None:
        """Forget the unfinished batch of a response that ended: the next checkpoint is not its."""
        self._batches.pop(connection.id, None)

    @hookimpl
    def sseplug_unconfigure(self) -> None:
        """Let queued messages drain (bounded), then drop the producer; inactive until configured again."""
        self.close()

    # -- producer ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop polling, drain what is queued for up to ``CLOSE_TIMEOUT`` seconds, drop the producer."""
        producer, self._producer = self._producer, None
        poller, self._poller = self._poller, None
        self.settings = None
        self._batches.clear()
        if poller is not None:
            poller.kill(block=True, timeout=1.0)
        if producer is None:
            return
        deadline = time.monotonic() + CLOSE_TIMEOUT
        while len(producer) and time.monotonic() < deadline:
            producer.poll(0)
            gevent.sleep(POLL_INTERVAL)
        if len(producer):
            log.warning("kafka: %d message(s) not acknowledged at shutdown are dropped here; they were "
                        "not checkpointed, so a restart delivers them again", len(producer))
            producer.purge(blocking=False)
            producer.poll(0)
        # The last reference goes here: librdkafka's destroy joins its threads, which is quick
        # once the queue is empty.
        del producer

    def _poll_forever(self, producer: confluent_kafka.Producer) -> None:
        """Serve delivery reports, client errors and logs; never blocks the hub (``poll(0)``)."""
        while True:
            try:
                served = producer.poll(0)
            except Exception:  # a callback raised: log it, keep serving the others
                log.exception("kafka: serving the producer's callbacks failed")
                served = 0
            if served:
                self._active = time.perf_counter()
                gevent.sleep(0)
            elif self._waiting:
                gevent.sleep(0 if time.perf_counter() - self._active < SPIN_TIME else POLL_INTERVAL)
            else:
                self._wake.clear()
                self._wake.wait(IDLE_POLL_INTERVAL)

    def _client_error(self, error: confluent_kafka.KafkaError) -> None:
        if error.code() == confluent_kafka.KafkaError._TRANSPORT:
            return  # a failed connect or a dropped connection: the client's own log has said it
        log.warning("kafka: client error: %s", error.str())


plugin = KafkaSink()
"""The instance the ``kafka`` entry point registers (``sseplug_kafka:plugin``)."""


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (e.g. from JSON "\ud800"): escape them
        return text.encode("utf-8", "backslashreplace")


def _value(data: Any) -> bytes:
    """The message value: text as UTF-8, bytes as they are, anything else as compact JSON."""
    if isinstance(data, str):
        return _utf8(data)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    return _utf8(json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str))


def _settings(config: Config) -> KafkaSettings:
    """The validated ``[plugins.kafka]`` table, or a ``ConfigError`` naming the key."""
    read = config.plugin_settings(NAME, known=KEYS)
    servers = read.strings("bootstrap_servers", separator=",", example='["10.0.0.1:9092", "10.0.0.2:9092"]')
    if not servers or not all(_SERVER.fullmatch(server) for server in servers):
        raise read.error(
            "bootstrap_servers",
            f"expected host:port, a comma-separated string of them or an array of them, got "
            f"{read.table['bootstrap_servers']!r}; "
            'e.g. bootstrap_servers = ["10.0.0.1:9092", "10.0.0.2:9092"]',
        )
    topic = _topic(read, config, "topic", read.template("topic", example='"events" or "sse.{connection}"'))
    dead_letter_topic = read.template("dead_letter_topic", None, example='"sse.dead-letters"')
    if dead_letter_topic is not None:
        dead_letter_topic = _topic(read, config, "dead_letter_topic", dead_letter_topic)
    acks = ACKS[read.one_of("acks", tuple(ACKS), DEFAULT_ACKS)]
    linger_ms = read.integer("linger_ms", DEFAULT_LINGER_MS, minimum=0, maximum=MAX_LINGER_MS, example="5")
    client_id = read.string("client_id", DEFAULT_CLIENT_ID)
    if not client_id.strip() or not client_id.isprintable():
        raise read.error(
            "client_id", f'expected a non-empty printable string, got {client_id!r}; e.g. client_id = "sseplug"'
        )
    timeout = read.integer(
        "delivery_timeout_ms", DEFAULT_DELIVERY_TIMEOUT_MS, minimum=1, maximum=MAX_DELIVERY_TIMEOUT_MS
    )
    if timeout <= linger_ms:
        raise read.error(
            "delivery_timeout_ms",
            f"must be larger than linger_ms ({linger_ms}), got {timeout}; a message must be allowed to wait "
            "its linger time and still be delivered",
        )
    return KafkaSettings(
        bootstrap_servers=servers,
        topic=topic,
        acks=acks,
        linger_ms=linger_ms,
        client_id=client_id,
        delivery_timeout_ms=timeout,
        dead_letter_topic=dead_letter_topic,
    )


def _topic(read: TableReader, config: Config, key: str, template: str) -> str:
    """A topic name, or a ``{connection}`` template that makes one of every configured connection id."""
    names = [connection.id for connection in config.connections] if "{connection}" in template else [""]
    for connection_id in names:
        topic = template.format(connection=connection_id)
        if not _TOPIC.fullmatch(topic) or topic in (".", ".."):
            whose = f" for connection {connection_id!r}" if connection_id else ""
            raise read.error(
                key,
                f"expected a Kafka topic name (1 to 249 of A-Z a-z 0-9 . _ -){whose}, got {topic!r}; "
                f'e.g. {key} = "events" or "sse.{{connection}}"',
            )
    return template
