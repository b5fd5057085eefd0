"""``sseplug top [URL]``: a live terminal view of a running runner, read from its ``/status``.

One row per connection (state, events/s with a sparkline of the last minute, last event age,
reconnects, handler errors, dead letters), totals on top, refreshed every second. Keys: ``s``
cycles the sort column, ``r`` reverses it, ``q`` quits.
"""

from __future__ import annotations

import argparse
import json
import select
import sys
import termios
import time
import tty
import urllib.error
import urllib.request
from collections import deque
from typing import IO, Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

__all__ = ["DEFAULT_URL", "add_top_options", "top"]

DEFAULT_URL = "http://127.0.0.1:9100"
HISTORY = 60  # one sample a second: the sparkline's minute
SPARKS = "▁▂▃▄▅▆▇█"
SORTS = ("id", "state", "rate", "events", "errors")
_STATE_STYLE = {"open": "green", "failed": "bold red", "waiting": "yellow", "connecting": "yellow", "ended": "dim"}


def add_top_options(parser: argparse.ArgumentParser) -> None:
    """``sseplug top``'s options."""
    parser.add_argument("url", nargs="?", default=DEFAULT_URL,
                        help=f"the runner's http_listen address (default {DEFAULT_URL})")
    parser.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help="refresh every SECONDS")


def fetch(url: str) -> list[dict[str, Any]]:
    """The connections of ``url``'s ``/status``; ``OSError`` or ``ValueError`` when unreachable or wrong."""
    with urllib.request.urlopen(url.rstrip("/") + "/status", timeout=5) as response:
        document = json.loads(response.read())
    if not isinstance(document, dict) or not isinstance(document.get("connections"), list):
        raise ValueError("the answer has no connections list: is this an sseplug runner's http_listen?")
    connections: list[dict[str, Any]] = document["connections"]
    return connections


def sparkline(rates: deque[float]) -> str:
    """The rates as block characters, scaled to their maximum."""
    peak = max(rates, default=0.0)
    if peak <= 0:
        return SPARKS[0] * len(rates)
    return "".join(SPARKS[min(len(SPARKS) - 1, int(rate / peak * (len(SPARKS) - 1) + 0.5))] for rate in rates)


def _age(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "-"
    seconds = max(0.0, now - timestamp)
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


def _last_error(connection: dict[str, Any]) -> Text:
    """Why a connection that is not open is not: its last error (also one it reconnected after)."""
    if connection["state"] in ("open", "ended") or not connection.get("last_error"):
        return Text("")
    return Text(str(connection["last_error"]), style=_STATE_STYLE.get(connection["state"], ""))


class View:
    """The connections' history and how the table is sorted."""

    def __init__(self) -> None:
        self.rates: dict[str, deque[float]] = {}
        self.previous: dict[str, tuple[float, int]] = {}
        self.sort, self.reverse = "id", False

    def update(self, connections: list[dict[str, Any]], now: float) -> None:
        """Take a new ``/status`` reading: each connection's events per second since the last one."""
        for connection in connections:
            cid, events = connection["id"], connection["events"]
            before = self.previous.get(cid)
            rate = (events - before[1]) / max(now - before[0], 1e-9) if before else 0.0
            self.rates.setdefault(cid, deque(maxlen=HISTORY)).append(max(rate, 0.0))
            self.previous[cid] = (now, events)

    def render(self, url: str, connections: list[dict[str, Any]]) -> Group:
        """The screen: totals, then one row per connection in the chosen sort order."""
        now = time.time()
        keys = {
            "id": lambda c: c["id"], "state": lambda c: c["state"], "events": lambda c: c["events"],
            "rate": lambda c: self.rates.get(c["id"], [0.0])[-1],
            "errors": lambda c: c["handler_errors"] + c["dead_letters"],
        }
        rows = sorted(connections, key=keys[self.sort], reverse=self.reverse)
        states: dict[str, int] = {}
        for connection in connections:
            states[connection["state"]] = states.get(connection["state"], 0) + 1
        total_rate = sum(rates[-1] for rates in self.rates.values() if rates)
        summary = Text.assemble(
            (f"sseplug top  {url}  ", "bold"),
            f"{len(connections)} connections: ",
            ", ".join(f"{count} {state}" for state, count in sorted(states.items())) or "none",
            f"  |  {total_rate:.1f} events/s  |  {sum(c['events'] for c in connections)} events",
            f"  |  sort: {self.sort}{' (reversed)' if self.reverse else ''}  [s] sort  [r] reverse  [q] quit",
        )
        fleet = any(connection.get("lease") is not None for connection in connections)
        table = Table(expand=True)
        columns = [("connection", "left"), ("state", "left"), ("events/s", "right"), ("last minute", "left"),
                   ("events", "right"), ("last event", "right"), ("reconnects", "right"), ("errors", "right"),
                   ("dead letters", "right"), *([("lease", "left")] if fleet else []), ("last error", "left")]
        for column, justify in columns:
            table.add_column(column, justify=justify, no_wrap=column != "last error",  # type: ignore[arg-type]
                             min_width=len("connecting") if column == "state" else None)
        for connection in rows:
            rates = self.rates.get(connection["id"], deque())
            lease = ["held" if connection.get("lease") else "not held"] if fleet else []
            table.add_row(
                connection["id"], Text(connection["state"], style=_STATE_STYLE.get(connection["state"], "")),
                f"{rates[-1] if rates else 0.0:.1f}", sparkline(rates), str(connection["events"]),
                _age(connection["last_event_time"], now), str(connection["reconnects"]),
                str(connection["handler_errors"]), str(connection["dead_letters"]), *lease,
                _last_error(connection),
            )
        return Group(summary, table)

    def key(self, key: str) -> bool:
        """Apply a key press; False for ``q``."""
        if key == "q":
            return False
        if key == "s":
            self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        elif key == "r":
            self.reverse = not self.reverse
        return True


def top(args: argparse.Namespace, stdin: IO[str] | None = None) -> int:
    """Show the runner at ``args.url`` until ``q`` (0), or 1 with one line when it is unreachable."""
    stdin = stdin or sys.stdin
    view = View()
    try:
        connections = fetch(args.url)
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        print(f"sseplug top: cannot read {args.url.rstrip('/')}/status ({reason}); is the runner running with "
              "runner.http_listen set to that address?", file=sys.stderr)
        return 1
    view.update(connections, time.monotonic())
    saved = termios.tcgetattr(stdin) if stdin.isatty() else None
    try:
        if saved is not None:
            tty.setcbreak(stdin.fileno())
        with Live(view.render(args.url, connections), console=Console(), auto_refresh=False, screen=True) as live:
            next_poll = time.monotonic() + args.interval
            while True:
                ready, _, _ = select.select([stdin], [], [], max(0.0, next_poll - time.monotonic()))
                if ready:
                    key = stdin.read(1)
                    if not key or not view.key(key):
                        return 0
                if time.monotonic() >= next_poll:
                    next_poll += args.interval
                    try:
                        connections = fetch(args.url)
                    except (OSError, ValueError):
                        pass  # keep the last view; the runner may be restarting
                    else:
                        view.update(connections, time.monotonic())
                live.update(view.render(args.url, connections), refresh=True)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
