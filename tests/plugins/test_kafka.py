"""The ``kafka`` plugin (sseplug-kafka) against real loopback streams and a real Tansu broker:
messages consumed back, checkpoints after acknowledgement, a broker that is down, the hub's stalls."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import confluent_kafka
import gevent
import pytest

import sseplug_kafka
from sseplug import SSEClient, SSERequest, SSEResponse, hookimpl
from sseplug.builtin import deadletter
from sseplug.builtin.sqlite import SQLiteCheckpoints
from sseplug.run.config import parse_config
from sseplug.errors import ConfigError, PluginError
from sseplug.plugins import PluginManager, create_plugin_manager
from sseplug.server import Response, SSEServer
from sseplug.testing import DONE
from sseplug_kafka import DeliveryError, KafkaSettings, KafkaSink

from . import sink_kit
from .kafka_broker import TansuBroker, free_port, running_broker
from .sink_kit import HubWatch

TIMEOUT = 15.0

# The hub's longest stall allowed while the plugin works. Dispatching one 64 KiB read (a few hundred
# events: parse, JSON decode, produce) takes a few milliseconds of CPU without a yield, and a noisy
# 2-core machine (CI running a broker, a server and this test) can add tens of milliseconds of
# scheduling delay. 200 ms is 40 ticks above that noise, and far below what a blocking wait for
# delivery shows: the whole delivery timeout (1 s here) while the broker is down.
MAX_HUB_STALL = 0.2

make_config = functools.partial(sink_kit.make_config, plugin="kafka")
drain = functools.partial(sink_kit.drain, timeout=TIMEOUT, limit=5000)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """One Tansu broker for the module; every test uses its own topic."""
    with running_broker(tmp_path_factory.mktemp("tansu") / "tansu.log") as started:
        yield started


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    """A topic of the test's own (Tansu creates it on first use)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:200]


@pytest.fixture
def sink(register_plugin: Callable[..., object]) -> Iterator[KafkaSink]:
    """A fresh sink registered as ``kafka`` for this test, closed afterwards."""
    plugin = KafkaSink()
    yield from sink_kit.registered(register_plugin, plugin, "kafka", plugin.close)


@pytest.fixture
def checkpoints(register_plugin: Callable[..., object]) -> SQLiteCheckpoints:
    """The runner's checkpoint store (built-in ``sqlite``, trylast), which plain library use lacks."""
    store = SQLiteCheckpoints()
    register_plugin(store, "sqlite")
    return store


def kafka_table(bootstrap: str, topic: str, extra: str = "") -> str:
    return f'bootstrap_servers = "{bootstrap}"\ntopic = "{topic}"\n{extra}'


def stored_checkpoints(tmp_path: Path) -> dict[str, str]:
    """What the ``checkpoints`` store saved (the config's state_dir is ``tmp_path/.sseplug``)."""
    db = sqlite3.connect(tmp_path / ".sseplug" / "checkpoints.sqlite3")
    try:
        return dict(db.execute("SELECT connection, last_event_id FROM checkpoints"))
    finally:
        db.close()


# -- messages over real streams -------------------------------------------------------------------


def test_every_event_produced_once_in_order_per_connection_with_headers(
    broker: TansuBroker, topic: str, tmp_path: Path, sse_server: SSEServer, sink: KafkaSink,
    checkpoints: SQLiteCheckpoints,
    sse_client_for: Callable[..., SSEClient],
) -> None:
    client = sse_client_for(make_config(tmp_path, kafka_table(broker.bootstrap, topic)))
    counts = {"alpha": 50, "beta": 30}
    jobs = [gevent.spawn(drain, client, name, sse_server.url(f"/feed/{name}?count={count}&interval=0"))
            for name, count in counts.items()]
    gevent.joinall(jobs, timeout=TIMEOUT, raise_error=True)
    assert [len(job.value) for job in jobs] == list(counts.values())
    assert sink.pending() == 0 and sink.acknowledged == Counter(counts) and not sink.failed

    messages = broker.consume(topic, sum(counts.values()))
    assert len(messages) == sum(counts.values())  # nothing twice, nothing else
    for name, count in counts.items():
        mine = [message for message in messages if message.key == name.encode()]
        assert len({message.partition for message in mine}) == 1  # one key, one partition
        assert [message.offset for message in mine] == sorted(message.offset for message in mine)
        assert [json.loads(message.value) for message in mine] == [  # type: ignore[arg-type]
            {"feed": name, "seq": seq} for seq in range(1, count + 1)
        ]
        assert [message.headers for message in mine] == [
            {"id": str(seq).encode(), "event": b"tick"} for seq in range(1, count + 1)
        ]
    assert stored_checkpoints(tmp_path) == {"alpha": "50", "beta": "30"}


def test_a_topic_template_gives_each_connection_its_topic_and_dead_letters_their_own(
    broker: TansuBroker, topic: str, tmp_path: Path, sse_server: SSEServer, sink: KafkaSink,
    sse_client_for: Callable[..., SSEClient],
) -> None:
    table = kafka_table(broker.bootstrap, f"{topic}.{{connection}}", f'dead_letter_topic = "{topic}.dead"\n')
    client = sse_client_for(make_config(tmp_path, table))
    for name in ("alpha", "beta"):
        drain(client, name, sse_server.url(f"/feed/{name}?count=3&interval=0"))
    for name in ("alpha", "beta"):
        assert [json.loads(m.value)["feed"] for m in broker.consume(f"{topic}.{name}", 3)] == [name] * 3  # type: ignore[arg-type]
    poison = SSEResponse("9", "message", {"n": 9}, "", 'id: 9\ndata: {"n": 9}')
    connection = SimpleNamespace(id="alpha")
    assert sink.sseplug_dead_letter(poison, connection, "jsonl", OSError("disk full"), 3) is True  # type: ignore[arg-type]
    (message,) = broker.consume(f"{topic}.dead", 1)
    letter = json.loads(message.value)  # type: ignore[arg-type]
    assert message.key == b"alpha" and (letter["plugin"], letter["attempts"]) == ("jsonl", 3)
    assert letter["error"] == "OSError: disk full" and letter["event"]["data"] == {"n": 9}


def dead_letter_through_the_hook(tmp_path: Path, table: str, connection_id: str = "c") -> Any:
    """``pm.hook.sseplug_dead_letter`` on a runner-like manager: a fresh sink, then the built-in
    ``deadletter`` last; the sink is configured with ``[plugins.kafka]`` holding ``table``."""
    pm = create_plugin_manager(builtins=("deadletter",), load_entry_points=False, extra=[("kafka", KafkaSink())])
    pm.configure(make_config(tmp_path, table))
    poison = SSEResponse("9", "tick", {"n": 9}, "", 'id: 9\nevent: tick\ndata: {"n": 9}')
    try:
        return pm.hook.sseplug_dead_letter(event=poison, connection=SimpleNamespace(id=connection_id),
                                           plugin="jsonl", error=OSError("disk full"), attempts=3)
    finally:
        pm.unconfigure()


def test_sseplug_dead_letter_answers_first_with_dead_letter_topic_else_leaves_it_to_the_builtin(
    broker: TansuBroker, topic: str, tmp_path: Path
) -> None:
    builtin_file = tmp_path / ".sseplug" / deadletter.FILENAME  # the config's default state_dir
    table = kafka_table(broker.bootstrap, topic, f'dead_letter_topic = "{topic}.dead.{{connection}}"\n')
    assert dead_letter_through_the_hook(tmp_path, table) is True
    (message,) = broker.consume(f"{topic}.dead.c", 1)
    letter = json.loads(message.value)  # type: ignore[arg-type]
    assert message.key == b"c" and letter["time"].endswith("Z")
    assert {k: letter[k] for k in ("connection", "plugin", "attempts", "error")} == {
        "connection": "c", "plugin": "jsonl", "attempts": 3, "error": "OSError: disk full"}
    assert {k: letter["event"][k] for k in ("id", "event", "data")} == {"id": "9", "event": "tick", "data": {"n": 9}}
    assert not builtin_file.exists()  # firstresult: the built-in was not asked

    assert dead_letter_through_the_hook(tmp_path, kafka_table(broker.bootstrap, topic)) is True  # the built-in's
    assert [json.loads(line)["event"]["id"] for line in builtin_file.read_text().splitlines()] == ["9"]


def test_sseplug_dead_letter_raises_when_the_broker_does_not_acknowledge(tmp_path: Path) -> None:
    nobody = f"127.0.0.1:{free_port()}"  # nothing listens there
    table = kafka_table(nobody, "t", 'dead_letter_topic = "dead"\ndelivery_timeout_ms = 1000\n')
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="did not reach topic 'dead'"):
        dead_letter_through_the_hook(tmp_path, table)
    assert time.monotonic() - started < 1.0 + 5.0  # the delivery timeout, plus start-up and margin
    assert not (tmp_path / ".sseplug").exists()  # not passed on to the built-in: the connection stops


def test_dry_run_validates_and_creates_no_producer(tmp_path: Path) -> None:
    plugin = KafkaSink(producer_factory=lambda settings: pytest.fail("no producer under sseplug check"))
    table = kafka_table("127.0.0.1:1", "sse.{connection}", 'dead_letter_topic = "dead"')
    plugin.sseplug_configure(dataclasses.replace(make_config(tmp_path, table), dry_run=True))
    assert plugin.settings is None and plugin._poller is None
    with pytest.raises(ConfigError) as caught:
        plugin.sseplug_configure(dataclasses.replace(make_config(tmp_path, kafka_table("a:1", "sse.{id}")),
                                                     dry_run=True))
    assert caught.value.key == "plugins.kafka.topic" and caught.value.path == str(tmp_path / "run.toml")


def test_values_are_text_or_compact_json_and_headers_carry_id_and_type(
    broker: TansuBroker, topic: str, tmp_path: Path, sse_server: SSEServer, sink: KafkaSink,
    sse_client_for: Callable[..., SSEClient],
) -> None:
    body = [
        b"retry: 10\n\n",
        b'id: 1\ndata: {"n": 1, "s": "caf\xc3\xa9"}\n\n',
        b"id: 2\nevent: note\ndata: [DONE]\n\n",
        b'data: "quoted"\n\n',
        b"id\ndata: line one\ndata: line two\n\n",  # a bare "id" field resets the id to ""
    ]
    sse_server.script("/s", Response(body=body), DONE)
    client = sse_client_for(make_config(tmp_path, kafka_table(broker.bootstrap, topic)))
    got = drain(client, "values", sse_server.url("/s"))
    assert [e.data for e in got] == [{"n": 1, "s": "café"}, "[DONE]", "quoted", "line one\nline two"]
    messages = broker.consume(topic, 4)
    assert [(m.key, m.value, m.headers) for m in messages] == [
        (b"values", '{"n":1,"s":"café"}'.encode(), {"id": b"1", "event": b"message"}),
        (b"values", b"[DONE]", {"id": b"2", "event": b"note"}),
        (b"values", b"quoted", {"id": b"2", "event": b"message"}),
        (b"values", b"line one\nline two", {"id": b"", "event": b"message"}),
    ]


# -- checkpoints ----------------------------------------------------------------------------------


def test_checkpoint_is_saved_only_after_the_broker_acknowledged_the_whole_batch(
    broker: TansuBroker, topic: str, tmp_path: Path, sse_server: SSEServer, sink: KafkaSink,
    checkpoints: SQLiteCheckpoints,
    register_plugin: Callable[..., object], sse_client_for: Callable[..., SSEClient],
) -> None:
    class Probe:
        """Records, at each checkpoint, what the kafka sink still waits for."""

        def __init__(self) -> None:
            self.handled: Counter[str] = Counter()
            self.seen: list[tuple[str, str, int, int, int]] = []

        @hookimpl
        def sseplug_handle_event(self, connection: Any) -> None:
            self.handled[connection.id] += 1

        def record(self, connection: Any, last_event_id: str) -> None:
            cid = connection.id
            self.seen.append((cid, last_event_id, sink.pending(cid), sink.acknowledged[cid], self.handled[cid]))

    class Store(Probe):
        """A checkpoint store, registered normally: runs after the kafka sink's tryfirst wait."""

        @hookimpl
        def sseplug_checkpoint_save(self, connection: Any, last_event_id: str) -> None:
            self.record(connection, last_event_id)

    class Early(Probe):
        """The control: tryfirst and registered after kafka, so pluggy runs it before the wait."""

        @hookimpl(tryfirst=True)
        def sseplug_checkpoint_save(self, connection: Any, last_event_id: str) -> None:
            self.record(connection, last_event_id)

    store, early = Store(), Early()
    register_plugin(store, "store")
    register_plugin(early, "early")
    for path in ("/a", "/b"):
        body = [
            b"retry: 10\n\n",
            b"id: 1\ndata: 1\n\n",
            0.1,
            b"id: 2\ndata: 2\n\nid: 3\ndata: 3\n\n",
            0.1,
            b"id: 4\ndata: 4\n\nid: 5\ndata: 5\n\nid: 6\ndata: 6\n\n",
        ]
        sse_server.script(path, Response(body=body), DONE)  # type: ignore[arg-type]
    # linger 50 ms holds every message back in the client for a while: a checkpoint that did not
    # wait for the acknowledgements would find them still pending
    config = make_config(tmp_path, kafka_table(broker.bootstrap, topic, "linger_ms = 50"))
    client = sse_client_for(config)
    jobs = [gevent.spawn(drain, client, name, sse_server.url(f"/{name}")) for name in ("a", "b")]
    gevent.joinall(jobs, timeout=TIMEOUT, raise_error=True)

    for name in ("a", "b"):
        mine = [row for row in store.seen if row[0] == name]
        # a batch is what one read brought: usually 1, 2-3, 4-6; the connection may join pieces
        # that arrived while a batch waited, so only the order and the last id are fixed
        ids = [int(row[1]) for row in mine]
        assert ids == sorted(set(ids)) and set(ids) <= {1, 3, 6} and ids[-1] == 6
        # nothing pending, and every message handled so far acknowledged, each time it ran
        assert [row[2:] for row in mine] == [(0, last, last) for last in ids]
    assert early.seen and all(row[2] > 0 for row in early.seen)  # before the wait: in flight
    assert stored_checkpoints(tmp_path) == {"a": "6", "b": "6"}
    assert len(broker.consume(topic, 12)) == 12


def test_checkpoint_save_is_tryfirst(sseplug_plugins: PluginManager, sink: KafkaSink) -> None:
    impls = sseplug_plugins.hook.sseplug_checkpoint_save.get_hookimpls()
    assert [impl.plugin_name for impl in impls if impl.tryfirst] == ["kafka"]


# -- a broker that is down ------------------------------------------------------------------------


def test_broker_gone_mid_stream_the_batch_is_not_checkpointed_and_the_connection_fails(
    tmp_path: Path, sse_server: SSEServer, sink: KafkaSink, checkpoints: SQLiteCheckpoints,
    register_plugin: Callable[..., object],
    sse_client_for: Callable[..., SSEClient],
) -> None:
    with running_broker(tmp_path / "lone-tansu.log") as lone:

        class StopBrokerAfterFirstBatch:
            def __init__(self) -> None:
                self.saved: list[str] = []

            @hookimpl
            def sseplug_checkpoint_save(self, last_event_id: str) -> None:
                self.saved.append(last_event_id)
                if last_event_id == "3":
                    lone.stop()  # signals its pid and waits for the exit (cooperatively)

        probe = StopBrokerAfterFirstBatch()
        register_plugin(probe, "stopper")
        body = [
            b"retry: 10\n\nid: 1\ndata: a\n\nid: 2\ndata: b\n\nid: 3\ndata: c\n\n",
            0.1,
            b"id: 4\ndata: d\n\nid: 5\ndata: e\n\n",
            30.0,
        ]
        sse_server.script("/s", Response(body=body))  # type: ignore[arg-type]
        table = kafka_table(lone.bootstrap, "gone", "linger_ms = 0\ndelivery_timeout_ms = 1000")
        client = sse_client_for(make_config(tmp_path, table))
        started = time.monotonic()
        with HubWatch() as watch, pytest.raises(PluginError) as caught:
            drain(client, "s", SSERequest(sse_server.url("/s"), retry=False))
        elapsed = time.monotonic() - started
    error = caught.value
    assert (error.plugin, error.hook, error.connection_id) == ("kafka", "sseplug_checkpoint_save", "s")
    assert "'kafka'" in str(error) and "not checkpointed" in str(error)
    assert probe.saved == ["3"]  # the store after kafka never saw "5"
    assert stored_checkpoints(tmp_path) == {"s": "3"}
    assert sink.failed["s"] == 2 and sink.pending("s") == 0
    assert elapsed < 1.0 + 3.0, elapsed  # the delivery timeout, plus start-up and margin
    assert watch.ticks > 20 and watch.longest < MAX_HUB_STALL, watch.longest


def test_broker_never_reachable_fails_the_first_batch_without_a_checkpoint(
    tmp_path: Path, sse_server: SSEServer, sink: KafkaSink, checkpoints: SQLiteCheckpoints,
    sse_client_for: Callable[..., SSEClient],
) -> None:
    nobody = f"127.0.0.1:{free_port()}"  # nothing listens there
    client = sse_client_for(make_config(tmp_path, kafka_table(nobody, "t", "delivery_timeout_ms = 1000")))
    started = time.monotonic()
    with HubWatch() as watch, pytest.raises(PluginError, match=r"plugin 'kafka' raised in sseplug_checkpoint_save"):
        drain(client, "s", SSERequest(sse_server.url("/feed/s?count=5&interval=0"), retry=False))
    assert time.monotonic() - started < 1.0 + 3.0
    assert stored_checkpoints(tmp_path) == {}
    assert sink.failed["s"] >= 1 and sink.acknowledged["s"] == 0  # the first batch: one read, 1 to 5 events
    # waiting out the delivery timeout (1 s) never stalled the hub: a blocking flush would have
    assert watch.longest < MAX_HUB_STALL, watch.longest


# -- the gevent hub -------------------------------------------------------------------------------


def test_hub_never_stalls_while_producing_2000_events(
    broker: TansuBroker, topic: str, tmp_path: Path, sse_server: SSEServer, sink: KafkaSink,
    sse_client_for: Callable[..., SSEClient],
) -> None:
    client = sse_client_for(make_config(tmp_path, kafka_table(broker.bootstrap, topic)))
    with HubWatch() as watch:
        got = drain(client, "hub", sse_server.url("/feed/hub?count=2000&interval=0"))
    assert len(got) == 2000 and sink.acknowledged["hub"] == 2000 and sink.pending() == 0
    assert watch.ticks > 0 and watch.longest < MAX_HUB_STALL, watch.longest
    messages = broker.consume(topic, 2000)
    assert [json.loads(m.value)["seq"] for m in messages] == list(range(1, 2001))  # type: ignore[arg-type]


# -- life cycle -----------------------------------------------------------------------------------


def test_unconfigure_drops_the_producer_and_a_new_configure_starts_over(
    broker: TansuBroker, topic: str, tmp_path: Path, sse_server: SSEServer, sink: KafkaSink,
    sse_client_for: Callable[..., SSEClient],
) -> None:
    client = sse_client_for(make_config(tmp_path, kafka_table(broker.bootstrap, topic)))
    drain(client, "once", sse_server.url("/feed/once?count=3&interval=0"))
    client.shutdown()
    assert sink.settings is None and repr(sink) == "<KafkaSink inactive>"
    client = sse_client_for(make_config(tmp_path, kafka_table(broker.bootstrap, topic)))
    drain(client, "twice", sse_server.url("/feed/twice?count=2&interval=0"))
    assert sink.acknowledged == Counter({"twice": 2})
    assert Counter(m.key for m in broker.consume(topic, 5)) == {b"once": 3, b"twice": 2}


def test_library_use_without_config_produces_nothing(
    sse_server: SSEServer, sink: KafkaSink, sse_client_for: Callable[..., SSEClient]
) -> None:
    client = sse_client_for(None)
    assert len(drain(client, "lib", sse_server.url("/feed/lib?count=5&interval=0"))) == 5
    assert sink.settings is None and sink._producer is None and not sink.acknowledged


def test_config_without_a_kafka_table_leaves_the_plugin_inactive(tmp_path: Path) -> None:
    plugin = KafkaSink(producer_factory=lambda settings: pytest.fail("no producer without a table"))
    plugin.sseplug_configure(make_config(tmp_path, None))
    connection = SimpleNamespace(id="c", last_event_id="")
    plugin.sseplug_handle_event(SSEResponse(id="1", event="message", data="x"), connection)  # type: ignore[arg-type]
    plugin.sseplug_checkpoint_save(connection)  # type: ignore[arg-type]
    plugin.sseplug_unconfigure()
    assert plugin.pending() == 0


# -- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ('topic = "t"', "bootstrap_servers"),
        ('bootstrap_servers = "127.0.0.1:9092"', "topic"),
        ('bootstrap_servers = ""\ntopic = "t"', "bootstrap_servers"),
        ('bootstrap_servers = []\ntopic = "t"', "bootstrap_servers"),
        ('bootstrap_servers = ["a:1", 2]\ntopic = "t"', "bootstrap_servers[1]"),
        ('bootstrap_servers = "a:1, b c:2"\ntopic = "t"', "bootstrap_servers"),
        ('bootstrap_servers = 9092\ntopic = "t"', "bootstrap_servers"),
        ('bootstrap_servers = "a:1"\ntopic = ""', "topic"),
        ('bootstrap_servers = "a:1"\ntopic = "has space"', "topic"),
        ('bootstrap_servers = "a:1"\ntopic = ".."', "topic"),
        ('bootstrap_servers = "a:1"\ntopic = 3', "topic"),
        ('bootstrap_servers = "a:1"\ntopic = "t"\nacks = "most"', "acks"),
        ('bootstrap_servers = "a:1"\ntopic = "t"\nacks = 2', "acks"),
        ('bootstrap_servers = "a:1"\ntopic = "t"\nacks = true', "acks"),
        ('bootstrap_servers = "a:1"\ntopic = "t"\nacks = "1"', "acks"),
        ('bootstrap_servers = "a:1"\ntopic = "t"\nlinger_ms = -1', "linger_ms"),
        ('bootstrap_servers = "a:1"\ntopic = "t"\nlinger_ms = 1.5', "linger_ms"),
        ('bootstrap_servers = "a:1"\ntopic = "t"\nlinger_ms = false', "linger_ms"),
        ('bootstrap_servers = "a:1"\ntopic = "t"\nclient_id = ""', "client_id"),
        ('bootstrap_servers = "a:1"\ntopic = "t"\nclient_id = 7', "client_id"),
        ('bootstrap_servers = "a:1"\ntopic = "t"\ndelivery_timeout_ms = 0', "delivery_timeout_ms"),
        ('bootstrap_servers = "a:1"\ntopic = "t"\ndelivery_timeout_ms = "30s"', "delivery_timeout_ms"),
        ('bootstrap_servers = "a:1"\ntopic = "t"\nlinger_ms = 100\ndelivery_timeout_ms = 100', "delivery_timeout_ms"),
        ('bootstrap_servers = "a:1"\ntopic = "t"\nlinger = 5', "linger"),
        ('bootstrap_servers = "a:1"\ntopic = "sse.{id}"', "topic"),
        ('bootstrap_servers = "a:1"\ntopic = "sse.{connection"', "topic"),
        ('bootstrap_servers = "a:1"\ntopic = "t"\ndead_letter_topic = "has space"', "dead_letter_topic"),
    ],
)
def test_bad_config_raises_config_error_naming_the_key(tmp_path: Path, table: str, key: str) -> None:
    plugin = KafkaSink(producer_factory=lambda settings: pytest.fail("no producer for a bad config"))
    error = sink_kit.configure_error(plugin, make_config(tmp_path, table))
    assert error.key == f"plugins.kafka.{key}" and error.path == str(tmp_path / "run.toml")
    assert plugin.settings is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('topic = "t"',
         'missing key \'bootstrap_servers\'; e.g. bootstrap_servers = ["10.0.0.1:9092", "10.0.0.2:9092"]'),
        ('bootstrap_servers = 9092\ntopic = "t"',
         "expected an array of strings (or one string of them separated by ','), got 9092 (integer); "
         'e.g. bootstrap_servers = ["10.0.0.1:9092", "10.0.0.2:9092"]'),
        ('bootstrap_servers = "a:1, b c:2"\ntopic = "t"',
         "expected host:port, a comma-separated string of them or an array of them, got 'a:1, b c:2'; "
         'e.g. bootstrap_servers = ["10.0.0.1:9092", "10.0.0.2:9092"]'),
        ('bootstrap_servers = "a:1"\ntopic = "t"\nacks = "most"',
         'expected one of "all", -1, 1, 0, got "most" (string); e.g. acks = "all"'),
        ('bootstrap_servers = "a:1"\ntopic = "t"\nlinger_ms = -1',
         "expected an integer from 0 to 900000, got -1 (integer); e.g. linger_ms = 5"),
        ('bootstrap_servers = "a:1"\ntopic = "t"\ndelivery_timeout_ms = "30s"',
         'expected an integer from 1 to 2147483647, got "30s" (string); e.g. delivery_timeout_ms = 30000'),
        ('bootstrap_servers = "a:1"\ntopic = "t"\nlinger = 5',
         "unknown key 'linger' in [plugins.kafka] (did you mean 'linger_ms'?); known keys: bootstrap_servers, topic, "
         "acks, linger_ms, client_id, delivery_timeout_ms, dead_letter_topic"),
    ],
)
def test_config_errors_say_what_was_expected_and_give_an_example(tmp_path: Path, table: str, message: str) -> None:
    plugin = KafkaSink(producer_factory=lambda settings: pytest.fail("no producer for a bad config"))
    assert sink_kit.configure_error(plugin, make_config(tmp_path, table)).message == message


def test_bad_config_fails_when_the_plugins_are_configured(
    tmp_path: Path, sink: KafkaSink, sseplug_plugins: PluginManager
) -> None:
    with pytest.raises(ConfigError, match=r"plugins\.kafka\.topic"):
        sseplug_plugins.configure(make_config(tmp_path, 'bootstrap_servers = "a:1"'))


def test_settings_become_the_producer_config(tmp_path: Path) -> None:
    made: list[dict[str, Any]] = []

    class Idle:
        def poll(self, timeout: float) -> int:
            return 0

        def __len__(self) -> int:
            return 0

    def factory(settings: dict[str, Any]) -> Any:
        made.append(settings)
        return Idle()

    table = ('bootstrap_servers = ["10.0.0.1:9092", "10.0.0.2:9093"]\ntopic = "events"\nacks = 1\n'
             'linger_ms = 20\nclient_id = "runner-1"\ndelivery_timeout_ms = 5000')
    plugin = KafkaSink(producer_factory=factory)
    plugin.sseplug_configure(make_config(tmp_path, table))
    plugin.close()
    (config,) = made
    assert {name: value for name, value in config.items() if name not in ("error_cb", "logger")} == {
        "bootstrap.servers": "10.0.0.1:9092,10.0.0.2:9093",
        "client.id": "runner-1",
        "acks": "1",
        "linger.ms": 20,
        "delivery.timeout.ms": 5000,
        "enable.idempotence": False,
        "max.in.flight.requests.per.connection": 1,
    }
    assert callable(config["error_cb"]) and config["logger"].name == "sseplug.kafka.librdkafka"


@pytest.mark.parametrize(("acks", "expected"), [('"all"', "all"), ("-1", "all"), ("1", "1"), ("0", "0")])
def test_acks_values(tmp_path: Path, acks: str, expected: str) -> None:
    config = make_config(tmp_path, f'bootstrap_servers = "a:1,b:2"\ntopic = "t"\nacks = {acks}')
    settings = sseplug_kafka._settings(config)
    assert settings == KafkaSettings(bootstrap_servers=("a:1", "b:2"), topic="t", acks=expected)


def test_a_client_refusing_the_settings_is_a_config_error(tmp_path: Path) -> None:
    def refuse(settings: dict[str, Any]) -> Any:
        raise confluent_kafka.KafkaException(confluent_kafka.KafkaError(confluent_kafka.KafkaError._INVALID_ARG))

    plugin = KafkaSink(producer_factory=refuse)
    with pytest.raises(ConfigError) as caught:
        plugin.sseplug_configure(make_config(tmp_path, kafka_table("a:1", "t")))
    assert caught.value.key == "plugins.kafka" and plugin.settings is None


# -- distribution ---------------------------------------------------------------------------------


def test_a_template_must_make_a_topic_name_of_every_connection_id(tmp_path: Path) -> None:
    text = ('[[connections]]\nid = "ok"\nurl = "http://127.0.0.1:9/"\n[[connections]]\nid = "a:b"\n'
            'url = "http://127.0.0.1:9/"\n[plugins.kafka]\nbootstrap_servers = "a:1"\ntopic = "sse.{connection}"\n')
    with pytest.raises(ConfigError) as caught:
        KafkaSink().sseplug_configure(parse_config(text, path=tmp_path / "run.toml"))
    assert caught.value.key == "plugins.kafka.topic" and "for connection 'a:b', got 'sse.a:b'" in caught.value.message


def test_entry_point_names_the_module_instance() -> None:
    (point,) = [point for point in entry_points(group="sseplug") if point.name == "kafka"]
    assert point.value == "sseplug_kafka:plugin"
    assert point.load() is sseplug_kafka.plugin and isinstance(sseplug_kafka.plugin, KafkaSink)


def test_the_runner_routes_two_connections_to_their_jsonl_files_and_one_to_kafka(
    broker: TansuBroker, topic: str, tmp_path: Path, sse_server: SSEServer
) -> None:
    """Issue 15's routes in a real runner: each connection's events reach its sinks and no other."""
    from ..integration import runner_process as rp

    def feed(cid: str, sinks: str) -> str:
        url = sse_server.url(f"/feed/{cid}?count=5&interval=0")
        return f'[[connections]]\nid = "{cid}"\nurl = "{url}"\nreconnect = "on_error"\nsinks = {sinks}\n'

    config = tmp_path / "run.toml"
    config.write_text(
        '[runner]\nstate_dir = "state"\n\n'
        + feed("a", '["jsonl"]') + feed("b", '["jsonl"]') + feed("c", '["kafka"]')
        + '\n[plugins.jsonl]\npath = "out/{connection}.jsonl"\n'
        + f'\n[plugins.kafka]\nbootstrap_servers = "{broker.bootstrap}"\ntopic = "{topic}.{{connection}}"\n'
    )
    status, printed, err = rp.finish(rp.start("run", str(config), cwd=tmp_path), timeout=60)
    assert status == 0 and printed == [], err  # no stdout sink: jsonl and kafka took everything
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jsonl", "b.jsonl"]
    for cid in ("a", "b"):
        lines = [json.loads(line) for line in (tmp_path / "out" / f"{cid}.jsonl").read_text().splitlines()]
        assert [(line["connection"], line["data"]["seq"]) for line in lines] == [(cid, n) for n in range(1, 6)]
    messages = broker.consume(f"{topic}.c", 5)
    assert [json.loads(m.value)["feed"] for m in messages] == ["c"] * 5  # type: ignore[arg-type]
