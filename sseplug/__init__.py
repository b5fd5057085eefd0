"""sseplug: a spec-exact Server-Sent Events consumer on gevent and urllib3, extended with pluggy plugins.

Importing sseplug never monkey-patches: a program using ``SSEClient`` applies gevent's patches
itself, first thing (the ``sseplug`` command does so for you).
"""

from __future__ import annotations

__version__ = "0.1.0"

from .client import SSEClient
from .errors import SSEError
from .hookspecs import hookimpl
from .models import RequestContentType, RequestMethodType, SSERequest, SSEResponse
from .parser import EventParser

__all__ = [
    "EventParser",
    "RequestContentType",
    "RequestMethodType",
    "SSEClient",
    "SSEError",
    "SSERequest",
    "SSEResponse",
    "hookimpl",
]
