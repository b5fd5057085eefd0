"""Numeric addresses resolved in the calling greenlet: gevent's default resolver sends every
``getaddrinfo`` to its thread pool, even for ``127.0.0.1``, so each connect of thousands of
streams pays a thread hand-off and waits its turn in the pool; under load the connects come late
and in bunches. A host name still goes to the resolver the hub had."""

from __future__ import annotations

import ipaddress
from typing import Any, cast

from gevent import monkey

__all__ = ["NumericHostsInline", "resolve_numeric_hosts_inline"]

_getaddrinfo = monkey.get_original("socket", "getaddrinfo")


def _numeric(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    try:
        ipaddress.ip_address(host.partition("%")[0])  # an IPv6 scope ("fe80::1%eth0") is numeric too
    except ValueError:
        return False
    return True


class NumericHostsInline:
    """A gevent resolver: numeric hosts answered at once (the OS does not look them up), the
    rest by ``resolver``."""

    def __init__(self, resolver: Any) -> None:
        self.resolver = resolver

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        """``socket.getaddrinfo``: inline for a numeric host, else the wrapped resolver's."""
        if _numeric(host):
            return _getaddrinfo(host, port, *args, **kwargs)
        return self.resolver.getaddrinfo(host, port, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # gethostbyname, close, ...: the wrapped resolver's
        return getattr(self.resolver, name)


def resolve_numeric_hosts_inline() -> None:
    """Wrap the current thread's hub resolver (once)."""
    import gevent

    hub = gevent.get_hub()
    if not isinstance(hub.resolver, NumericHostsInline):
        hub.resolver = cast(Any, NumericHostsInline(hub.resolver))  # duck-typed: every other call is the wrapped one's
