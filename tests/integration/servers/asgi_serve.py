"""The command line of the ASGI test servers: ``--port``, then uvicorn on 127.0.0.1."""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn


def serve(app: Any, description: str | None) -> None:
    """Parse ``--port`` and serve ``app`` on 127.0.0.1 until killed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    uvicorn.run(app, host="127.0.0.1", port=parser.parse_args().port, log_level="warning")
