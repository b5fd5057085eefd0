"""Credential header values: sent as they are, shown nowhere (reprs, config errors, trace copies)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sseplug.run.config import parse_config
from urllib3.exceptions import MaxRetryError

from sseplug.errors import ConfigError, HTTPStatusError, NetworkError, RetriesExhaustedError
from sseplug.models import SSERequest
from sseplug.redaction import REDACTED, Secret, public_error, public_url, redacted

TOKEN = "tok-5f1c9e"  # unique strings, so finding one in a text can only mean a leak
KEY = "key-8d2a7b"
COOKIE = "sid-3e6b0c"
PROXY = "prx-71d04a"
ENVIRON = {"TOKEN": TOKEN, "KEY": KEY, "HOST": "127.0.0.1"}

CONFIG = """\
[[connections]]
id = "a"
url = "http://${HOST}:8000/stream"
headers = { Authorization = "Bearer ${TOKEN}", X-Api-Key = "${KEY}", X-Plain = "visible", Cookie = "s=%s" }
""" % COOKIE


def leaks(text: str) -> list[str]:
    return [secret for secret in (TOKEN, KEY, COOKIE, PROXY) if secret in text]


def test_secret_is_its_value_except_in_repr() -> None:
    secret = Secret(f"Bearer {TOKEN}")
    assert repr(secret) == REDACTED and TOKEN not in repr({"Authorization": secret})
    assert secret == f"Bearer {TOKEN}" and str(secret) == f"Bearer {TOKEN}"
    assert secret.encode("latin-1") == f"Bearer {TOKEN}".encode()  # what http.client sends


def test_request_repr_hides_credential_headers_and_keeps_their_values() -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "cookie": f"s={COOKIE}",
               "PROXY-AUTHORIZATION": f"Basic {PROXY}", "X-Plain": "visible"}
    request = SSERequest("http://127.0.0.1:8000/stream", headers=headers)
    assert leaks(repr(request)) == []
    assert "visible" in repr(request)
    assert request.headers == headers
    assert {name: str(value) for name, value in request.headers.items()} == headers


def test_config_reprs_hide_credential_and_environment_headers(tmp_path: Path) -> None:
    config = parse_config(CONFIG, path=tmp_path / "run.toml", environ=ENVIRON)
    connection = config.connections[0]
    for shown in (repr(config), repr(connection), repr(connection.request)):
        assert leaks(shown) == []
        assert "visible" in shown and "http://${HOST}:8000/stream" in shown  # the rest as written
    assert connection.request.headers == {
        "Authorization": f"Bearer {TOKEN}", "X-Api-Key": KEY, "X-Plain": "visible", "Cookie": f"s={COOKIE}"
    }


def test_config_error_about_headers_hides_the_environment_value(tmp_path: Path) -> None:
    text = '[[connections]]\nid = "a"\nurl = "http://127.0.0.1:8000/s"\nheaders = "Bearer ${TOKEN}"\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text, path=tmp_path / "run.toml", environ=ENVIRON)
    assert caught.value.key == "connections[0].headers"
    assert leaks(str(caught.value)) == [] and "expected a table" in str(caught.value)


@pytest.mark.parametrize(("text", "key"), [
    ('[runner]\npool_size = "${TOKEN}"\n[[connections]]\nid = "a"\nurl = "http://127.0.0.1:8000/s"\n', "runner.pool_size"),
    ('[[connections]]\nid = "a"\nurl = "${TOKEN}"\n', "connections[0].url"),
])
def test_config_errors_show_environment_values_as_written(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, path=tmp_path / "run.toml", environ=ENVIRON)
    assert caught.value.key == key and leaks(str(caught.value)) == [] and "'${TOKEN}'" in str(caught.value)


def test_http_error_headers_hide_set_cookie() -> None:
    error = HTTPStatusError("server answered HTTP 401", status=401, headers={"Set-Cookie": f"s={COOKIE}"})
    assert leaks(repr(error.headers)) == [] and error.headers["Set-Cookie"] == f"s={COOKIE}"


def test_redacted_hides_credentials_at_any_depth_and_copies() -> None:
    kwargs = {"status": 200, "headers": {"set-cookie": f"s={COOKIE}", "Content-Type": "text/event-stream"}}
    shown = redacted(kwargs)
    assert leaks(repr(shown)) == [] and "text/event-stream" in repr(shown)
    assert kwargs["headers"]["set-cookie"] == f"s={COOKIE}"  # the original is untouched
    results = [{"Authorization": f"Bearer {TOKEN}"}, ({"X-Api-Key": KEY},)]
    assert leaks(repr(redacted(results))) == [KEY]  # only credential names, unless told all are
    assert leaks(repr(redacted(results, secret=True))) == []


def test_an_error_is_shown_without_the_credentials_its_chain_holds() -> None:
    """The URL an error names and urllib3's path in its cause: no password, no token value."""
    url = "http://user:pw@127.0.0.1:1/s?token=s3cret&tenant=7"
    reason = MaxRetryError(None, "/s?token=s3cret&tenant=7", OSError("refused"))  # type: ignore[arg-type]
    try:
        try:
            raise NetworkError(f"cannot connect: {reason}", connection_id="c", url=url) from reason
        except NetworkError as network:
            raise RetriesExhaustedError(f"gave up (last: {network})", attempts=3, connection_id="c", url=url) from network
    except RetriesExhaustedError as error:
        text = public_error(error)
    assert "s3cret" not in text and "pw@" not in text, text
    assert "url 'http://127.0.0.1:1/s?token=<redacted>&tenant=7'" in text
    assert "url: /s?token=<redacted>&tenant=7" in text and text.startswith("gave up (last: cannot connect: ")


def test_public_url_hides_user_password_and_credential_query_values() -> None:
    assert public_url("https://u:p@h.example:8443/s?feed=a&api_key=xyz&access_token=t#f") == (
        "https://h.example:8443/s?feed=a&api_key=<redacted>&access_token=<redacted>")
    assert public_url("http://127.0.0.1:8000/feed/x?count=3") == "http://127.0.0.1:8000/feed/x?count=3"


def test_an_sse_error_shows_its_url_without_credentials() -> None:
    error = NetworkError("stream broke", connection_id="c", url="http://me:pw@h/s?sig=abc")
    assert str(error) == "stream broke (connection 'c', url 'http://h/s?sig=<redacted>')"
    assert error.url == "http://me:pw@h/s?sig=abc"  # the fact itself is kept
