"""Passwords written literally in a plugin's table (a DSN, a Redis URL, HTTP headers, a token key)
are used as written and shown nowhere: not in the config's repr, not in the ``SSEPLUG_TRACE_PLUGINS``
trace of ``sseplug_configure``, not in a config error about them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sseplug.errors import ConfigError
from sseplug.plugins import create_plugin_manager
from sseplug.redaction import REDACTED, FromEnvironment, Secret, hide_credentials, protect_settings
from sseplug.run.config import parse_config

SECRETS = ("pw-3b9e71", "rp-5c20d4", "hk-9a61f0", "tk-0e7d2c", "kv-44a1be", "en-7f3c55")

CONFIG = """\
[[connections]]
id = "a"
url = "http://127.0.0.1:9/"

[plugins.postgres]
dsn = "postgresql://sseplug:pw-3b9e71@db.internal:5432/events"
[plugins.redis]
url = "redis://:rp-5c20d4@127.0.0.1:6379/0"
[plugins.http]
url = "https://hooks.example/in"
headers = { Authorization = "Bearer hk-9a61f0", X-Trace = "visible-but-hidden" }
[plugins.other]
api_token = "tk-0e7d2c"
conninfo = "host=db password=kv-44a1be dbname=x"
from_env = "postgresql://u:${PW}@h/${DB}"
"""


def leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def test_hide_credentials_hides_passwords_in_urls_and_key_value_strings() -> None:
    assert hide_credentials("postgresql://u:p@ss@h:5432/db?sslmode=require") == \
        f"postgresql://u:{REDACTED}@h:5432/db?sslmode=require"
    assert hide_credentials("host=h password='a b' dbname=x") == f"host=h password={REDACTED} dbname=x"
    assert hide_credentials("https://h/x?token=abc&n=1") == f"https://h/x?token={REDACTED}&n=1"
    assert hide_credentials("http://h:80/path") == "http://h:80/path"


def test_protected_settings_keep_their_values_and_hide_them_in_reprs() -> None:
    table = {"dsn": "postgresql://u:pw-3b9e71@h/db", "headers": {"X-Key": "hk-9a61f0"}, "api_token": "tk-0e7d2c",
             "nested": [{"url": "redis://:rp-5c20d4@h"}], "port": 5432, "plain": "events"}
    shown = protect_settings(table)
    assert shown == table  # used as written
    assert leaks(repr(shown)) == []
    assert isinstance(shown["headers"]["X-Key"], Secret) and isinstance(shown["dsn"], FromEnvironment)
    assert shown["plain"] is table["plain"] and f"u:{REDACTED}@h" in repr(shown)


def test_the_config_repr_and_the_configure_trace_show_no_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config = parse_config(CONFIG, path=tmp_path / "run.toml", environ={"PW": "en-7f3c55", "DB": "events"})
    assert config.plugins["postgres"]["dsn"] == "postgresql://sseplug:pw-3b9e71@db.internal:5432/events"
    assert config.plugins["http"]["headers"]["Authorization"] == "Bearer hk-9a61f0"
    assert config.plugins["other"]["from_env"] == "postgresql://u:en-7f3c55@h/events"
    assert leaks(repr(config)) == []
    assert "postgresql://u:${PW}@h/${DB}" in repr(config)  # as written, the environment's value unseen

    monkeypatch.setenv("SSEPLUG_TRACE_PLUGINS", "1")
    caplog.set_level(logging.DEBUG, logger="sseplug.plugins")
    pm = create_plugin_manager(builtins=("json",), load_entry_points=False)
    pm.configure(config)
    pm.unconfigure()
    traced = caplog.text
    assert "sseplug_configure(config=Config(" in traced and "db.internal:5432" in traced  # tracing was on
    assert leaks(traced) == []


def test_a_config_error_about_a_plugin_value_shows_no_password(tmp_path: Path) -> None:
    config = parse_config(CONFIG, path=tmp_path / "run.toml", environ={"PW": "x", "DB": "y"})
    read = config.plugin_settings("postgres", known=("dsn",))
    with pytest.raises(ConfigError) as caught:
        read.integer("dsn")  # the wrong type: the message shows the value, as written
    assert "expected an integer" in str(caught.value) and leaks(str(caught.value)) == []
