"""SSERequest validation, SSEResponse immutability, the error tree and the package surface."""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys

import pytest

import sseplug
from sseplug import RequestContentType, RequestMethodType, SSERequest, SSEResponse
from sseplug import errors
from sseplug.models import RequestFieldError

URL = "http://127.0.0.1:8000/stream"


def test_sse_response_is_immutable_and_slotted() -> None:
    event = SSEResponse("1", "message", "hi")
    with pytest.raises(AttributeError):
        event.data = "changed"  # type: ignore[misc]
    assert not hasattr(event, "__dict__")
    assert (event.comment, event.raw_response, event.retry) == ("", "", None)


def test_sse_request_is_frozen_and_slotted() -> None:
    request = SSERequest(URL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.url = "http://elsewhere"  # type: ignore[misc]
    assert not hasattr(request, "__dict__")


def test_sse_request_defaults() -> None:
    request = SSERequest(URL)
    assert request.method is RequestMethodType.GET
    assert request.retry is True and request.max_retries == 5
    assert request.max_event_size == 16 * 1024 * 1024
    assert request.content_type is None and request.encoded_body() is None
    assert request.last_event_id == ""


@pytest.mark.parametrize("method", ["post", "POST", RequestMethodType.POST])
def test_method_accepts_enum_and_strings(method: str) -> None:
    assert SSERequest(URL, method=method).method is RequestMethodType.POST


def test_any_method_name_is_accepted_upper_cased() -> None:
    request = SSERequest(URL, method="report", body={"user": "u"})
    assert request.method == "REPORT" and request.reconnect_mode == "on_error" and not request.resends


def test_dict_and_list_bodies_are_sent_as_json() -> None:
    request = SSERequest(URL, method="POST", body={"q": 1, "s": "é"})
    assert request.content_type is RequestContentType.json
    assert json.loads(request.encoded_body() or b"") == {"q": 1, "s": "é"}
    assert json.loads(SSERequest(URL, method="POST", body=[1, 2]).encoded_body() or b"") == [1, 2]


def test_str_and_bytes_bodies_are_sent_as_they_are() -> None:
    text = SSERequest(URL, method="POST", body="a=1", content_type=RequestContentType.plain_text)
    assert text.encoded_body() == b"a=1" and text.content_type is RequestContentType.plain_text
    raw = SSERequest(URL, method="POST", body=b"\x00\x01", content_type="application/x-thing")
    assert raw.encoded_body() == b"\x00\x01" and raw.content_type == "application/x-thing"


def test_content_type_values_match_the_seed() -> None:
    assert [c.value for c in RequestContentType] == [
        "application/json",
        "text/event-stream",
        "text/plain",
        "multipart/form-data",
    ]


INVALID = [  # one bad value each; every field of SSERequest at least once
    ({"url": "127.0.0.1:8000/stream"}, "url"),
    ({"url": "ftp://127.0.0.1/stream"}, "url"),
    ({"url": "http://"}, "url"),
    ({"url": URL, "method": "GET /x"}, "method"),
    ({"url": URL, "method": 3}, "method"),
    ({"url": URL, "max_retries": -1}, "max_retries"),
    ({"url": URL, "max_retries": True}, "max_retries"),
    ({"url": URL, "max_event_size": 0}, "max_event_size"),
    ({"url": URL, "read_timeout": 0}, "read_timeout"),
    ({"url": URL, "read_timeout": "10"}, "read_timeout"),
    ({"url": URL, "head_timeout": 0}, "head_timeout"),
    ({"url": URL, "head_timeout": float("inf")}, "head_timeout"),
    ({"url": URL, "headers": {"X-A": 1}}, "headers"),
    ({"url": URL, "headers": {"X-A": "a\r\nX-Injected: 1"}}, "headers"),
    ({"url": URL, "body": {"a": 1}}, "body"),
    ({"url": URL, "method": "POST", "body": object()}, "body"),
    ({"url": URL, "method": "POST", "body": {"a": 1}, "content_type": "text/plain"}, "content_type"),
    ({"url": URL, "method": "POST", "body": "x", "content_type": "nonsense"}, "content_type"),
    ({"url": URL, "on_data": "print"}, "on_data"),
    ({"url": URL, "on_error": 1}, "on_error"),
    ({"url": URL, "on_done": "done"}, "on_done"),
    ({"url": URL, "retry": "yes"}, "retry"),
    ({"url": URL, "last_event_id": "a\nb"}, "last_event_id"),
    ({"url": URL, "reconnect": "sometimes"}, "reconnect"),
    ({"url": URL, "resume_url": "/relative"}, "resume_url"),
    ({"url": URL, "end_events": "end"}, "end_events"),  # a str is not a list of types
    ({"url": URL, "end_data": [1]}, "end_data"),
    ({"url": URL, "error_events": None}, "error_events"),
    ({"url": URL, "retry_delay": -0.5}, "retry_delay"),
    ({"url": URL, "retry_delay": None}, "retry_delay"),
    ({"url": URL, "verify": "no-such-ca.pem"}, "verify"),
    ({"url": URL, "cert": ("c.pem", "k.pem", "x.pem")}, "cert"),
    ({"url": URL, "on_comment": "print"}, "on_comment"),
    ({"url": URL, "on_bytes": b"x"}, "on_bytes"),
]


@pytest.mark.parametrize(
    ("kwargs", "mode", "resends"),
    [
        ({}, "always", True),
        ({"retry": False}, "never", True),
        ({"method": "POST", "body": {"q": 1}}, "on_error", False),
        ({"method": "POST", "body": {"q": 1}, "reconnect": "always"}, "always", True),
        ({"reconnect": "on_error"}, "on_error", True),
        ({"retry": False, "reconnect": "always"}, "never", True),
    ],
)
def test_reconnect_mode_and_whether_a_request_is_sent_again(kwargs: dict, mode: str, resends: bool) -> None:
    request = SSERequest(URL, **kwargs)
    assert (request.reconnect_mode, request.resends) == (mode, resends)


def test_marker_lists_become_tuples() -> None:
    request = SSERequest(URL, end_data=["[DONE]"], end_events={"end"}, error_events=("error",))
    assert (request.end_data, request.end_events, request.error_events) == (("[DONE]",), ("end",), ("error",))


@pytest.mark.parametrize(("kwargs", "field"), INVALID)
def test_invalid_request_values_raise_value_error_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: ") as caught:
        SSERequest(**kwargs)
    error = caught.value
    assert type(error) is RequestFieldError
    assert error.field == field and str(error) == f"{field}: {error.message}"
    assert error.message and not error.message.startswith(f"{field}:")


def test_every_request_field_is_validated_and_named() -> None:
    assert {field for _, field in INVALID} == {spec.name for spec in dataclasses.fields(SSERequest)}


def test_request_field_error_keeps_its_facts_and_message() -> None:
    error = RequestFieldError("max_retries", "expected an integer >= 0, got -1")
    assert isinstance(error, ValueError) and RequestFieldError.__doc__
    assert (error.field, error.message) == ("max_retries", "expected an integer >= 0, got -1")
    assert str(error) == "max_retries: expected an integer >= 0, got -1"
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.field, str(copy)) == (RequestFieldError, "max_retries", str(error))


def test_messages_say_what_to_write() -> None:
    with pytest.raises(RequestFieldError, match=r'use "GET", "POST" or another method name$'):
        SSERequest(URL, method="GET /")
    with pytest.raises(RequestFieldError, match=r'set method = "POST" to send one'):
        SSERequest(URL, body="x")
    with pytest.raises(RequestFieldError, match=r"^read_timeout: expected a number of seconds > 0, got 0$"):
        SSERequest(URL, read_timeout=0)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("X-Name", "日本-secret", "cannot carry (header values are Latin-1 bytes); percent-encode or base64 it"),
    ("X-Nämé", "x", "header names are ASCII"),
    ("X-Count", 7, "names and values must be str, got a int value"),
])
def test_a_header_http_cannot_carry_is_a_field_error_that_hides_the_value(name: str, value: object, message: str) -> None:
    with pytest.raises(RequestFieldError) as caught:
        SSERequest(URL, headers={name: value})  # type: ignore[dict-item]
    assert caught.value.field == "headers" and message in str(caught.value) and "secret" not in str(caught.value)
    assert SSERequest(URL, headers={"X-Name": "café"}).headers["X-Name"] == "café"  # Latin-1 is sent as is


def test_read_timeout_defaults_to_five_minutes_and_none_means_no_timeout() -> None:
    assert SSERequest(URL).read_timeout == 300.0  # a half-open connection does not hang for ever
    assert SSERequest(URL, read_timeout=None).read_timeout is None


def test_retryable_is_a_property_of_the_error_class() -> None:
    assert not errors.SSEError.retryable
    assert errors.TemporaryHTTPError.retryable and errors.NetworkError.retryable
    fatal = [
        errors.HTTPStatusError,
        errors.ContentTypeError,
        errors.RedirectError,
        errors.RetriesExhaustedError,
        errors.EventTooLargeError,
        errors.ConfigError,
        errors.PluginError,
    ]
    assert not any(cls.retryable for cls in fatal)
    assert all(issubclass(cls, errors.SSEError) for cls in fatal)


def test_status_errors_carry_their_facts() -> None:
    busy = errors.HTTPStatusError.for_status(503, headers={"Retry-After": "2"}, body=b"later", connection_id="c", url=URL)
    assert isinstance(busy, errors.TemporaryHTTPError) and busy.retryable
    assert (busy.status, busy.headers["Retry-After"], busy.body, busy.connection_id, busy.url) == (
        503, "2", b"later", "c", URL
    )
    gone = errors.HTTPStatusError.for_status(404, body=b"<html>nope</html>", connection_id="c", url=URL)
    assert type(gone) is errors.HTTPStatusError and not gone.retryable
    assert "404" in str(gone) and "'c'" in str(gone) and URL in str(gone) and "nope" in str(gone)
    assert errors.HTTPStatusError.for_status(429).retryable


def test_other_errors_carry_their_facts() -> None:
    too_large = errors.EventTooLargeError("big", limit=10, size=11, connection_id="c")
    assert (too_large.limit, too_large.size, too_large.events) == (10, 11, [])
    config = errors.ConfigError("must be a string", key="connections[1].url", path="run.toml")
    assert str(config) == "run.toml: connections[1].url: must be a string"
    plugin = errors.PluginError("boom", plugin="mine", hook="sseplug_handle_event", event_id="7")
    assert (plugin.plugin, plugin.hook, plugin.event_id) == ("mine", "sseplug_handle_event", "7")
    exhausted = errors.RetriesExhaustedError("gave up", attempts=5)
    assert exhausted.attempts == 5


def test_package_exports_exactly_the_public_names() -> None:
    expected = {
        "ErrorPolicy", "EventParser", "RequestContentType", "RequestMethodType", "Route", "SSEError", "SSERequest",
        "SSEResponse", "hookimpl",
    }
    assert expected <= set(sseplug.__all__)
    assert set(sseplug.__all__) - expected <= {"SSEClient"}
    for name in sseplug.__all__:
        assert getattr(sseplug, name).__doc__, name


def test_import_does_not_monkey_patch() -> None:
    code = "import socket, sseplug, gevent.monkey; print(gevent.monkey.is_module_patched('socket'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_version_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sseplug", "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.strip() == f"sseplug {sseplug.__version__}"
