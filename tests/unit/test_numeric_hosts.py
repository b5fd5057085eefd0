"""The runner's resolver: numeric hosts answered inline, names by the hub's resolver."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from sseplug.run.numeric_hosts import NumericHostsInline


class Named:
    """A resolver that answers every name with one address, and remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[Any] = []

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        self.asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.7", port))]

    def close(self) -> str:
        return "closed"


@pytest.mark.parametrize("host", ["127.0.0.1", b"127.0.0.1", "::1", "fe80::1%lo"])
def test_a_numeric_host_is_answered_inline(host: Any) -> None:
    named = Named()
    answer = NumericHostsInline(named).getaddrinfo(host, 8000, 0, socket.SOCK_STREAM)
    address = answer[0][4]
    assert named.asked == [] and address[1] == 8000 and address[0].split("%")[0] in ("127.0.0.1", "::1", "fe80::1")


@pytest.mark.parametrize("host", ["localhost", "example.invalid", "1.2.3", None])
def test_anything_else_goes_to_the_hubs_resolver(host: Any) -> None:
    named = Named()
    resolver = NumericHostsInline(named)
    assert resolver.getaddrinfo(host, 80)[0][4] == ("192.0.2.7", 80) and named.asked == [host]
    assert resolver.close() == "closed"  # the rest of the resolver's interface is the wrapped one's
