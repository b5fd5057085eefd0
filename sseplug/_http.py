"""Opening a response: the request's headers, where a redirect leads, and the one call to urlopen.

``request_headers`` and ``next_hop`` are pure: headers and redirect decisions are values in,
values out, tested without a socket. ``open_response`` sends the request and follows the hops
``next_hop`` decides, within ``head_timeout``; ``check_response`` refuses a response that is
not an event stream. Credentials never follow a redirect to another origin (scheme, host or
port: urllib3's rule).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import urljoin, urlsplit

import gevent
import urllib3
from urllib3 import HTTPHeaderDict
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util import Retry, parse_url

from .errors import (
    CertificateError, ContentTypeError, HTTPStatusError, NetworkError, PluginError, RedirectError, SSEError,
)
from .models import SSERequest, header_problem
from .redaction import CREDENTIAL_HEADERS, Secret

__all__ = [
    "Hop", "HttpFor", "check_auth_headers", "check_response", "method_of", "next_hop", "open_response",
    "request_headers",
]

HttpFor = Callable[[str], urllib3.PoolManager]
"""Gives the urllib3 pool manager (direct or proxy) to use for a URL."""

CONNECT_TIMEOUT = 10.0
MAX_REDIRECTS = 10
ERROR_BODY_LIMIT = 1024
ERROR_BODY_TIMEOUT = 5.0  # an error response's body is only an excerpt for the message: never wait long for it
REDIRECTS = frozenset({301, 302, 303, 307, 308})
# what urllib3 makes of retries=False, redirect=False on every request (Retry.from_int), made once:
# a Retry is never changed (increment() returns a new one) and each response keeps the one it was
# given, so thousands of streams share this one instead of holding ~0.8 KB each
NO_RETRIES = Retry.from_int(False, redirect=False)
DEFAULT_PORTS = {"http": 80, "https": 443}


class Hop(NamedTuple):
    """The next request of a redirect: its method, absolute URL and headers, and whether the
    body is sent again (not once the method became GET)."""

    method: str
    url: str
    headers: HTTPHeaderDict
    keeps_body: bool


def method_of(request: SSERequest) -> str:
    """The request's method as a string (an enum member's value)."""
    return str(getattr(request.method, "value", request.method))


def check_auth_headers(results: Iterable[Any], *, connection_id: str | None = None,
                       url: str | None = None) -> list[Mapping[str, str]]:
    """The ``sseplug_auth_headers`` answers, each checked to be a mapping of headers HTTP can
    carry; a ``PluginError`` naming the hook and the header otherwise (never the value)."""
    hook = "sseplug_auth_headers"
    checked: list[Mapping[str, str]] = []
    for result in results:
        if not isinstance(result, Mapping):
            raise PluginError(f"{hook} returned a {type(result).__name__}, expected a mapping of headers",
                              hook=hook, connection_id=connection_id, url=url)
        for header, value in result.items():
            problem = header_problem(header, value)
            if problem is not None:
                raise PluginError(f"{hook} returned header {header!r}: {problem}",
                                  hook=hook, connection_id=connection_id, url=url)
        checked.append(result)
    return checked


def request_headers(
    request: SSERequest, auth: Iterable[Mapping[str, str]], last_event_id: str
) -> tuple[HTTPHeaderDict, set[str]]:
    """The headers of the next request (defaults, the request's, the auth plugins' answers in
    call order, Last-Event-ID), and the lower-case names of those that are credentials: the
    usual ones, those built from secrets (``${ENV}`` in the runner's config) and every header an
    auth plugin gave. The first auth plugin called wins a conflict."""
    headers = HTTPHeaderDict({"Accept": "text/event-stream", "Cache-Control": "no-cache"})
    credentials = set(CREDENTIAL_HEADERS)
    for layer in (request.headers, *reversed(list(auth))):
        for name, value in layer.items():
            headers[name] = value  # replaces a header of the same name whatever its case
            if layer is not request.headers or isinstance(value, Secret):
                credentials.add(name.lower())
    if last_event_id:
        # the spec says UTF-8; http.client would encode a str as Latin-1 and fail on most ids
        headers["Last-Event-ID"] = last_event_id.encode("utf-8")  # type: ignore[assignment]
    return headers, credentials


def origin(url: str) -> tuple[str, str | None, int | None]:
    """Scheme, host and port of ``url`` (the port made explicit), as urllib3 compares them."""
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or DEFAULT_PORTS.get(parts.scheme)


def next_hop(
    status: int, method: str, url: str, location: str, headers: Mapping[str, Any], credentials: Iterable[str],
    *, connection_id: str | None = None,
) -> Hop:
    """Where redirect ``status`` from ``url`` to ``location`` leads: 303 (and 301/302 after a
    POST) become a GET without body or Content-Type, as browsers do; the ``credentials`` headers
    are left out when the scheme, host or port changes. ``headers`` is not changed. A
    ``RedirectError`` when ``location`` is missing, malformed, or not http(s) with a host."""
    target = redirect_target(status, url, location, connection_id=connection_id)
    headers = HTTPHeaderDict(headers)
    if origin(target) != origin(url):
        for name in credentials:
            headers.pop(name, None)
    if status == 303 or (status in (301, 302) and method == "POST"):
        headers.pop("Content-Type", None)
        return Hop("GET", target, headers, keeps_body=False)
    return Hop(method, target, headers, keeps_body=True)


def redirect_target(status: int, url: str, location: str, *, connection_id: str | None = None) -> str:
    """The absolute URL a redirect points to; a ``RedirectError`` unless it is http(s) with a host."""
    if not location:
        raise RedirectError(
            f"HTTP {status} redirect without a Location header; fix the server or the URL",
            connection_id=connection_id, url=url,
        )
    try:
        target = urljoin(url, location)
        parts = urlsplit(target)
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number in range
    except ValueError as error:
        raise RedirectError(
            f"HTTP {status} redirect to a malformed Location {location!r} ({error}); fix the server",
            connection_id=connection_id, url=url,
        ) from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise RedirectError(
            f"HTTP {status} redirect to {target!r}, which is not an http:// or https:// URL with a "
            "host; an event stream can only be followed over HTTP",
            connection_id=connection_id, url=url,
        )
    return target


def open_response(
    http_for: HttpFor, request: SSERequest, headers: HTTPHeaderDict, credentials: set[str], *,
    resuming: bool = False, connection_id: str | None = None,
) -> urllib3.BaseHTTPResponse:
    """Send the request and follow its redirects by ``next_hop``; the response is not read yet.
    ``resuming``: GET ``resume_url`` instead of sending the request again (never re-POST).

    The whole exchange up to a complete response head (every hop) must fit in
    ``head_timeout``: neither a silent server nor one dripping its head byte by byte can
    hold the connection in ``connecting``. (One frame for the loop and the urlopen call: an idle
    stream's greenlet keeps the memory its deepest stack touched.)
    """
    if request.resume_url is not None and resuming:
        method, url, body = "GET", request.resume_url, None
    else:
        method, url, body = method_of(request), request.url, request.encoded_body()
    if body is not None and "Content-Type" not in headers:  # one given in headers is sent as given
        headers["Content-Type"] = str(getattr(request.content_type, "value", request.content_type))
    timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT, read=request.read_timeout)
    tls = request.tls_options()
    timer = gevent.Timeout(request.head_timeout)
    timer.start()
    try:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                http = http_for(url)
                pool: urllib3.PoolManager | urllib3.HTTPConnectionPool = http
                target = url
                if tls and url.startswith("https:"):  # a pool of its own for these TLS options
                    pool, target = http.connection_from_url(url, pool_kwargs=tls), parse_url(url).request_uri
                response = pool.urlopen(
                    method, target, body=body, headers=headers, timeout=timeout, retries=NO_RETRIES,
                    redirect=False, preload_content=False, decode_content=True,
                )
            except (Urllib3Error, OSError) as error:
                raise _cannot_connect(error, connection_id, url) from error
            if response.status not in REDIRECTS:
                return response
            location = response.headers.get("Location", "").strip()
            response.close()
            response.release_conn()
            hop = next_hop(response.status, method, url, location, headers, credentials, connection_id=connection_id)
            method, url, headers = hop.method, hop.url, hop.headers
            if not hop.keeps_body:
                body = None
    except gevent.Timeout as error:
        if error is not timer:
            raise
        raise NetworkError(
            f"no complete response head within head_timeout ({request.head_timeout:g} s): the server accepted "
            "the connection but did not answer in time; raise head_timeout if it is slow to start",
            connection_id=connection_id, url=request.url,
        ) from None
    finally:
        timer.close()
    raise RedirectError(
        f"more than {MAX_REDIRECTS} redirects; the server is redirecting in a loop",
        connection_id=connection_id, url=request.url,
    )


def _cannot_connect(error: BaseException, connection_id: str | None, url: str) -> SSEError:
    """The error for a request that failed before a response: ``CertificateError`` when the
    server's certificate was refused."""
    if certificate_refused(error):
        return CertificateError(
            f"the server's TLS certificate failed verification: {error}; give the CA bundle "
            "that signed it with verify (--cacert), or verify=False for a test server",
            connection_id=connection_id, url=url,
        )
    return NetworkError(f"cannot connect: {error}", connection_id=connection_id, url=url)


def certificate_refused(error: BaseException) -> bool:
    """Whether ``error`` (or what it wraps) is a failed certificate verification."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLCertVerificationError) or any(
            isinstance(arg, ssl.SSLCertVerificationError) for arg in cause.args
        ):
            return True
        reason = getattr(cause, "reason", None)  # urllib3's MaxRetryError; an SSLError's is a str
        cause = reason if isinstance(reason, BaseException) else cause.__cause__ or cause.__context__
    return False


def check_response(response: urllib3.BaseHTTPResponse, *, connection_id: str | None, url: str) -> None:
    """Raise the error for a response that is not an event stream (status first)."""
    facts: dict[str, Any] = {"headers": dict(response.headers), "connection_id": connection_id, "url": url}
    if response.status != 200:
        raise HTTPStatusError.for_status(response.status, body=error_body(response), **facts)
    content_type = response.headers.get("Content-Type")
    if (content_type or "").split(";")[0].strip().lower() != "text/event-stream":
        raise ContentTypeError(
            f"expected Content-Type text/event-stream, got {content_type!r}; "
            "is this URL an event stream?",
            content_type=content_type,
            body=error_body(response),
            **facts,
        )


def error_body(response: urllib3.BaseHTTPResponse) -> bytes:
    """The start of an error response's body, for the message; ``b""`` when it is slow to come."""
    timer = gevent.Timeout.start_new(ERROR_BODY_TIMEOUT)
    try:
        return response.read(ERROR_BODY_LIMIT)
    except (Urllib3Error, OSError):
        return b""
    except gevent.Timeout as error:
        if error is not timer:
            raise
        return b""
    finally:
        timer.close()
