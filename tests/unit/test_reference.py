"""The config reference comes from the spec of every key: it covers exactly the keys the config
classes hold, and says what a key must be in the words its errors use."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sseplug.errors import ConfigError
from sseplug.models import SSERequest
from sseplug.route import ErrorPolicy
from sseplug.run.config import ConnectionConfig, RunnerConfig, parse_config
from sseplug.run.config_spec import SPEC, keys_of, names_of
from sseplug.run.reference import KEYS, config_reference, default_of


def test_the_spec_has_a_key_for_every_field_of_the_config_classes_and_no_other() -> None:
    connection = [f.name for f in dataclasses.fields(ConnectionConfig)]  # the request's keys are SSERequest's
    request = {f.name for f in dataclasses.fields(SSERequest)}
    keys = [spec.name for spec in keys_of("connections[]")]
    assert [name for name in keys if name not in request] == [name for name in connection if name != "request"]
    assert {name for name in keys if name in request} == request - {"content_type", "last_event_id"} - {
        f.name for f in dataclasses.fields(SSERequest) if f.name.startswith("on_")}
    runner = {spec.name for spec in (*keys_of("runner"), *keys_of("runner.plugins"))} | {"errors"}
    assert runner == {f.name for f in dataclasses.fields(RunnerConfig)}
    assert [spec.name for spec in keys_of("runner.errors")] == [f.name for f in dataclasses.fields(ErrorPolicy)]
    assert names_of("") == ("runner", "connections", "plugins")
    assert set(KEYS) == {spec.path for spec in SPEC} and len(KEYS) == len(SPEC)
    assert all(text.endswith(".") for text in KEYS.values())


def test_defaults_come_from_the_config_classes() -> None:
    assert default_of("runner.pool_size") == 10_000
    assert default_of("runner.errors.retries") == 3
    assert default_of("connections[].read_timeout") == 300.0
    assert default_of("connections[].url") is dataclasses.MISSING
    assert default_of("runner.plugins.disable") == []


@pytest.mark.parametrize(
    ("line", "table", "entry", "expected"),
    [
        ("pool_size = 0", "runner", "``pool_size``: an integer >= 1; default ``10000``", "expected an integer >= 1"),
        ("shutdown_timeout = 0", "runner", "``shutdown_timeout``: a number of seconds > 0; default ``10.0``",
         "expected a number of seconds > 0"),
        ("errors = { backoff = -1 }", "runner", "``backoff``: a number of seconds >= 0; default ``1.0``",
         "expected a number of seconds >= 0"),
        ('errors = { action = "x" }', "runner", '``action``: one of "stop", "skip", "dead_letter"; default ``"stop"``',
         'expected one of "stop", "skip", "dead_letter"'),
        ("retry = 1", "connections", "``retry``: true or false; default ``true``", "expected true or false"),
        # a request key: SSERequest checks the range, and says it for the reference too
        ("max_retries = -1", "connections", "``max_retries``: an integer >= 0; default ``5``", "expected an integer >= 0"),
        ("retry_delay = -1", "connections", "``retry_delay``: a number of seconds >= 0; default ``1.0``",
         "expected a number of seconds >= 0"),
        ("read_timeout = 0", "connections", "``read_timeout``: a number of seconds > 0; default ``300.0``",
         "expected a number of seconds > 0"),
    ],
)
def test_the_reference_says_what_a_key_must_be_in_the_words_of_its_error(
    tmp_path: Path, line: str, table: str, entry: str, expected: str
) -> None:
    assert entry in config_reference()
    connection = '[[connections]]\nid = "a"\nurl = "http://127.0.0.1:1/s"\n'
    text = f"[runner]\n{line}\n{connection}" if table == "runner" else f"{connection}{line}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, path=tmp_path / "c.toml", environ={})
    assert caught.value.message.startswith(expected)


def test_each_table_is_one_section_of_the_reference() -> None:
    headings = [line for line in config_reference() if line.startswith("[")]
    assert headings == ["[runner]", "[runner.plugins]", "[runner.errors]", "[[connections]]", "[plugins.NAME]"]
