"""sseplug: a spec-exact Server-Sent Events consumer on gevent and urllib3, extended with pluggy plugins.

Importing sseplug never monkey-patches, and it does not import the network stack until
``SSEClient`` is first used, so the ``sseplug`` command can apply gevent's patches before
anything imports ``socket`` or ``ssl``. A program using ``SSEClient`` applies the patches itself,
first thing.
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from .errors import SSEError
from .hookspecs import hookimpl
from .models import RequestContentType, RequestMethodType, SSERequest, SSEResponse
from .parser import EventParser
from .route import ErrorPolicy, Route

if TYPE_CHECKING:
    from .client import SSEClient

__all__ = [
    "ErrorPolicy",
    "EventParser",
    "RequestContentType",
    "RequestMethodType",
    "Route",
    "SSEClient",
    "SSEError",
    "SSERequest",
    "SSEResponse",
    "hookimpl",
]


def __getattr__(name: str) -> Any:
    if name == "SSEClient":  # imported on first use: it pulls in gevent and urllib3
        from .client import SSEClient

        return SSEClient
    raise AttributeError(f"module 'sseplug' has no attribute {name!r}")
