"""The config reference covers exactly the keys the parser accepts."""

from __future__ import annotations

import dataclasses

from sseplug.run import config
from sseplug.run.reference import KEYS, default_of


def test_every_key_the_parser_accepts_is_documented_and_no_other() -> None:
    accepted = {f"runner.{key}" for key in config._RUNNER_KEYS if key not in ("plugins", "errors")}
    accepted |= {f"runner.plugins.{key}" for key in config._RUNNER_PLUGINS_KEYS}
    accepted |= {f"runner.errors.{key}" for key in config._ERRORS_KEYS}
    accepted |= {f"connections[].{key}" for key in config._CONNECTION_KEYS}
    accepted |= {"plugins.NAME"}
    assert set(KEYS) == accepted
    assert all(text.endswith(".") for text in KEYS.values())


def test_defaults_come_from_the_config_classes() -> None:
    assert default_of("runner.pool_size") == 10_000
    assert default_of("runner.errors.retries") == 3
    assert default_of("connections[].read_timeout") == 300.0
    assert default_of("connections[].url") is dataclasses.MISSING
    assert default_of("runner.plugins.disable") == []
