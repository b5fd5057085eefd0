"""Third-party SSE test server: aiohttp with aiohttp-sse ``sse_response``."""

from __future__ import annotations

import argparse

from aiohttp import web
from aiohttp_sse import sse_response

MAX_COUNT = 10_000
RETRY_MS = 250

MULTILINE_EVENTS: list[tuple[str, str]] = [
    ("1", "line1\nline2\nline3"),
    ("2", "first\n\nlast"),
    ("3", "alpha\nomega"),
]


async def multiline(request: web.Request) -> web.StreamResponse:
    """Send a retry field, then three events with multi-line data and ids, then end."""
    async with sse_response(request) as resp:
        for index, (event_id, data) in enumerate(MULTILINE_EVENTS):
            await resp.send(data, id=event_id, retry=RETRY_MS if index == 0 else None)
    return resp


async def numbers(request: web.Request) -> web.StreamResponse:
    """Stream ``number`` events after Last-Event-ID up to ``count``, then end."""
    try:
        count = max(0, min(int(request.query.get("count", "5")), MAX_COUNT))
    except ValueError:
        count = 5
    try:
        last = int((request.headers.get("Last-Event-ID") or "0").strip() or "0")
    except ValueError:
        last = 0
    async with sse_response(request) as resp:
        for n in range(last + 1, count + 1):
            await resp.send(str(n), id=str(n), event="number")
    return resp


def make_app() -> web.Application:
    """Build the aiohttp application."""
    app = web.Application()
    app.router.add_get("/multiline", multiline)
    app.router.add_get("/numbers", numbers)
    return app


def main() -> None:
    """Parse ``--port`` and serve on 127.0.0.1."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(make_app(), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
