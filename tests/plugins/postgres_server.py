"""A real PostgreSQL server (Debian's postgresql 15 binaries) in a temporary directory, on a free
loopback port, started and stopped by pid.

``initdb`` makes a cluster whose user ``sseplug`` logs in over TCP with a password (SCRAM), so
the tests go through the same authentication as a deployment and a leaked password is findable.
The server runs in the foreground (``postgres -D``, what ``pg_ctl start`` runs), so the process
the test holds is the postmaster itself: ``stop()`` sends it SIGINT (pg_ctl's "fast" shutdown)
and reaps it. When the tests run as root, the binaries run as the ``postgres`` system user
(PostgreSQL refuses root), through ``setpriv``, which execs in place: the pid stays the same.
``fsync = off`` only makes the tests quicker: a crash of the *process* loses nothing with it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import gevent
import psycopg
import pytest

from ..integration.thirdparty import free_port

HOST = "127.0.0.1"
USER = "sseplug"
PASSWORD = "pg-pass-7d41c9e2"  # unique: finding it in any output can only mean a leak
DATABASE = "postgres"
START_TIMEOUT = 30.0
BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")
MISSING = (
    "PostgreSQL's server binaries (initdb, postgres) are not installed, and the postgres plugin's tests "
    "need a real server: run the test suite's set-up, tests/install.sh (it installs Debian's postgresql; "
    ".ci/run runs it), or `apt-get install -y postgresql`"
)


def binary(name: str) -> str:
    """The path of PostgreSQL server program ``name``; fails the test with what to install."""
    for directory in BIN_DIRS:
        path = Path(directory) / name
        if path.exists():
            return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(MISSING, pytrace=False)
    return found


class PostgresServer:
    """One PostgreSQL cluster in its own temporary directory; ``start()`` waits until it answers."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="sseplug-pg-"))  # /tmp: reachable by the postgres user
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as_root = os.geteuid() == 0
        if self._as_root:
            account = pwd.getpwnam("postgres")
            self._uid, self._gid = account.pw_uid, account.pw_gid
            os.chown(self.root, self._uid, self._gid)
        password_file = self.root / "password"
        password_file.write_text(PASSWORD + "\n")
        if self._as_root:
            os.chown(password_file, self._uid, self._gid)
        done = subprocess.run(
            [*self._prefix(), binary("initdb"), "-D", str(self.data), "-U", USER, "--pwfile", str(password_file),
             "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"],
            capture_output=True, text=True, timeout=120,
        )
        if done.returncode != 0:
            raise AssertionError(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    @property
    def dsn(self) -> str:
        """A libpq URI with the password written in it, as a user might put it in a config."""
        return f"postgresql://{USER}:{PASSWORD}@{HOST}:{self.port}/{DATABASE}"

    def connect(self, **kwargs: object) -> psycopg.Connection:
        """A client connection for the test itself (autocommit)."""
        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=5, **kwargs)  # type: ignore[arg-type]

    def _prefix(self) -> list[str]:
        if not self._as_root:
            return []
        return ["setpriv", f"--reuid={self._uid}", f"--regid={self._gid}", "--clear-groups", "--"]

    def start(self) -> PostgresServer:
        """Start on ``self.port`` (the same port again after ``stop()``) and wait until a query answers."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*self._prefix(), binary("postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-c", f"listen_addresses={HOST}", "-c", f"unix_socket_directories={self.root}",
                 "-c", "fsync=off", "-c", "max_connections=60", "-c", "shared_buffers=32MB"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"postgres exited with {self.proc.returncode}:\n{self._log()}")
            try:
                with self.connect() as db:
                    db.execute("SELECT 1")
                return self
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"postgres did not answer within {START_TIMEOUT}s:\n{self._log()}")
            gevent.sleep(0.05)

    def stop(self) -> None:
        """SIGINT the postmaster by pid (a fast shutdown: sessions are cut, transactions in flight
        roll back), SIGQUIT if it lingers, and reap it."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGQUIT)
            proc.wait(timeout=10)

    def remove(self) -> None:
        """Stop, then delete the cluster's directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError as error:
            return f"<no log: {error}>"
