"""``[plugins.redis]``: every key with its meaning, read and checked (errors name the key)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from sseplug.run.config import Config, TableReader

__all__ = ["NAME", "SETTINGS", "KEYS", "settings"]

NAME = "redis"
"""The plugin's name: entry point, ``[plugins.redis]`` table, ``runner.plugins.disable`` entry."""

SETTINGS: dict[str, str] = {
    "url": "Required. redis://, rediss:// or unix:// of a standalone Redis (not Cluster); its password is shown "
           "nowhere.",
    "lease_ttl": "Seconds >= 1 (default 10): a runner's session lives this long after its last heartbeat (one every "
                 "lease_ttl / 3); a crashed runner's streams move after about this long.",
    "stream": 'Optional: XADD every event to this Redis stream ({connection}: the id), e.g. "sseplug:{connection}"; '
              "events and checkpoint go in one fenced script.",
    "maxlen": "Optional, with stream: XADD ... MAXLEN ~ maxlen.",
    "dead_letter_stream": "Optional: XADD the runner's dead letters here (may name {connection}).",
    "on_lost_state": '"stop" (default) or "resume_from_memory": what runners do when Redis lost the fleet\'s state '
                     "(restarted empty): stop every stream and exit 1, or resume the streams each held from the "
                     "last ids it delivered (docs/fleet.rst).",
    "reconnect_rate": "Optional, integer >= 1: new upstream connections per second for the whole fleet (a token "
                      "bucket in Redis), at start and after an upstream restart.",
}
"""Every key of ``[plugins.redis]`` and its meaning (the docs' config reference lists them)."""

KEYS = tuple(SETTINGS)

LOST_STATE_POLICIES = ("stop", "resume_from_memory")
DEFAULT_LEASE_TTL = 10.0
MIN_LEASE_TTL = 1.0


def settings(config: Config) -> dict[str, Any]:
    """The plugin's settings from ``[plugins.redis]``, or a ``ConfigError`` naming the key."""
    read = config.plugin_settings(NAME, known=KEYS)
    url = read.string("url", example='"redis://127.0.0.1:6379/0"')
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise read.error("url", f"expected a redis://, rediss:// or unix:// URL, got {url!r}; "
                                'e.g. url = "redis://127.0.0.1:6379/0"')
    lease_ttl = read.seconds("lease_ttl", DEFAULT_LEASE_TTL, minimum=MIN_LEASE_TTL)
    stream = _key_pattern(read, "stream", '"sseplug:{connection}"')
    maxlen = read.integer("maxlen", None, minimum=1, example="100000")
    if maxlen is not None and stream is None:
        raise read.error("maxlen", "maxlen trims the Redis streams: set stream too, or remove maxlen")
    on_lost_state = read.string("on_lost_state", "stop", example='"stop"')
    if on_lost_state not in LOST_STATE_POLICIES:
        raise read.error("on_lost_state", f"expected one of {', '.join(map(repr, LOST_STATE_POLICIES))}, "
                                          f"got {on_lost_state!r}")
    rate = read.integer("reconnect_rate", None, minimum=1, example="500")
    return {"url": url, "lease_ttl": lease_ttl, "stream": stream, "maxlen": maxlen,
            "dead_letter_stream": _key_pattern(read, "dead_letter_stream", '"sseplug:dead:{connection}"'),
            "on_lost_state": on_lost_state, "reconnect_rate": None if rate is None else float(rate)}


def _key_pattern(read: TableReader, key: str, example: str) -> str | None:
    """A Redis key with an optional ``{connection}`` placeholder, or ``None`` when not given."""
    pattern = read.template(key, None, example=example)
    if pattern == "":
        raise read.error(key, f'expected a key pattern, got ""; e.g. {key} = {example}')
    return pattern
