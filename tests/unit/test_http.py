"""sseplug._http without a socket: the request's headers and where a redirect leads (next_hop)."""

from __future__ import annotations

import pytest
from urllib3 import HTTPHeaderDict

from sseplug._http import check_auth_headers, next_hop, request_headers
from sseplug.errors import PluginError, RedirectError
from sseplug.models import SSERequest
from sseplug.redaction import Secret

URL = "https://api.example.test/stream"
CREDENTIALS = {"authorization", "x-api-key"}


def headers(**given: str) -> HTTPHeaderDict:
    return HTTPHeaderDict({name.replace("_", "-"): value for name, value in given.items()})


# -- next_hop ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_on_the_same_origin_keeps_method_body_and_credentials(status: int) -> None:
    sent = headers(Authorization="Bearer t", Content_Type="application/json")
    hop = next_hop(status, "PUT", URL, "/v2/stream", sent, CREDENTIALS)
    assert hop.method == "PUT" and hop.keeps_body
    assert hop.url == "https://api.example.test/v2/stream"
    assert dict(hop.headers) == {"Authorization": "Bearer t", "Content-Type": "application/json"}


@pytest.mark.parametrize(("status", "method", "becomes_get"), [
    (303, "POST", True), (303, "PUT", True), (303, "GET", True),
    (301, "POST", True), (302, "POST", True), (301, "PUT", False), (302, "GET", False),
    (307, "POST", False), (308, "POST", False),
])
def test_303_and_a_post_moved_by_301_or_302_become_a_get_without_body(status: int, method: str, becomes_get: bool) -> None:
    hop = next_hop(status, method, URL, "/other", headers(Content_Type="application/json"), CREDENTIALS)
    assert (hop.method, hop.keeps_body) == (("GET", False) if becomes_get else (method, True))
    assert ("Content-Type" in hop.headers) is not becomes_get


@pytest.mark.parametrize("location", [
    "http://api.example.test/stream",  # scheme
    "https://other.example.test/stream",  # host
    "https://api.example.test:8443/stream",  # port
    "//elsewhere.test/stream",  # host, scheme-relative
])
def test_credentials_are_dropped_when_scheme_host_or_port_changes(location: str) -> None:
    sent = headers(Authorization="Bearer t", X_Api_Key="k", Accept="text/event-stream")
    hop = next_hop(302, "GET", URL, location, sent, CREDENTIALS)
    assert dict(hop.headers) == {"Accept": "text/event-stream"}
    assert sent["Authorization"] == "Bearer t"  # the headers given are not changed


def test_an_explicit_default_port_is_the_same_origin() -> None:
    hop = next_hop(302, "GET", URL, "https://API.example.test:443/x", headers(Authorization="Bearer t"), CREDENTIALS)
    assert hop.headers["Authorization"] == "Bearer t"


@pytest.mark.parametrize(("location", "says"), [
    ("", "without a Location header"),
    ("http://host:99999/x", "malformed Location"),
    ("http://[::1/x", "malformed Location"),
    ("ftp://files.example.test/x", "not an http:// or https:// URL"),
    ("http:///no-host", "not an http:// or https:// URL"),
])
def test_a_bad_location_is_a_redirect_error(location: str, says: str) -> None:
    with pytest.raises(RedirectError, match=says) as caught:
        next_hop(302, "GET", URL, location, headers(), CREDENTIALS, connection_id="c")
    assert (caught.value.connection_id, caught.value.url) == ("c", URL)


# -- request_headers -----------------------------------------------------------------------------


def test_headers_merge_defaults_the_request_and_the_auth_plugins_first_called_winning() -> None:
    request = SSERequest(URL, headers={"X-Trace": "1", "authorization": "Basic old"})
    made, credentials = request_headers(
        request, [{"Authorization": "Bearer first"}, {"Authorization": "Bearer second", "X-Tenant": "t"}], "")
    assert dict(made) == {
        "Accept": "text/event-stream", "Cache-Control": "no-cache", "X-Trace": "1",
        "Authorization": "Bearer first", "X-Tenant": "t",
    }
    assert {"authorization", "x-tenant"} <= credentials and "x-trace" not in credentials


def test_request_headers_built_from_secrets_are_credentials() -> None:
    request = SSERequest(URL, headers={"X-Token": Secret("s3cret"), "X-Plain": "p"})
    made, credentials = request_headers(request, [], "")
    assert made["X-Token"] == "s3cret"
    assert "x-token" in credentials and "x-plain" not in credentials


def test_last_event_id_is_sent_as_utf8_bytes_only_when_known() -> None:
    made, _ = request_headers(SSERequest(URL), [], "é-7")
    assert made.getlist("Last-Event-ID") == ["é-7".encode()]  # type: ignore[comparison-overlap]
    assert "Last-Event-ID" not in request_headers(SSERequest(URL), [], "")[0]


def test_auth_answers_must_be_mappings_of_headers_http_can_carry() -> None:
    assert check_auth_headers([{"A": "1"}, {}]) == [{"A": "1"}, {}]
    with pytest.raises(PluginError, match="returned a list, expected a mapping") as caught:
        check_auth_headers([["A", "1"]], connection_id="c", url=URL)
    assert (caught.value.hook, caught.value.connection_id) == ("sseplug_auth_headers", "c")
    with pytest.raises(PluginError, match="returned header 'X-Bad'") as caught:
        check_auth_headers([{"X-Bad": "line\nbreak"}])
    assert "line" not in str(caught.value)  # the value is never shown
