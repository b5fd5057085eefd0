"""``sseplug fleet CONFIG``: what Redis says about the fleet running a config (read-only).

The live runners (host, pid, heartbeat age, streams held and open: the rest of its share are in
standby), and the config's streams no live runner holds.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import redis

from sseplug.redaction import public_url

from .scripts import RUNNERS_KEY, lease_key, session_key

if TYPE_CHECKING:
    from sseplug.run.config import Config

__all__ = ["fleet_view", "render"]

CHUNK = 1000


def fleet_view(config: Config) -> dict[str, Any]:
    """The fleet of ``config`` as a JSON-able dict: ``streams``, ``runners``, ``unowned``, ``standby``."""
    from .settings import settings as _settings

    settings = _settings(config)
    client = redis.Redis.from_url(settings["url"], socket_timeout=5, socket_connect_timeout=5)
    try:
        seconds, micros = client.time()
        now_ms = seconds * 1000 + micros // 1000
        runners = []
        for token, score in client.zrange(RUNNERS_KEY, 0, -1, withscores=True):
            session = client.hgetall(session_key(token.decode()))
            if not session:
                continue  # its session expired: not live
            fields = {key.decode(): value.decode() for key, value in session.items()}
            held, open_ = int(fields.get("held", 0)), int(fields.get("open", 0))
            runners.append({"token": token.decode(), "host": fields.get("host"), "pid": int(fields.get("pid", 0)),
                            "heartbeat_age": round(max(0, now_ms - score) / 1000, 3), "held": held,
                            "open": open_, "standby": max(0, held - open_)})
        ids = [connection.id for connection in config.connections]
        live = {runner["token"] for runner in runners}
        unowned = []
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            for cid, owner in zip(chunk, client.mget([lease_key(cid) for cid in chunk])):
                if owner is None or owner.decode() not in live:
                    unowned.append(cid)
    except redis.RedisError as error:
        raise SystemExit(f"sseplug fleet: error: cannot read the fleet from Redis at {public_url(settings['url'])}: "
                         f"{type(error).__name__}: {error}") from None
    finally:
        client.close()
    return {"redis": public_url(settings["url"]), "streams": len(ids), "runners": runners, "unowned": unowned,
            "standby": sum(runner["standby"] for runner in runners), "read_at": time.time()}


def render(view: dict[str, Any]) -> str:
    """The view as a table for people."""
    lines = [f"{len(view['runners'])} live runners at {view['redis']}, {view['streams']} streams: "
             f"{view['streams'] - len(view['unowned'])} owned, {len(view['unowned'])} not owned by a live runner, "
             f"{view['standby']} in standby (held, open and standby as each runner said at its last heartbeat)",
             f"{'TOKEN':<34}{'HOST':<20}{'PID':>8}{'HEARTBEAT':>11}{'HELD':>7}{'OPEN':>7}{'STANDBY':>9}"]
    for runner in sorted(view["runners"], key=lambda r: (r["host"] or "", r["pid"])):
        lines.append(f"{runner['token']:<34}{(runner['host'] or '?')[:19]:<20}{runner['pid']:>8}"
                     f"{runner['heartbeat_age']:>10.1f}s{runner['held']:>7}{runner['open']:>7}{runner['standby']:>9}")
    if view["unowned"]:
        shown = ", ".join(view["unowned"][:20]) + (" ..." if len(view["unowned"]) > 20 else "")
        lines.append(f"not owned: {shown}")
    return "\n".join(lines)
