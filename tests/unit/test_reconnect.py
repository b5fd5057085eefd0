"""sseplug._reconnect: Backoff decides what follows each response, with no socket and no clock."""

from __future__ import annotations

import math
from typing import Any

import pytest

from sseplug._reconnect import ASK, END, Backoff, Verdict, checked_last_event_id, seconds
from sseplug.errors import NetworkError, PluginError, RetriesExhaustedError, SSEError, TemporaryHTTPError
from sseplug.models import MAX_WAIT, SSERequest

URL = "http://127.0.0.1:1/stream"
BROKE = NetworkError("stream broke: reset")


def after(backoff: Backoff, error: SSEError | None = None, *, delivered: bool = False, events_total: int = 0,
          **request: Any) -> tuple[Backoff, Verdict]:
    return backoff.after(error, delivered=delivered, request=SSERequest(URL, **request), events_total=events_total,
                         connection_id="c")


def test_each_response_counts_an_attempt_and_a_step_and_asks_the_plugins() -> None:
    backoff = Backoff()
    for expected in (1, 2, 3):
        backoff, verdict = after(backoff, BROKE)
        assert (backoff.attempt, backoff.step, verdict) == (expected, expected, ASK)


def test_delivering_resets_the_failure_count_not_the_backoff() -> None:
    backoff, verdict = after(Backoff(attempt=4, step=4, retry_ms=250), None, delivered=True, events_total=9)
    assert backoff == Backoff(attempt=1, step=5, retry_ms=250) and verdict is ASK


def test_a_value_is_never_changed_in_place() -> None:
    first = Backoff(attempt=2, step=3)
    after(first, BROKE)
    assert first.with_retry(500).retry_ms == 500 and first.retry_ms is None
    assert first.healthy() == Backoff(attempt=2, step=0) and first.step == 3
    with pytest.raises(AttributeError):
        first.attempt = 9  # type: ignore[misc]


def test_retries_exhausted_after_max_retries_failures_in_a_row() -> None:
    backoff = Backoff()
    for _ in range(2):
        backoff, verdict = after(backoff, BROKE, max_retries=2)
        assert verdict is ASK
    backoff, verdict = after(backoff, BROKE, max_retries=2)
    assert verdict.action == "raise" and isinstance(verdict.error, RetriesExhaustedError)
    assert verdict.error.attempts == 2 and verdict.error.__cause__ is BROKE
    assert "gave up after 3 failed attempts in a row, max_retries = 2 (the last: stream broke" in verdict.error.message
    _, clean = after(Backoff(attempt=2), None, max_retries=2)
    assert clean.error is not None and "the stream ended without events" in clean.error.message


@pytest.mark.parametrize(("request_", "error", "expected"), [
    ({"retry": False}, None, "end"),
    ({"retry": False}, BROKE, "raise"),
    ({"reconnect": "on_error"}, None, "end"),
    ({"reconnect": "on_error"}, BROKE, "ask"),
    ({"reconnect": "always"}, None, "ask"),
    ({}, None, "ask"),  # a GET reconnects after EOF, as a browser
    ({"method": "POST", "body": {"q": 1}}, None, "end"),  # on_error is the default for other methods
])
def test_the_reconnect_mode_says_whether_eof_or_a_failure_ends(
    request_: dict[str, Any], error: SSEError | None, expected: str
) -> None:
    _, verdict = after(Backoff(), error, **request_)
    assert verdict.action == expected
    if expected == "raise":
        assert verdict.error is error


def test_a_request_with_a_body_is_not_sent_again_once_it_delivered() -> None:
    post: dict[str, Any] = {"method": "POST", "body": {"q": 1}}
    _, verdict = after(Backoff(), BROKE, events_total=3, **post)
    assert verdict.action == "raise" and isinstance(verdict.error, NetworkError)
    assert "the response broke after 3 events (stream broke: reset); a POST request" in verdict.error.message
    assert verdict.error.__cause__ is BROKE
    assert after(Backoff(), BROKE, events_total=0, **post)[1] is ASK  # nothing delivered: sent again
    assert after(Backoff(), BROKE, events_total=3, resume_url=URL + "/resume", **post)[1] is ASK
    assert after(Backoff(), BROKE, events_total=3, reconnect="always", **post)[1] is ASK


def test_the_retry_decision_answer_becomes_a_wait_or_an_end() -> None:
    error = TemporaryHTTPError("server answered HTTP 503", status=503)
    assert Backoff.wait(2, error) == Verdict("wait", seconds=2.0)
    assert Backoff.wait(0.25, None) == Verdict("wait", seconds=0.25)
    assert Backoff.wait(None, None) is END and Backoff.wait(False, None) is END
    assert Backoff.wait(False, error) == Verdict("raise", error)
    assert Backoff.wait(-5, None).seconds == 0.0
    assert Backoff.wait(math.inf, None).seconds == MAX_WAIT


@pytest.mark.parametrize("answer", [True, "3", math.nan, [1]])
def test_a_wait_that_is_no_number_is_a_plugin_error(answer: Any) -> None:
    with pytest.raises(PluginError, match="a sseplug_claim implementation answered") as caught:
        seconds("sseplug_claim", answer, connection_id="c", url=URL)
    assert (caught.value.hook, caught.value.connection_id) == ("sseplug_claim", "c")
    with pytest.raises(PluginError, match="sseplug_retry_decision"):
        Backoff.wait(answer, None)


def test_a_loaded_checkpoint_must_be_an_id_a_header_can_carry() -> None:
    assert checked_last_event_id("41") == "41" and checked_last_event_id("é") == "é"
    for loaded in (41, b"41", "4\n1", "4\x001", "\ud800"):
        with pytest.raises(PluginError, match="sseplug_checkpoint_load implementation loaded"):
            checked_last_event_id(loaded, connection_id="c")
