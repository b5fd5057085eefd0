"""${ENV} expansion of a parsed config document: the reference forms, errors keyed, headers made Secret."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from sseplug.errors import ConfigError
from sseplug.redaction import REDACTED, FromEnvironment, Secret, public_url
from sseplug.run.environment import expand, join_key


def header_after(value: str, environ: dict[str, str]) -> Any:
    """The header ``X`` of the first connection once ``value`` is expanded."""
    return expand({"connections": [{"headers": {"X": value}}]}, environ)["connections"][0]["headers"]["X"]


def expand_error(document: dict[str, Any], environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        expand(document, environ or {})
    assert caught.value.path is None  # the config loader adds the file's name
    return caught.value


@pytest.mark.parametrize(
    ("value", "environ", "expected"),
    [
        ("${A}", {"A": "1"}, "1"),
        ("x${A}y${B}z", {"A": "1", "B": "2"}, "x1y2z"),
        ("${A}", {"A": ""}, ""),
        ("${A:-dflt}", {}, "dflt"),
        ("${A:-dflt}", {"A": ""}, "dflt"),
        ("${A:-dflt}", {"A": "set"}, "set"),
        ("${A:-}", {}, ""),
        ("${A:?needed}", {"A": "ok"}, "ok"),
        ("$${A}", {"A": "1"}, "${A}"),
        ("cost $$5", {}, "cost $5"),
        ("cost $5 and $ alone", {}, "cost $5 and $ alone"),
        ("trailing $", {}, "trailing $"),
    ],
)
def test_env_expansion(value: str, environ: dict[str, str], expected: str) -> None:
    assert header_after(value, environ) == expected


def test_unset_variable_is_an_error_naming_it_and_the_key() -> None:
    err = expand_error({"connections": [{"headers": {"Authorization": "Bearer ${ORDERS_TOKEN}"}}]})
    assert err.key == "connections[0].headers.Authorization"
    assert "ORDERS_TOKEN is not set" in err.message and "${ORDERS_TOKEN:-default}" in err.message


@pytest.mark.parametrize("environ", [{}, {"TOKEN": ""}])
def test_required_variable_gives_its_message(environ: dict[str, str]) -> None:
    err = expand_error({"connections": [{"headers": {"X": "${TOKEN:?export TOKEN first}"}}]}, environ)
    assert err.key == "connections[0].headers.X"
    assert "TOKEN is unset or empty: export TOKEN first" in err.message
    assert "it is required" in expand_error({"url": "${TOKEN:?}"}, environ).message


@pytest.mark.parametrize("value", ["${}", "${1A}", "${A-b}", "${A B}", "${A"])
def test_malformed_reference_is_an_error(value: str) -> None:
    err = expand_error({"connections": [{"headers": {"X": value}}]})
    assert err.key == "connections[0].headers.X" and "malformed environment reference" in err.message
    assert "${NAME:-default}" in err.message  # what to write instead


def test_expansion_reaches_nested_strings_and_lists_and_leaves_other_values() -> None:
    document = {
        "runner": {"state_dir": "${DIR}", "plugins": {"disable": ["${OFF}"]}, "pool_size": 3},
        "connections": [{"id": "${ID}", "body": {"q": ["${Q}", {"deep": "${Q}"}], "n": 1, "on": True}}],
        "plugins": {"jsonl": {"path": "${DIR}/events.jsonl", "more": {"list": ["${Q}"]}}},
    }
    environ = {"DIR": "/srv/state", "OFF": "stdout", "ID": "orders", "Q": "v"}
    assert expand(document, environ) == {
        "runner": {"state_dir": "/srv/state", "plugins": {"disable": ["stdout"]}, "pool_size": 3},
        "connections": [{"id": "orders", "body": {"q": ["v", {"deep": "v"}], "n": 1, "on": True}}],
        "plugins": {"jsonl": {"path": "/srv/state/events.jsonl", "more": {"list": ["v"]}}},
    }
    assert document["runner"]["state_dir"] == "${DIR}"  # a new document: the parsed one is left alone


def test_keys_are_never_expanded() -> None:
    document = {"connections": [{"headers": {"${A}": "${A}"}}]}
    assert expand(document, {"A": "x"}) == {"connections": [{"headers": {"${A}": "x"}}]}


def test_error_keys_name_list_items_and_quote_non_bare_names() -> None:
    assert expand_error({"plugins": {"jsonl": {"files": ["ok", "${MISSING}"]}}}).key == "plugins.jsonl.files[1]"
    assert expand_error({"runner": {"plugins": {"disable": ["${OFF}"]}}}).key == "runner.plugins.disable[0]"
    assert expand_error({"plugins": {"pkg.sink": {"a b": "${M}"}}}).key == 'plugins."pkg.sink"."a b"'


def test_a_header_built_from_the_environment_is_a_secret() -> None:
    value = header_after("Bearer ${TOKEN}", {"TOKEN": "s3cret"})
    assert isinstance(value, Secret) and value == "Bearer s3cret" and repr(value) == REDACTED
    assert isinstance(header_after("${TOKEN:-fallback}", {}), Secret)  # a default stands for the variable


def test_other_values_from_the_environment_show_their_references_not_their_values() -> None:
    assert type(header_after("plain", {})) is str
    assert type(header_after("cost $$5", {})) is str  # an escaped $ references nothing
    expanded = expand({"connections": [{"url": "http://h/s?k=${URL_TOKEN}", "body": {"headers": "${URL_TOKEN}"}}]},
                      {"URL_TOKEN": "t0p s3cret"})
    url = expanded["connections"][0]["url"]
    assert url == "http://h/s?k=t0p s3cret" and type(url) is FromEnvironment  # used as its value
    assert repr(url) == "'http://h/s?k=${URL_TOKEN}'" and "s3cret" not in repr(expanded)  # as written
    assert public_url(url) == "http://h/s?k=${URL_TOKEN}"  # also where the URL is percent-encoded
    assert type(expanded["connections"][0]["body"]["headers"]) is FromEnvironment  # the body's, not a header
    assert repr(pickle.loads(pickle.dumps(url))) == repr(url)


@pytest.mark.parametrize(
    ("prefix", "name", "key"),
    [("", "runner", "runner"), ("plugins", "jsonl", "plugins.jsonl"), ("plugins", "pkg.sink", 'plugins."pkg.sink"'),
     ("connections[0].headers", "X-Id_2", "connections[0].headers.X-Id_2"), ("a", "é", 'a."é"'), ("a", "", 'a.""')],
)
def test_join_key_quotes_what_toml_must_quote(prefix: str, name: str, key: str) -> None:
    assert join_key(prefix, name) == key
