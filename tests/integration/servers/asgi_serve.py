"""What the ASGI test servers share: their command line (``--port``, then uvicorn on 127.0.0.1),
reading a bounded int query parameter, and dropping a connection mid-body."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import uvicorn
from starlette.requests import Request


class AbortStream(Exception):
    """Raised inside a stream generator to make uvicorn drop the connection mid-body."""


def int_param(request: Request, name: str, default: int, maximum: int) -> int:
    """Return query parameter ``name`` as an int within ``0..maximum``, else ``default``."""
    try:
        value = int(request.query_params.get(name, default))
    except ValueError:
        return default
    return max(0, min(value, maximum))


async def abort() -> None:
    """Let the bytes already sent reach the socket, then fail the app: uvicorn closes the
    connection without the terminating chunk."""
    await asyncio.sleep(0.05)
    raise AbortStream("deliberate mid-stream abort")


def serve(app: Any, description: str | None) -> None:
    """Parse ``--port`` and serve ``app`` on 127.0.0.1 until killed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    uvicorn.run(app, host="127.0.0.1", port=parser.parse_args().port, log_level="warning")
