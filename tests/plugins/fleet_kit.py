"""What the fleet tests share: ``sseplug run`` subprocesses, Redis readers, a TCP proxy that can
cut a runner off Redis, and bounded waits (the upstream is fleet_upstream.py)."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import gevent
import gevent.monkey
import gevent.server
import redis

from sseplug_redis import checkpoint_key, lease_key

from ..integration import runner_process as rp
from .redis_server import free_port

TOKEN = re.compile(r"runner token ([0-9a-f]{32})")

def write_config(tmp_path: Path, connections: Iterable[tuple[str, str]], redis_table: str,
                 runner: str = "") -> Path:
    """A run config: ``[runner]`` (state_dir, shutdown_timeout, ``runner``'s lines), the
    connections, and ``[plugins.redis]`` holding ``redis_table``."""
    path = tmp_path / "run.toml"
    text = f'[runner]\nstate_dir = "state"\nshutdown_timeout = 5\n{runner}\n'
    text += "".join(f'[[connections]]\nid = "{cid}"\nurl = "{url}"\n\n' for cid, url in connections)
    path.write_text(text + f"[plugins.redis]\n{redis_table}\n")
    return path


class Runner:
    """One ``sseplug run`` subprocess, its stdout and stderr in files (read any time, never blocking)."""

    def __init__(self, config: Path, name: str, *args: str) -> None:
        self.name = name
        self.err_path = config.parent / f"{name}.err"
        self.out_path = config.parent / f"{name}.out"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([*rp.command(), *args, "run", str(config)], stdout=out, stderr=err,
                                         cwd=config.parent)

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def tokens(self) -> list[str]:
        """Every runner token it logged (a new one each time it rejoined)."""
        return TOKEN.findall(self.stderr) + re.findall(r"rejoining the fleet as ([0-9a-f]{32})", self.stderr)

    def token(self, timeout: float = 15.0) -> str:
        wait_until(lambda: self.tokens() or self.proc.poll() is not None, timeout,
                   lambda: f"{self.name} logged no token within {timeout}s:\n{self.stderr}")
        assert self.proc.poll() is None, f"{self.name} exited:\n{self.stderr}"
        return self.tokens()[0]

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"{self.name} did not exit within {timeout}s:\n{self.stderr[-3000:]}")
            gevent.sleep(0.05)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen one too
            self.proc.kill()
            self.proc.wait(timeout=10)

    def rss_kib(self) -> int:
        """Resident set size, from /proc."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


def http_json(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    """(status, JSON body) of a GET, 4xx/5xx included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def owners(client: redis.Redis, ids: list[str]) -> dict[str, str | None]:
    """Stream id -> the token in its lease key (None: no lease)."""
    values = client.mget([lease_key(cid) for cid in ids])
    return {cid: None if value is None else value.decode() for cid, value in zip(ids, values)}


def checkpoints(client: redis.Redis, ids: list[str]) -> dict[str, str | None]:
    values = client.mget([checkpoint_key(cid) for cid in ids])
    return {cid: None if value is None else value.decode() for cid, value in zip(ids, values)}


def live_tokens(client: redis.Redis) -> set[str]:
    """Tokens whose session key exists."""
    return {key.decode().rpartition(":")[2] for key in client.keys("sseplug:runner:*")}


def wait_until(condition: Callable[[], Any], timeout: float, message: Any, step: float = 0.02) -> float:
    """Poll ``condition`` until true; the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message() if callable(message) else message)
        gevent.sleep(step)
    return time.monotonic()


def stream_ids(client: redis.Redis, key: str) -> list[int]:
    return [int(fields[b"id"]) for _, fields in client.xrange(key)]


def check_no_gap(ids: list[int], count: int, where: str) -> int:
    """Every id 1..count, new ids in order (each one more than the highest so far); the duplicates."""
    highest = 0
    for index, value in enumerate(ids):
        assert value <= highest + 1, f"{where}: gap before id {value} at entry {index} (highest so far {highest})"
        highest = max(highest, value)
    assert highest == count, f"{where}: ends at {highest}, expected {count}"
    return len(ids) - count


class Proxy:
    """A TCP proxy on loopback between a runner and Redis; ``cut()`` stops forwarding (both ways,
    sockets left open: a network that drops packets), ``heal()`` forwards again on new connections."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self.cut_off = False
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self.server = gevent.server.StreamServer(("127.0.0.1", self.port), self._serve)

    def __enter__(self) -> Proxy:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(timeout=1)
        self._close_all()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cut(self) -> None:
        self.cut_off = True

    def heal(self) -> None:
        """Forward again: the connections made during the cut are closed (they lost bytes)."""
        self._close_all()
        self.cut_off = False

    def _close_all(self) -> None:
        pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                try:
                    sock.close()
                except OSError:
                    pass

    def _serve(self, client: socket.socket, _address: Any) -> None:
        upstream = socket.create_connection(self.target)
        self._pairs.append((client, upstream))
        reader = gevent.spawn(self._pipe, upstream, client)
        self._pipe(client, upstream)
        reader.kill()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    return
                while self.cut_off:  # hold the bytes: nothing goes through until healed
                    gevent.sleep(0.05)
                    if source.fileno() < 0:
                        return
                sink.sendall(data)
        except OSError:
            return
