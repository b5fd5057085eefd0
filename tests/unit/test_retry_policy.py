"""The built-in reconnection policy: an immutable value, tested without a clock or a network."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timezone

import pytest

from sseplug.builtin.retry import RetryPolicy, retry_after
from sseplug.errors import HTTPStatusError, NetworkError


def test_policy_is_an_immutable_value() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RetryPolicy().cap = 5  # type: ignore[misc]


def test_wait_is_the_server_retry_else_one_second_doubled_per_failure_and_capped() -> None:
    policy = RetryPolicy(jitter=False)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [1, 2, 4, 8, 16, 30, 30]
    assert [policy.delay(n, retry_ms=250) for n in (1, 2, 3)] == [0.25, 0.5, 1.0]
    assert RetryPolicy(jitter=False, cap=3).delay(9, retry_ms=1000) == 3


def test_full_jitter_draws_between_zero_and_the_backoff() -> None:
    random.seed(7)
    policy = RetryPolicy()
    waits = [policy.delay(3, retry_ms=1000) for _ in range(500)]
    assert all(0 <= w <= 4 for w in waits)
    assert min(waits) < 0.5 and max(waits) > 3.5  # spread over the whole range, not a constant


def test_retry_after_is_a_floor() -> None:
    assert RetryPolicy(jitter=False).delay(1, retry_ms=100, retry_after=7) == 7
    assert RetryPolicy(jitter=False).delay(1, retry_ms=9000, retry_after=2) == 9


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    now = datetime(2026, 11, 24, 12, 0, 0, tzinfo=timezone.utc)
    seconds = HTTPStatusError("busy", status=503, headers={"Retry-After": "120"})
    date = HTTPStatusError("busy", status=503, headers={"retry-after": "Tue, 24 Nov 2026 12:00:30 GMT"})
    past = HTTPStatusError("busy", status=503, headers={"Retry-After": "Tue, 24 Nov 2026 11:00:00 GMT"})
    assert retry_after(seconds, now) == 120
    assert retry_after(date, now) == 30
    assert retry_after(past, now) == 0
    assert retry_after(HTTPStatusError("busy", status=503, headers={"Retry-After": "soon"}), now) is None
    assert retry_after(NetworkError("reset"), now) is None
    assert retry_after(None, now) is None


def test_the_base_wait_has_a_floor_so_retry_0_cannot_spin() -> None:
    policy = RetryPolicy(jitter=False)
    assert [policy.delay(n, retry_ms=0) for n in (1, 2, 3, 4)] == [0.01, 0.02, 0.04, 0.08]
    assert policy.delay(1, retry_ms=20) == 0.02  # a small server retry is still honoured
    random.seed(3)
    assert all(0.01 <= RetryPolicy().delay(1, retry_ms=0) <= 0.01 for _ in range(100))


def test_absurd_steps_and_server_retries_stay_at_the_cap() -> None:
    policy = RetryPolicy(jitter=False)
    assert policy.delay(100_000) == 30  # no OverflowError from 2.0 ** 99_999
    assert policy.delay(1, retry_ms=2**31 - 1) == 30
    assert policy.delay(1, retry_ms=10**400) == 30


def test_absurd_retry_after_values_are_infinite_not_errors() -> None:
    now = datetime(2026, 11, 24, 12, 0, 0, tzinfo=timezone.utc)
    for value in ("9" * 401, "Fri, 31 Dec 9999 23:59:59 GMT", "99999999999"):
        asked = retry_after(HTTPStatusError("busy", status=503, headers={"Retry-After": value}), now)
        assert asked is not None and asked > 6 * 3600  # capped by the hook, which logs it
