"""Third-party LLM-style test server: Starlette ``StreamingResponse`` under uvicorn.

Speaks the wire formats LLM and agent services send, with no SSE library in between:

* ``POST /v1/chat/completions``: OpenAI chat completions with ``"stream": true``: one
  ``data: {chunk}`` line per chunk (no ``id``, no ``event``), then ``data: [DONE]``, then the
  response ends.
* ``POST /v1/messages``: Anthropic Messages: named events (``message_start``,
  ``content_block_delta``...), optionally an ``event: error`` mid-stream.
* ``POST /mcp`` and ``GET /mcp``: MCP Streamable HTTP: the POST answers with an event stream
  whose events carry ids; a GET with ``Last-Event-ID`` resumes after that id.
* ``GET /v1/stats?key=K``: what the server received for ``key`` (methods, paths, headers).

Query parameters make a stream misbehave on purpose; ``key`` names a per-test record (and the
counter ``fail`` uses), so tests can run against one session-wide server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from asgi_serve import abort, int_param, serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MAX_COUNT = 1000
HOLD_SECONDS = 30.0  # how long keep_open holds a finished stream open (a client should leave sooner)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_MEDIA_TYPE = "text/event-stream; charset=utf-8"

# key -> one record per request received with that key, in arrival order
RECEIVED: dict[str, list[dict[str, Any]]] = {}


def _flag(request: Request, name: str) -> bool:
    """Whether query parameter ``name`` is set to a true value (``1``, ``true``, ``yes``)."""
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error answer shaped like OpenAI's: ``{"error": {"message", "type"}}``."""
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status, headers=headers)


async def _record(request: Request) -> tuple[list[dict[str, Any]], bytes]:
    """Read the body and append what arrived to the records of the request's ``key``."""
    body = await request.body()
    records = RECEIVED.setdefault(request.query_params.get("key", ""), [])
    records.append({
        "method": request.method,
        "path": request.url.path,
        "last_event_id": request.headers.get("last-event-id"),
        "content_type": request.headers.get("content-type"),
        "accept": request.headers.get("accept"),
        "body": body.decode("utf-8", "replace"),
        "chunks_sent": 0,
        "closed_by_client": False,
    })
    return records, body


def _streaming_request(body: bytes, request: Request) -> dict[str, Any] | JSONResponse:
    """The posted JSON object asking to stream, or the 4xx answer a real API would give instead."""
    payload = _json_body(body, request.headers.get("content-type"))
    if isinstance(payload, Response) or payload.get("stream") is True:
        return payload
    return _error(400, 'this test server only streams: send "stream": true', "invalid_request_error")


def _json_body(body: bytes, content_type: str | None) -> dict[str, Any] | JSONResponse:
    """The posted JSON object, or the 4xx answer a real API would give instead."""
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        return _error(415, "expected Content-Type: application/json", "invalid_request_error")
    try:
        payload = json.loads(body)
    except ValueError:
        return _error(400, "the body is not valid JSON", "invalid_request_error")
    if not isinstance(payload, dict):
        return _error(400, "expected a JSON object", "invalid_request_error")
    return payload


def _sse(data: Any, event: str | None = None, event_id: str | None = None) -> bytes:
    """One event block; ``data`` is sent as compact JSON unless it is already a str."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    lines.append(f"data: {text}")
    return ("\n".join(lines) + "\n\n").encode("utf-8")


async def _hold() -> None:
    """Keep a finished response open, silently, until the client leaves (or ``HOLD_SECONDS``)."""
    await asyncio.sleep(HOLD_SECONDS)


class EventStream(StreamingResponse):
    """A ``text/event-stream`` ``StreamingResponse`` that notes in ``record`` when the client
    disconnected before the body ended (``closed_by_client``).

    Starlette runs ``listen_for_disconnect`` beside the body under uvicorn (ASGI spec 2.3) and
    cancels the body when it returns; it is cancelled itself when the body ends first.
    """

    def __init__(self, content: AsyncIterator[bytes], record: dict[str, Any]) -> None:
        super().__init__(content, media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)
        self.record = record

    async def listen_for_disconnect(self, receive: Any) -> None:
        await super().listen_for_disconnect(receive)
        self.record["closed_by_client"] = True


async def chat_completions(request: Request) -> Response:
    """OpenAI chat completions, streamed.

    Query: ``key``; ``n`` content chunks (default 3); ``fail=F`` answers the first F POSTs of
    ``key`` with 503 and ``Retry-After: 0``; ``drop_after=D`` aborts after D chunks;
    ``keep_open=1`` keeps the response open silently after ``data: [DONE]``.
    """
    records, raw = await _record(request)
    record = records[-1]
    payload = _streaming_request(raw, request)
    if isinstance(payload, Response):
        return payload
    posts = sum(1 for r in records if r["method"] == "POST" and r["path"] == request.url.path)
    if posts <= int_param(request, "fail", 0, MAX_COUNT):
        return _error(503, "The server is overloaded, try again", "server_error", {"Retry-After": "0"})

    count = int_param(request, "n", 3, MAX_COUNT)
    drop_after = int_param(request, "drop_after", 0, MAX_COUNT) if "drop_after" in request.query_params else None
    keep_open = _flag(request, "keep_open")
    created = int(time.time())
    model = str(payload.get("model", "test-model"))

    async def chunks() -> AsyncIterator[bytes]:
        for n in range(1, count + 1):
            if drop_after is not None and record["chunks_sent"] >= drop_after:
                await abort()
            yield _sse({
                "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": {"content": f"t{n}"},
                             "finish_reason": "stop" if n == count else None}],
            })
            record["chunks_sent"] += 1
            await asyncio.sleep(0.005)
        yield b"data: [DONE]\n\n"
        if keep_open:
            await _hold()

    return EventStream(chunks(), record)


async def messages(request: Request) -> Response:
    """Anthropic Messages, streamed.

    Query: ``key``; ``n`` text deltas (default 3); ``error=1`` sends an ``overloaded_error``
    ``event: error`` after two deltas; ``keep_open=1`` holds the response open after the last
    event (so only the client can end the stream there).
    """
    records, raw = await _record(request)
    record = records[-1]
    payload = _streaming_request(raw, request)
    if isinstance(payload, Response):
        return payload
    count = int_param(request, "n", 3, MAX_COUNT)
    error = _flag(request, "error")
    keep_open = _flag(request, "keep_open")

    async def events() -> AsyncIterator[bytes]:
        message: dict[str, Any] = {"id": "msg_test", "type": "message", "role": "assistant", "content": [],
                   "model": "test-model", "stop_reason": None, "usage": {"input_tokens": 1, "output_tokens": 0}}
        blocks = [
            _sse({"type": "message_start", "message": message}, "message_start"),
            _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                 "content_block_start"),
            _sse({"type": "ping"}, "ping"),
        ]
        for n in range(1, count + 1):
            if error and n == 3:
                blocks.append(_sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                                   "error"))
                break
            blocks.append(_sse({"type": "content_block_delta", "index": 0,
                                "delta": {"type": "text_delta", "text": f"t{n}"}}, "content_block_delta"))
        else:
            blocks += [
                _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
                _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": count}},
                     "message_delta"),
                _sse({"type": "message_stop"}, "message_stop"),
            ]
        for block in blocks:
            yield block
            record["chunks_sent"] += 1
            await asyncio.sleep(0.005)
        if keep_open:
            await _hold()

    return EventStream(events(), record)


async def mcp(request: Request) -> Response:
    """MCP Streamable HTTP: a JSON-RPC POST answered by an event stream with ids 1..count; a
    GET with ``Last-Event-ID`` resumes after that id (a GET without one is refused with 400).

    Query: ``key``; ``count`` events (default 5; the last one is the JSON-RPC result);
    ``drop_after=D`` aborts every response (POST and GET alike) after D events.
    """
    records, raw = await _record(request)
    record = records[-1]
    if "text/event-stream" not in (request.headers.get("accept") or ""):
        return _error(406, "Accept must include text/event-stream", "invalid_request_error")
    if request.method == "POST":
        payload = _json_body(raw, request.headers.get("content-type"))
        if isinstance(payload, Response):
            return payload
        if payload.get("jsonrpc") != "2.0" or "id" not in payload:
            return _error(400, "expected a JSON-RPC 2.0 request", "invalid_request_error")
        rpc_id = payload["id"]
        after = 0
    else:
        if raw:
            return _error(400, "a resuming GET carries no body", "invalid_request_error")
        try:
            after = int(request.headers["last-event-id"])
        except (KeyError, ValueError):
            return _error(400, "a GET resumes a stream: send Last-Event-ID", "invalid_request_error")
        rpc_id = None
        for earlier in records:
            if earlier["method"] == "POST":
                rpc_id = json.loads(earlier["body"]).get("id")
    count = int_param(request, "count", 5, MAX_COUNT)
    drop_after = int_param(request, "drop_after", 0, MAX_COUNT) if "drop_after" in request.query_params else None

    async def events() -> AsyncIterator[bytes]:
        for n in range(after + 1, count + 1):
            if drop_after is not None and record["chunks_sent"] >= drop_after:
                await abort()
            if n == count:
                message = {"jsonrpc": "2.0", "id": rpc_id, "result": {"content": [{"type": "text", "text": "done"}]}}
            else:
                message = {"jsonrpc": "2.0", "method": "notifications/progress",
                           "params": {"progressToken": "p", "progress": n, "total": count}}
            yield _sse(message, "message", str(n))
            record["chunks_sent"] += 1
            await asyncio.sleep(0.005)

    return EventStream(events(), record)


async def stats(request: Request) -> Response:
    """What the server received for ``key``: ``{"requests": [record, ...]}`` in arrival order."""
    return JSONResponse({"requests": RECEIVED.get(request.query_params.get("key", ""), [])})


app = Starlette(
    routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/mcp", mcp, methods=["GET", "POST"]),
        Route("/v1/stats", stats, methods=["GET"]),
    ]
)


if __name__ == "__main__":
    serve(app, __doc__)
