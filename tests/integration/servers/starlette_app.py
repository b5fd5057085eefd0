"""Third-party SSE test server: sse-starlette ``EventSourceResponse`` under uvicorn."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from asgi_serve import abort, int_param, serve
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

MAX_COUNT = 10_000


def _last_event_id(request: Request) -> int:
    """Return the Last-Event-ID request header as an int, 0 when absent or invalid."""
    try:
        return int(request.headers.get("last-event-id", "0").strip() or "0")
    except ValueError:
        return 0


async def _number_events(start: int, stop: int) -> AsyncIterator[ServerSentEvent]:
    """Yield ``number`` events with ids ``start..stop`` inclusive."""
    for n in range(start, stop + 1):
        yield ServerSentEvent(data=str(n), event="number", id=str(n))
        await asyncio.sleep(0)


async def numbers(request: Request) -> Response:
    """Stream numbers after Last-Event-ID up to ``count``, then end the stream."""
    count = int_param(request, "count", 5, MAX_COUNT)
    return EventSourceResponse(_number_events(_last_event_id(request) + 1, count))


async def echo(request: Request) -> Response:
    """Send one event per key of the posted JSON object, in sorted key order."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return PlainTextResponse("expected application/json", status_code=415)
    try:
        body = json.loads(await request.body())
    except ValueError:
        return PlainTextResponse("invalid JSON", status_code=400)
    if not isinstance(body, dict):
        return PlainTextResponse("expected a JSON object", status_code=400)

    async def events() -> AsyncIterator[ServerSentEvent]:
        for key in sorted(body):
            yield ServerSentEvent(data=json.dumps(body[key]), event=key)

    return EventSourceResponse(events())


async def drop(request: Request) -> Response:
    """Like /numbers, but a fresh connection is aborted (no clean end) after ``drop_after`` events."""
    count = int_param(request, "count", 5, MAX_COUNT)
    drop_after = int_param(request, "drop_after", 2, MAX_COUNT)
    resumed = "last-event-id" in request.headers
    start = _last_event_id(request) + 1

    async def events() -> AsyncIterator[ServerSentEvent]:
        sent = 0
        async for event in _number_events(start, count):
            if not resumed and sent >= drop_after:
                await abort()
            yield event
            sent += 1

    return EventSourceResponse(events())


async def heartbeat(request: Request) -> Response:
    """``count`` events ``gap`` seconds apart while sse-starlette sends its own keep-alive
    comments (``: ping - <time>``) every ``ping`` seconds in between; then the stream ends."""
    count = int_param(request, "count", 3, MAX_COUNT)
    try:
        gap = min(max(float(request.query_params.get("gap", "0.3")), 0.0), 5.0)
        ping = min(max(float(request.query_params.get("ping", "0.05")), 0.01), 5.0)
    except ValueError:
        return PlainTextResponse("gap and ping are seconds", status_code=400)

    async def events() -> AsyncIterator[ServerSentEvent]:
        for n in range(1, count + 1):
            if n > 1:
                await asyncio.sleep(gap)
            yield ServerSentEvent(data=str(n), event="tick", id=str(n))

    return EventSourceResponse(events(), ping=ping)


app = Starlette(
    routes=[
        Route("/numbers", numbers, methods=["GET"]),
        Route("/echo", echo, methods=["POST"]),
        Route("/drop", drop, methods=["GET"]),
        Route("/heartbeat", heartbeat, methods=["GET"]),
    ]
)


if __name__ == "__main__":
    serve(app, __doc__)
