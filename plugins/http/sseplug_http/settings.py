"""The ``[plugins.http]`` table: its keys, their meaning, and their validation (nothing sent)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sseplug.errors import ConfigError
from sseplug.redaction import Secret, public_url
from sseplug.run.environment import join_key

if TYPE_CHECKING:
    from sseplug.run.config import Config, TableReader

__all__ = ["FORMATS", "KEYS", "NAME", "SETTINGS", "HttpSettings", "read_settings"]

NAME = "http"
"""The plugin's name: entry point, ``[plugins.http]`` table, ``runner.plugins.disable`` entry."""

SETTINGS: dict[str, str] = {
    "url": "Required. The http:// or https:// URL events are POSTed to; may name {connection}.",
    "headers": "Headers sent with every request (${VAR} allowed); their values are shown nowhere.",
    "batch_max": "Events per request at most (default 100).",
    "linger": "Seconds a request waits for other connections' events bound for the same URL (default 0).",
    "format": '"json" (default: one JSON array of events) or "ndjson" (one JSON object a line).',
    "timeout": "Seconds to connect, and again for the response, before the request is tried again (default 10).",
    "max_wait": "Seconds between two tries at most, and the cap of a Retry-After (default 30).",
    "verify": "true (default), false, or a CA bundle path (relative to the config file).",
    "cert": "A client certificate path, or [certificate, key] paths (relative to the config file).",
    "dead_letter_url": "Optional: POST each of the runner's dead letters here, as one JSON object.",
}
"""Every key of ``[plugins.http]`` and its meaning (the docs' config reference lists them)."""

KEYS = tuple(SETTINGS)
DEFAULT_BATCH_MAX = 100
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_WAIT = 30.0
FORMATS = {"json": "application/json", "ndjson": "application/x-ndjson"}


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """A validated ``[plugins.http]`` table; its repr shows no header value."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    batch_max: int = DEFAULT_BATCH_MAX
    linger: float = 0.0
    format: str = "json"
    timeout: float = DEFAULT_TIMEOUT
    max_wait: float = DEFAULT_MAX_WAIT
    verify: bool | str = True
    cert: str | tuple[str, str] | None = None
    dead_letter_url: str | None = None

    def url_for(self, connection_id: str, template: str | None = None) -> str:
        return (self.url if template is None else template).format(connection=connection_id)


def read_settings(config: Config) -> HttpSettings:
    """The validated ``[plugins.http]`` table, or a ``ConfigError`` naming the key."""
    read = config.plugin_settings(NAME, known=KEYS)
    url = _url(read, "url", read.template("url", example='"https://hooks.example/sse/{connection}"'))
    dead_letter_url = read.template("dead_letter_url", None, example='"https://hooks.example/dead"')
    if dead_letter_url is not None:
        dead_letter_url = _url(read, "dead_letter_url", dead_letter_url)
    headers = read.table.get("headers", {})
    if not isinstance(headers, dict):
        raise read.error("headers", 'expected a table of strings, e.g. headers = { Authorization = "Bearer ${TOKEN}" }')
    for name, value in headers.items():
        key = join_key(join_key(read.prefix, "headers"), name)
        if not isinstance(value, str):
            raise ConfigError("expected a string header value; quote it", key=key, path=read.path)
        if not name or any(c in name for c in " :\r\n\t") or any(c in value for c in "\r\n\x00"):
            raise ConfigError("expected a header name without spaces or ':', a value without line breaks "
                              "(the value is not shown)", key=key, path=read.path)
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ConfigError("the value has characters HTTP cannot carry (not Latin-1; it is not shown)",
                              key=key, path=read.path) from None
    base = config.path.absolute().parent
    verify, cert = _verify(read, base), _cert(read, base)
    _check_tls_files(read, verify, cert)
    return HttpSettings(
        url=url,
        headers={name: value if isinstance(value, Secret) else Secret(value) for name, value in headers.items()},
        batch_max=read.integer("batch_max", DEFAULT_BATCH_MAX, minimum=1, maximum=100_000, example="100"),
        linger=_linger(read),
        format=read.one_of("format", tuple(FORMATS), "json"),
        timeout=read.seconds("timeout", DEFAULT_TIMEOUT, example="10"),
        max_wait=read.seconds("max_wait", DEFAULT_MAX_WAIT, example="30"),
        verify=verify,
        cert=cert,
        dead_letter_url=dead_letter_url,
    )


def _url(read: TableReader, key: str, template: str) -> str:
    parts = urlsplit(template.format(connection="c"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise read.error(key, f"expected an http:// or https:// URL, got {public_url(template)!r}; "
                              f'e.g. {key} = "https://hooks.example/sse/{{connection}}"')
    return template


def _linger(read: TableReader) -> float:
    value = read.number("linger", 0.0, example="0.05")
    if not 0 <= value <= 60:
        raise read.error("linger", f"expected seconds from 0 to 60, got {value}; e.g. linger = 0.05")
    return float(value)


def _verify(read: TableReader, base: Path) -> bool | str:
    value = read.table.get("verify", True)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value:
        return str(base / Path(value).expanduser())
    raise read.error("verify", 'expected true, false or the path of a CA bundle; e.g. verify = "ca.pem"')


def _cert(read: TableReader, base: Path) -> str | tuple[str, str] | None:
    value = read.table.get("cert")
    if value is None:
        return None
    if isinstance(value, str) and value:
        return str(base / Path(value).expanduser())
    if isinstance(value, list) and len(value) == 2 and all(isinstance(item, str) and item for item in value):
        return (str(base / Path(value[0]).expanduser()), str(base / Path(value[1]).expanduser()))
    raise read.error("cert", 'expected a certificate path or [certificate, key] paths; e.g. cert = ["c.pem", "k.pem"]')


def _check_tls_files(read: TableReader, verify: bool | str, cert: str | tuple[str, str] | None) -> None:
    """Load the CA bundle and the client certificate once (local files only): a path that is
    wrong is a config error now, not a failed request later."""
    context = ssl.create_default_context()
    key, what = "verify", "a CA bundle"
    try:
        if isinstance(verify, str):
            context.load_verify_locations(verify)
        if cert is not None:
            key, what = "cert", "a client certificate (and its key)"
            context.load_cert_chain(*(cert if isinstance(cert, tuple) else (cert,)))
    except (OSError, ssl.SSLError) as error:
        raise read.error(key, f"cannot load {what} from it: {getattr(error, 'strerror', None) or error}; "
                              "give the path of a PEM file (relative to the config file)") from None
