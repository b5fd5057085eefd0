"""A loopback SSE server on gevent that speaks raw HTTP/1.1, scripted byte for byte for tests and demos.

Its parts, each a private module: ``_framing`` (the ``Response`` and ``RecordedRequest`` values,
reading a request, writing a response), ``_routes`` (scripted paths and replayed recordings),
``_feeds`` (the demo feeds ``/feed/<name>`` and ``/flaky/<name>``) and ``_server`` (``SSEServer``:
the listener and its connections). Import the names from here: ``from sseplug.server import
SSEServer, Response, DROP``.
"""

from __future__ import annotations

from ._framing import DROP, RecordedRequest, Response
from ._server import SSEServer

__all__ = ["DROP", "Response", "RecordedRequest", "SSEServer"]
