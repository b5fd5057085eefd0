"""``sseplug demo``: the runner against the embedded loopback server, start to resume, in seconds.

Events go to stdout (one JSON line each, from the stdout sink); the story goes to stderr.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from .config import parse_config
from .runner import EXIT_OK, Runner
from ..server import SSEServer

__all__ = ["run_demo"]

CONFIG = """\
[runner]
pool_size = 10
state_dir = "{state}"
shutdown_timeout = 5

[[connections]]
id = "news"
url = "{base}/feed/news?count={news}&interval=0.1"

[[connections]]
id = "flaky"
url = "{base}/flaky/flaky?count=6&drop_every=3&interval=0.1"
"""


def run_demo(say: TextIO = sys.stderr) -> int:
    """Run the demo: two streams, a dropped connection resumed, then a restart resumed."""
    logging.getLogger("sseplug").setLevel(logging.WARNING)  # keep the story readable
    with SSEServer() as server, tempfile.TemporaryDirectory(prefix="sseplug-demo-") as tmp:
        state = Path(tmp) / "state"

        def run(news: int) -> int:
            """One run of the runner on the demo config, with ``news`` events in the news feed; its exit status."""
            text = CONFIG.format(state=state.as_posix(), base=server.url("").rstrip("/"), news=news)
            return Runner(parse_config(text, path=Path(tmp) / "demo.toml")).run()

        print(f"sseplug demo: embedded server on {server.url('')}", file=say)
        print("1. two streams: 'news' (5 events), 'flaky' (drops the connection every 3 events)", file=say)
        status = run(news=5)
        for request in server.requests_for("/flaky/flaky"):
            resume = request.headers.get("last-event-id")
            print(f"   flaky connected {'with Last-Event-ID: ' + resume if resume else 'fresh'}", file=say)
        print("2. restart: the feed now has 8 events; the runner resumes from its checkpoint", file=say)
        if status == EXIT_OK:
            status = run(news=8)
        resumed = server.requests_for("/feed/news")[-2].headers.get("last-event-id")
        print(f"   news resumed with Last-Event-ID: {resumed} (saved in {state.name}/checkpoints.sqlite3)", file=say)
        print(f"done: exit {status}", file=say)
        return status
