"""``retry_delay = 0`` is a valid first wait, in the library and in the config: every wait is
floored at 10 ms by the retry policy anyway, so it cannot make a reconnect loop spin."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from sseplug.builtin import retry
from sseplug.errors import ConfigError
from sseplug.models import RequestFieldError, SSERequest
from sseplug.run.config import load_config


def test_zero_is_accepted_and_waits_the_floor() -> None:
    request = SSERequest("http://127.0.0.1:1/s", retry_delay=0)
    connection = SimpleNamespace(id="s", request=request, retry_ms=None, backoff_step=1)
    assert retry.sseplug_retry_decision(connection=connection, error=None) == retry.POLICY.minimum == 0.01


@pytest.mark.parametrize("value", [-0.5, float("inf"), float("nan"), True, "1"])
def test_negative_and_non_numbers_are_refused(value: object) -> None:
    with pytest.raises(RequestFieldError, match="retry_delay: expected a number of seconds >= 0"):
        SSERequest("http://127.0.0.1:1/s", retry_delay=value)  # type: ignore[arg-type]


def test_the_config_accepts_zero_and_names_the_file_for_a_negative(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('[[connections]]\nid = "a"\nurl = "http://127.0.0.1:1/s"\nretry_delay = 0\n')
    assert load_config(path, environ={}).connections[0].request.retry_delay == 0
    path.write_text('[[connections]]\nid = "a"\nurl = "http://127.0.0.1:1/s"\nretry_delay = -1\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value) == f"{path}: connections[0].retry_delay: expected a number of seconds >= 0, got -1"
