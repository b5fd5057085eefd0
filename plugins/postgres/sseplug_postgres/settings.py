"""The ``[plugins.postgres]`` table: its keys, their meaning, and their validation (no connection made)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg.conninfo

from sseplug.redaction import REDACTED, hide_credentials

if TYPE_CHECKING:
    from sseplug.run.config import Config, TableReader

__all__ = ["KEYS", "NAME", "SETTINGS", "PostgresSettings", "read_settings", "scrub"]

NAME = "postgres"
"""The plugin's name: entry point, ``[plugins.postgres]`` table, ``runner.plugins.disable`` entry."""

SETTINGS: dict[str, str] = {
    "dsn": "Required. A libpq URI or key=value string; ${VAR} allowed; its password is shown nowhere.",
    "table": 'The events table (default "sseplug_events"); may be "schema.table" and name {connection}.',
    "create": "Create the tables that are missing (default true); false: they must exist.",
    "batch_max": "Events per transaction at most (default 1000); a larger batch commits in several.",
    "checkpoint_table": 'The checkpoint table, one row per connection (default "sseplug_checkpoints").',
    "dead_letter_table": "Optional: store the runner's dead letters in this table (may name {connection}).",
    "pool_size": "PostgreSQL sessions at most, shared by the connections (default 10).",
    "connect_timeout": "Seconds to open a session before it counts as PostgreSQL being away (default 5).",
}
"""Every key of ``[plugins.postgres]`` and its meaning (the docs' config reference lists them)."""

KEYS = tuple(SETTINGS)
DEFAULT_TABLE = "sseplug_events"
DEFAULT_CHECKPOINT_TABLE = "sseplug_checkpoints"
DEFAULT_BATCH_MAX = 1000
DEFAULT_POOL_SIZE = 10
DEFAULT_CONNECT_TIMEOUT = 5.0
IDENTIFIER_BYTES = 63  # longer names are cut by PostgreSQL: two connections could share a table


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    """A validated ``[plugins.postgres]`` table; its repr hides the password of ``dsn``."""

    dsn: str = field(repr=False)
    table: str = DEFAULT_TABLE
    create: bool = True
    batch_max: int = DEFAULT_BATCH_MAX
    checkpoint_table: str = DEFAULT_CHECKPOINT_TABLE
    dead_letter_table: str | None = None
    pool_size: int = DEFAULT_POOL_SIZE
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    @property
    def shown_dsn(self) -> str:
        """``dsn`` fit for a log line: its password replaced by ``<redacted>``."""
        return hide_credentials(str.__str__(self.dsn))


_URI_PASSWORD = re.compile(r"://[^:/?#@\s]*:(?P<secret>[^\s]*?)@[^@\s/?#]*(?:[/?#\s]|$)")
_KV_PASSWORD = re.compile(r"(?i)password\s*=\s*(?P<secret>'(?:[^'\\]|\\.)*'|[^\s&]+)")
_PART = re.compile(r"[^\x00]+")


def scrub(text: str, dsn: str) -> str:
    """``text`` (an error message) without the password of ``dsn``, in any form it was written."""
    text = hide_credentials(text)
    secrets = {match["secret"] for pattern in (_URI_PASSWORD, _KV_PASSWORD) for match in pattern.finditer(dsn)}
    for secret in sorted(secrets, key=len, reverse=True):
        for form in {secret, secret.strip("'"), *secret.strip("'").split()}:
            if len(form) >= 3:
                text = text.replace(form, REDACTED)
    return text


def read_settings(config: Config) -> PostgresSettings:
    """The validated ``[plugins.postgres]`` table, or a ``ConfigError`` naming the key."""
    read = config.plugin_settings(NAME, known=KEYS)
    dsn = read.string("dsn", example='"postgresql://sseplug:${PGPASSWORD}@127.0.0.1:5432/events"')
    try:
        psycopg.conninfo.conninfo_to_dict(str.__str__(dsn))  # parsed by libpq; connects nowhere
    except psycopg.Error as error:
        said = scrub(str(error), dsn)
        raise read.error("dsn", f"not a PostgreSQL connection string ({said}); write a URI "
                                '"postgresql://user:password@host:5432/dbname" or "host=... dbname=..." pairs') from None
    ids = [connection.id for connection in config.connections]
    table = _table(read, "table", DEFAULT_TABLE, ids)
    checkpoint_table = _table(read, "checkpoint_table", DEFAULT_CHECKPOINT_TABLE, [])
    dead_letter_table = _table(read, "dead_letter_table", None, ids)
    if "{connection}" in checkpoint_table:
        raise read.error("checkpoint_table", "one checkpoint table holds every connection: remove {connection}")
    names = {checkpoint_table: "checkpoint_table"}
    for key, template in (("table", table), ("dead_letter_table", dead_letter_table)):
        for cid in ids if template is not None and "{connection}" in template else [""]:
            name = template.format(connection=cid) if template is not None else None
            if name is not None and names.setdefault(name, key) != key:
                raise read.error(key, f"{name!r} is also the {names[name]}; give each table its own name")
    timeout = read.seconds("connect_timeout", DEFAULT_CONNECT_TIMEOUT, example="5")
    return PostgresSettings(
        dsn=dsn, table=table, create=read.boolean("create", True),
        batch_max=read.integer("batch_max", DEFAULT_BATCH_MAX, minimum=1, maximum=1_000_000, example="1000"),
        checkpoint_table=checkpoint_table, dead_letter_table=dead_letter_table,
        pool_size=read.integer("pool_size", DEFAULT_POOL_SIZE, minimum=1, maximum=1000, example="10"),
        connect_timeout=math.ceil(timeout),
    )


def _table(read: TableReader, key: str, default: str | None, ids: list[str]) -> Any:
    """A table name, ``schema.table`` or a ``{connection}`` template of one, checked for every connection."""
    example = f'"{default or "sseplug_dead_letters"}" or "events_{{connection}}"'
    template = read.template(key, default, example=example)
    if template is None:
        return None
    parts = template.split(".", 1)
    for cid in ids if "{connection}" in template else [""]:
        for part in parts:
            name = part.format(connection=cid)
            whose = f" for connection {cid!r}" if cid else ""
            if not _PART.fullmatch(name) or len(name.encode("utf-8")) > IDENTIFIER_BYTES:
                raise read.error(key, f"expected a table name (or schema.table) of 1 to {IDENTIFIER_BYTES} bytes "
                                      f"without NUL{whose}, got {name!r} in {template!r}; e.g. {key} = {example}")
    return template
