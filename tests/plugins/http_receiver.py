"""A webhook receiver for the http plugin's tests: a small Flask app under werkzeug's own threaded
server, in its own process (so that it can really be restarted), failing on purpose.

    python tests/plugins/http_receiver.py --port P --log FILE [--fail 503,503,429,hang] [--reject-id 50]
                                          [--hang 3] [--tls CERT KEY [--client-ca CA]]

``POST /<anything>`` takes a JSON array or NDJSON of events. Its first requests answer as
``--fail`` lists them, one entry per request: a status (``503``, ``429`` with ``Retry-After: 1``)
or ``hang`` (sleeps ``--hang`` seconds, then answers 200 to a client that gave up). A request
holding an event whose id is ``--reject-id`` gets a 400 with a body echoing its Authorization
header (the plugin must not show it). ``POST /slow<anything>`` answers 200 after ``--hang``
seconds (logging a ``"started": true`` line before its sleep); ``POST /dead`` takes one dead
letter. Every request that got a 2xx is appended to ``--log`` as one JSON line (path,
Idempotency-Key, Content-Type, events), flushed at once.

``Receiver`` starts it on a free loopback port and stops it by pid.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


def app(log_path: Path, fail: list[str], reject_id: str | None, hang: float) -> Any:
    from flask import Flask, Response, request

    web = Flask("receiver")
    lock = threading.Lock()
    plan = list(fail)

    def events() -> list[dict[str, Any]]:
        body = request.get_data(as_text=True)
        if request.content_type == "application/x-ndjson":
            return [json.loads(line) for line in body.splitlines() if line]
        loaded = json.loads(body)
        return loaded if isinstance(loaded, list) else [loaded]

    def record(received: list[dict[str, Any]], started: bool = False) -> None:
        line = {"path": request.path, "started": started, "idempotency_key": request.headers.get("Idempotency-Key"),
                "content_type": request.content_type, "authorization": request.headers.get("Authorization"),
                "events": received}
        with lock, open(log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(line) + "\n")

    @web.post("/<path:rest>")
    def take(rest: str) -> Any:
        if rest == "dead":
            record(events())
            return {"taken": 1}
        if rest.startswith("slow"):
            record([], started=True)  # what the test waits for: the request is in its sleep
            time.sleep(hang)
            record(events())
            return {"taken": True}
        with lock:
            step = plan.pop(0) if plan else None
        if step == "hang":
            time.sleep(hang)
        elif step is not None:
            headers = {"Retry-After": "1"} if step == "429" else {}
            return Response(f"try later ({step})", status=int(step), headers=headers)
        received = events()
        if reject_id is not None and any(event.get("id") == reject_id for event in received):
            return Response(f"bad batch: event {reject_id} rejected; you sent {request.headers.get('Authorization')}",
                            status=400)
        record(received)
        return {"taken": len(received)}

    return web


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--fail", default="")
    parser.add_argument("--reject-id")
    parser.add_argument("--hang", type=float, default=3.0)
    parser.add_argument("--tls", nargs=2)
    parser.add_argument("--client-ca", help="with --tls: require a client certificate signed by this CA")
    args = parser.parse_args()
    import ssl

    from werkzeug.serving import make_server

    context = None
    if args.tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*args.tls)
        if args.client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(args.client_ca)
    server = make_server(HOST, args.port, app(args.log, [s for s in args.fail.split(",") if s], args.reject_id,
                                               args.hang), threaded=True, ssl_context=context)
    print("ready", flush=True)
    server.serve_forever()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Receiver:
    """The receiver in a subprocess; ``start()`` waits for its ready line (bounded), ``stop()`` by pid."""

    def __init__(self, workdir: Path, *args: str, tls: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        self.log_path = workdir / f"received-{self.port}.jsonl"
        self.args = args
        self.tls = tls
        self.proc: subprocess.Popen[str] | None = None

    def url(self, path: str) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}{path}"

    def start(self, *args: str) -> Receiver:
        command = [sys.executable, __file__, "--port", str(self.port), "--log", str(self.log_path),
                   *(args or self.args), *(("--tls", *self.tls) if self.tls else ())]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.proc.stdout is not None
        import gevent

        with gevent.Timeout(15, False):
            line = ""
            line = self.proc.stdout.readline()  # the receiver's first line, or "" if it died
        if line.strip() != "ready":
            self.stop()
            raise AssertionError(f"the receiver did not start: {line!r}")
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def received(self) -> list[dict[str, Any]]:
        """Every request that got a 2xx, in order."""
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text(encoding="utf-8").splitlines() if line]


if __name__ == "__main__":
    main()
