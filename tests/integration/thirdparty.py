"""Pytest plugin: session fixtures running third-party SSE servers in subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVERS_DIR = Path(__file__).resolve().parent / "servers"
HOST = "127.0.0.1"
STARTUP_TIMEOUT = 20.0
POLL_INTERVAL = 0.05

_LOGS: dict[int, Path] = {}


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _read_log(path: Path) -> str:
    """Return the log file's text, or a note if it cannot be read."""
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        return f"<log unavailable: {exc}>"


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """Terminate ``proc`` by pid (terminate, wait 5 s, then kill) and delete its log."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    log = _LOGS.pop(proc.pid, None)
    if log is not None:
        log.unlink(missing_ok=True)


def start_server(script_name: str) -> tuple[str, subprocess.Popen[bytes]]:
    """Start ``servers/<script_name>`` on a free port and wait until it accepts TCP.

    The child runs ``[sys.executable, script, "--port", PORT]`` with stdout and
    stderr going to a temporary log file. Waits at most 20 s, polling every
    50 ms; if the process exits or time runs out it is stopped and
    ``pytest.fail`` is raised with the log contents. Returns
    ``("http://127.0.0.1:PORT", process)``; pass the process to
    :func:`stop_server` when done.
    """
    script = SERVERS_DIR / script_name
    port = free_port()
    fd, log_name = tempfile.mkstemp(prefix=f"sseplug-{script.stem}-", suffix=".log")
    log_path = Path(log_name)
    with os.fdopen(fd, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, str(script), "--port", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(SERVERS_DIR),
        )
    _LOGS[proc.pid] = log_path

    deadline = time.monotonic() + STARTUP_TIMEOUT
    problem = ""
    while not problem:
        if proc.poll() is not None:
            problem = f"exited with code {proc.returncode}"
            break
        try:
            with socket.create_connection((HOST, port), timeout=POLL_INTERVAL * 4):
                return f"http://{HOST}:{port}", proc
        except OSError:
            pass
        if time.monotonic() >= deadline:
            problem = f"did not accept connections within {STARTUP_TIMEOUT:.0f} s"
            break
        time.sleep(POLL_INTERVAL)

    log_text = _read_log(log_path)
    stop_server(proc)
    pytest.fail(f"{script_name} on port {port} {problem}; log:\n{log_text}", pytrace=False)


def _serve(script_name: str) -> Iterator[str]:
    """Run one server for the duration of a fixture, yielding its base URL."""
    url, proc = start_server(script_name)
    try:
        yield url
    finally:
        stop_server(proc)


@pytest.fixture(scope="session")
def starlette_server() -> Iterator[str]:
    """Base URL of the sse-starlette/uvicorn server (``servers/starlette_app.py``)."""
    yield from _serve("starlette_app.py")


@pytest.fixture(scope="session")
def aiohttp_server() -> Iterator[str]:
    """Base URL of the aiohttp/aiohttp-sse server (``servers/aiohttp_app.py``)."""
    yield from _serve("aiohttp_app.py")


@pytest.fixture(scope="session")
def flask_server() -> Iterator[str]:
    """Base URL of the Flask/gevent server (``servers/flask_app.py``)."""
    yield from _serve("flask_app.py")


@pytest.fixture(scope="session")
def openai_server() -> Iterator[str]:
    """Base URL of the LLM-style Starlette/uvicorn server (``servers/openai_app.py``)."""
    yield from _serve("openai_app.py")
