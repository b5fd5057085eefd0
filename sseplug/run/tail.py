"""``sseplug tail URL``: a stream's events as they arrive, for a person, or as JSON lines for jq.

It is the library: ``SSEClient`` with the built-in plugins only (``json``, ``retry``; no installed
plugin acts), so the stream reconnects exactly as it does in a program.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

import gevent
import gevent.event

from ..errors import ConfigError, SSEError
from ..models import RECONNECT_MODES, RequestFieldError, SSERequest, SSEResponse
from ..route import Route
from .environment import expand

__all__ = [
    "EXIT_INTERRUPTED", "UsageError", "add_request_options", "add_tail_options", "follow", "request_from", "tail",
]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


class UsageError(Exception):
    """A bad option value: exit status 2, like argparse's own errors."""


def add_request_options(parser: argparse.ArgumentParser) -> None:
    """The options that make the request, shared by ``tail`` and ``record``."""
    parser.add_argument("url", help="the stream's http:// or https:// URL")
    parser.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                        help="a request header (repeatable); ${VAR} is taken from the environment")
    parser.add_argument("-X", "--method", default=None, help="the HTTP method (default GET, POST with a body)")
    body = parser.add_mutually_exclusive_group()
    body.add_argument("-d", "--data", help="the request body, sent as it is (text/plain unless -H gives one)")
    body.add_argument("--json-body", metavar="JSON", help="a JSON request body (application/json)")
    parser.add_argument("--last-event-id", default="", metavar="ID", help="resume after this event id")
    parser.add_argument("--reconnect", choices=[mode for mode in RECONNECT_MODES if mode],
                        help="when to reconnect (default: always for GET, on_error otherwise)")
    parser.add_argument("--end-data", action="append", default=[], metavar="TEXT",
                        help="data that ends the stream cleanly, e.g. [DONE] (repeatable)")
    parser.add_argument("--read-timeout", type=float, default=None, metavar="SECONDS",
                        help="seconds without a byte before reconnecting (default 300)")
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("-k", "--insecure", action="store_true", help="do not verify the server's certificate")
    tls.add_argument("--cacert", metavar="FILE", help="verify the server against this CA bundle")


def add_tail_options(parser: argparse.ArgumentParser) -> None:
    """``sseplug tail``'s options."""
    add_request_options(parser)
    parser.add_argument("--event", action="append", default=[], metavar="TYPE",
                        help="show only events of this type (repeatable)")
    parser.add_argument("--where", metavar="JMESPATH", help="show only events for which it is true (as the runner's)")
    parser.add_argument("--comments", action="store_true", help="show comments (heartbeats) too")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="one JSON object per line: id, event, data")
    shape.add_argument("--raw", action="store_true", help="the body bytes as received")
    parser.add_argument("-n", "--count", type=int, default=None, metavar="N", help="stop after N events shown")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="stop after SECONDS")


def request_from(args: argparse.Namespace, **callbacks: Any) -> SSERequest:
    """The ``SSERequest`` the request options describe; a bad value raises ``UsageError``."""
    headers: dict[str, str] = {}
    for header in args.header:
        name, colon, value = header.partition(":")
        if not colon or not name.strip():
            raise UsageError(f"-H {header!r}: expected 'Name: value'")
        headers[name.strip()] = value.strip()
    try:
        headers = expand({"-H": headers}, os.environ)["-H"]  # ${VAR} values become Secrets
    except ConfigError as error:
        raise UsageError(f"{(error.key or '-H').replace('.', ' ', 1)}: {error.message}") from None
    body: Any = args.data
    if args.json_body is not None:
        try:
            body = json.loads(args.json_body)
        except ValueError as error:
            raise UsageError(f"--json-body: not JSON ({error})") from None
    method = args.method or ("POST" if body is not None else "GET")
    verify: bool | str = False if args.insecure else (args.cacert or True)
    optional = {"read_timeout": args.read_timeout} if args.read_timeout is not None else {}
    try:
        return SSERequest(
            args.url, method=method, headers=headers, body=body, last_event_id=args.last_event_id,
            reconnect=args.reconnect, end_data=args.end_data, verify=verify, **optional, **callbacks,
        )
    except RequestFieldError as error:
        option = {"url": "URL", "body": "-d", "verify": "--cacert", "reconnect": "--reconnect", "headers": "-H"}.get(error.field)
        raise UsageError(f"{option or '--' + error.field.replace('_', '-')}: {error.message}") from None


class Printer:
    """Writes events (and comments) to ``out``: readable blocks on a terminal (JSON data
    pretty-printed and coloured), plain blocks when piped, or JSON lines."""

    def __init__(self, out: IO[str], *, as_json: bool, colour: bool) -> None:
        self.out, self.as_json = out, as_json
        self.console: Any = None
        if colour and not as_json:
            from rich.console import Console

            self.console = Console(file=out, highlight=False, soft_wrap=True)

    def event(self, event: SSEResponse) -> None:
        """Print one event: a JSON line, or its type, id and time over its data (coloured on a terminal)."""
        if self.as_json:
            self.out.write(json.dumps({"id": event.id, "event": event.event, "data": event.data},
                                      ensure_ascii=False, default=str) + "\n")
        else:
            stamp = time.strftime("%H:%M:%S")
            head = f"{event.event}" + (f"  id={event.id}" if event.id else "") + f"  {stamp}"
            data = event.data
            text = json.dumps(data, indent=2, ensure_ascii=False, default=str) if not isinstance(data, str) else data
            if self.console is not None:
                from rich.json import JSON
                from rich.text import Text

                self.console.print(Text(head, style="bold cyan"))
                self.console.print(JSON.from_data(data, default=str) if not isinstance(data, str) else Text(text))
                self.console.print()
            else:
                self.out.write(f"{head}\n{text}\n\n")
        self.out.flush()

    def comment(self, text: str) -> None:
        """Print one comment line (``--comments``)."""
        if self.as_json:
            self.out.write(json.dumps({"comment": text}, ensure_ascii=False) + "\n")
        elif self.console is not None:
            from rich.text import Text

            self.console.print(Text(f": {text}", style="dim"))
        else:
            self.out.write(f": {text}\n")
        self.out.flush()


def tail(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    """Run ``sseplug tail``: 0 on a clean end, 1 when the stream failed, 130 on Ctrl-C."""
    from .where import compile_where

    out = out or sys.stdout
    if args.count is not None and args.count < 1:
        raise UsageError("--count: expected a number >= 1")
    where = None
    if args.where is not None:
        try:
            where = compile_where(args.where)
        except ValueError as error:
            raise UsageError(f"--where: {error}") from None
    printer = Printer(out, as_json=args.json, colour=out.isatty())
    callbacks: dict[str, Callable[..., Any]] = {}
    if args.comments:
        callbacks["on_comment"] = printer.comment
    if args.raw:
        raw = getattr(out, "buffer", None)
        callbacks["on_bytes"] = (lambda chunk: (raw.write(chunk), raw.flush())) if raw else (
            lambda chunk: out.write(chunk.decode("utf-8", "replace")))
    request = request_from(args, **callbacks)
    route = Route(events=frozenset(args.event) if args.event else None, where=where)
    return follow("tail", request, route, None if args.raw else printer.event, count=args.count, timeout=args.timeout)


def follow(
    command: str,
    request: SSERequest,
    route: Route,
    on_event: Callable[[SSEResponse], Any] | None,
    *,
    count: int | None,
    timeout: float | None,
    plugins: Iterable[tuple[str, object]] = (),
) -> int:
    """Consume one stream with the built-in plugins (and ``plugins``) until it ends, ``count``
    events arrived, ``timeout`` seconds passed, or Ctrl-C: 0 on a clean end, 1 when the stream
    failed (one line on stderr), 130 on Ctrl-C."""
    from ..client import SSEClient
    from ..plugins import create_plugin_manager

    interrupted = gevent.event.Event()
    handler = gevent.signal_handler(signal.SIGINT, interrupted.set)
    with SSEClient(plugin_manager=create_plugin_manager(load_entry_points=False, extra=plugins)) as client:
        stream = client.connect(command, request, route=route)
        failures: list[SSEError] = []

        def consume() -> None:
            """Hand each event to ``on_event`` until the stream ends, ``count`` is reached, or it fails (kept in ``failures``)."""
            try:
                for shown, event in enumerate(stream, start=1):
                    if on_event is not None:
                        on_event(event)
                    if count is not None and shown >= count:
                        return
            except SSEError as failure:
                failures.append(failure)

        reader = gevent.spawn(consume)
        try:
            gevent.wait([reader, interrupted], timeout=timeout, count=1)  # type: ignore[type-var]  # both are waitable
        finally:
            handler.cancel()
            reader.kill()
        if interrupted.is_set():
            return EXIT_INTERRUPTED
        if failures:
            print(f"sseplug {command}: {failures[0]}", file=sys.stderr)
            return 1
        if reader.exception is not None:  # a bug: not a clean end
            raise reader.exception
    return 0
