"""A real ``redis-server`` (Debian's package) on a free loopback port, started and stopped by pid."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import gevent
import pytest
import redis

from ..integration.thirdparty import free_port

HOST = "127.0.0.1"
START_TIMEOUT = 10.0
MISSING = (
    "redis-server is not installed, and the redis plugin's tests need a real one: run the test suite's "
    "set-up, tests/install.sh (it installs Debian's redis-server; .ci/run runs it), "
    "or `apt-get install -y redis-server`"
)


class RedisServer:
    """One ``redis-server`` process, without persistence unless ``appendonly`` (an append-only
    file synced every second, as docs/fleet.rst advises); ``start()`` waits until it answers PING."""

    def __init__(self, workdir: Path, port: int | None = None, *, appendonly: bool = False) -> None:
        self.workdir = workdir
        self.appendonly = appendonly
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"redis-{self.port}.log"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def client(self) -> redis.Redis:
        """A client for the test process (cooperative: the test process is gevent-patched)."""
        return redis.Redis(host=HOST, port=self.port, socket_timeout=5, socket_connect_timeout=5)

    def start(self) -> RedisServer:
        """Start on ``self.port`` (the same port again after ``kill()``) and wait for PING."""
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail(MISSING, pytrace=False)
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [executable, "--port", str(self.port), "--bind", HOST, "--save", "",
                 "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec",
                 "--dir", str(self.workdir), "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        client = self.client()
        try:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"redis-server exited with {self.proc.returncode}:\n{self._log()}")
                try:
                    if client.ping():
                        return self
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"redis-server did not answer PING within {START_TIMEOUT}s:\n{self._log()}")
                gevent.sleep(0.05)
        finally:
            client.close()

    def pause(self) -> None:
        """SIGSTOP the server: it keeps its sockets and answers nothing (unreachable, not refused)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause()``."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the server by pid and reap it (Redis going away without a word)."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM the server by pid, SIGKILL if it lingers, and reap it."""
        self._signal(signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def _log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError as error:
            return f"<no log: {error}>"
