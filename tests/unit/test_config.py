"""Runner config: loading, validation (TOML types here, values by SSERequest), typed readers for plugins
and the precise messages of ConfigError. ${ENV} expansion has its own tests (test_environment)."""

from __future__ import annotations

import dataclasses
import inspect
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import pytest

from sseplug.errors import ConfigError
from sseplug.models import (
    DEFAULT_MAX_EVENT_SIZE,
    DEFAULT_POOL_SIZE,
    RequestContentType,
    RequestFieldError,
    RequestMethodType,
    SSERequest,
    SSEResponse,
)
from sseplug.redaction import REDACTED
from sseplug.route import ErrorPolicy
from sseplug.run.config import Config, ConnectionConfig, RunnerConfig, TableReader, load_config, parse_config
from sseplug.run.config_spec import names_of

DESIGN_EXAMPLE = """\
[runner]
pool_size = 1000
plugins = { disable = [] }        # built-in or installed plugin names
state_dir = ".sseplug"             # checkpoints

[[connections]]
id = "orders"
url = "https://example.test/stream"
method = "POST"
headers = { Authorization = "Bearer ${ORDERS_TOKEN}" }
body = { topic = "orders" }
retry = true
max_retries = 5
read_timeout = 60

[plugins.jsonl]                    # each plugin reads its own table
path = "events.jsonl"
"""

CONNECTION = """\
[[connections]]
id = "a"
url = "http://127.0.0.1:8000/stream"
"""

KNOWN = ("stdout", "jsonl", "sqlite")


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return tmp_path / "sseplug.toml"


def parse(
    text: str,
    path: Path,
    environ: Mapping[str, str] | None = None,
    known_plugins: Collection[str] | None = None,
) -> Config:
    return parse_config(text, path=path, environ=environ or {}, known_plugins=known_plugins)


def error(
    text: str,
    path: Path,
    environ: Mapping[str, str] | None = None,
    known_plugins: Collection[str] | None = None,
) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(text, path, environ, known_plugins)
    assert caught.value.path == str(path)
    return caught.value


def connection_error(lines: str, path: Path) -> ConfigError:
    """The error of a config whose only connection is CONNECTION plus ``lines``."""
    return error(CONNECTION + lines, path)


# -- loading ------------------------------------------------------------------------------------


def test_design_example_loads_with_env_vars(config_path: Path) -> None:
    config_path.write_text(DESIGN_EXAMPLE, encoding="utf-8")
    config = load_config(config_path, environ={"ORDERS_TOKEN": "s3cret"})
    assert config.path == config_path
    assert config.runner == RunnerConfig(
        pool_size=1000, disable=(), state_dir=config_path.parent / ".sseplug", shutdown_timeout=10.0
    )
    assert config.connections == (
        ConnectionConfig(
            id="orders",
            request=SSERequest(
                url="https://example.test/stream",
                method="POST",
                headers={"Authorization": "Bearer s3cret"},
                body={"topic": "orders"},
                retry=True,
                max_retries=5,
                read_timeout=60.0,
                max_event_size=DEFAULT_MAX_EVENT_SIZE,
            ),
        ),
    )
    assert config.plugins == {"jsonl": {"path": "events.jsonl"}}
    assert config.plugin_config("jsonl") == {"path": "events.jsonl"}
    assert config.plugin_config("redis") == {}


def test_connection_builds_its_request_with_callbacks(config_path: Path) -> None:
    config = parse(DESIGN_EXAMPLE, config_path, {"ORDERS_TOKEN": "t"})
    on_data, on_error, on_done = print, print, print
    request = config.connections[0].request_with(on_data=on_data, on_error=on_error, on_done=on_done)
    assert request.method is RequestMethodType.POST
    assert request.headers == {"Authorization": "Bearer t"}
    assert request.content_type is RequestContentType.json
    assert request.encoded_body() == b'{"topic":"orders"}'
    assert (request.read_timeout, request.max_retries, request.retry) == (60.0, 5, True)
    assert (request.on_data, request.on_error, request.on_done) == (on_data, on_error, on_done)
    assert request.last_event_id == ""


def test_defaults_of_a_minimal_config(config_path: Path) -> None:
    config = parse(CONNECTION, config_path)
    assert config.runner == dataclasses.replace(RunnerConfig(), state_dir=config_path.parent / ".sseplug")
    assert config.connections == (ConnectionConfig(id="a", request=SSERequest("http://127.0.0.1:8000/stream")),)
    assert config.plugins == {}
    request = config.connections[0].request_with()
    assert request.method is RequestMethodType.GET and request.body is None


def test_dataclasses_are_frozen_and_slotted(config_path: Path) -> None:
    config = parse(CONNECTION, config_path)
    for value in (config, config.runner, config.connections[0]):
        assert not hasattr(value, "__dict__")
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, dataclasses.fields(value)[0].name, None)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.path == str(path) and caught.value.key is None
    assert "does not exist" in caught.value.message
    assert str(caught.value).startswith(f"{path}: ")


def test_directory_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, environ={})
    path = tmp_path / "latin1.toml"
    path.write_bytes(CONNECTION.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path, environ={})


def test_toml_syntax_error_names_the_line(config_path: Path) -> None:
    config_path.write_text(CONNECTION + "retry = \n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(config_path, environ={})
    assert caught.value.path == str(config_path)
    assert "invalid TOML" in caught.value.message and "line 4" in caught.value.message


def test_relative_state_dir_is_resolved_against_the_config_directory(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "sseplug.toml"
    config = parse('[runner]\nstate_dir = "state/here"\n' + CONNECTION, path)
    assert config.runner.state_dir == tmp_path / "etc" / "state" / "here"
    assert config.runner.state_dir.is_absolute()


def test_absolute_state_dir_is_kept(config_path: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    config = parse(f'[runner]\nstate_dir = "{target.as_posix()}"\n' + CONNECTION, config_path)
    assert config.runner.state_dir == target


def test_runner_values(config_path: Path) -> None:
    text = '[runner]\npool_size = 7\nshutdown_timeout = 2\nplugins = { disable = ["stdout"] }\n' + CONNECTION
    runner = parse(text, config_path, known_plugins=KNOWN).runner
    assert (runner.pool_size, runner.shutdown_timeout, runner.disable) == (7, 2.0, ("stdout",))
    assert isinstance(runner.shutdown_timeout, float)


def test_method_is_case_insensitive_and_normalized(config_path: Path) -> None:
    config = parse(CONNECTION + 'method = "post"\nbody = "a=1"\n', config_path)
    assert config.connections[0].request.method == "POST"
    assert config.connections[0].request.encoded_body() == b"a=1"


# -- http_listen ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9100", ("127.0.0.1", 9100)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
        ("localhost:65535", ("localhost", 65535)),
        ("metrics.example.test:9100", ("metrics.example.test", 9100)),
        ("[::1]:9100", ("::1", 9100)),
    ],
)
def test_http_listen_is_parsed(config_path: Path, text: str, expected: tuple[str, int]) -> None:
    config = parse(f'[runner]\nhttp_listen = "{text}"\n' + CONNECTION, config_path)
    assert config.runner.http_listen == expected


# -- ${ENV} expansion (the rules: test_environment.py) -------------------------------------------


def test_env_errors_name_the_file_and_the_key(config_path: Path) -> None:
    err = error(DESIGN_EXAMPLE, config_path, {})
    assert err.key == "connections[0].headers.Authorization" and "ORDERS_TOKEN is not set" in err.message


def test_a_header_from_the_environment_stays_secret_in_the_connection(config_path: Path) -> None:
    connection = parse(DESIGN_EXAMPLE, config_path, {"ORDERS_TOKEN": "s3cret"}).connections[0]
    assert "s3cret" not in repr(connection) and REDACTED in repr(connection)
    assert connection.request.headers["Authorization"] == "Bearer s3cret"


# -- connections ----------------------------------------------------------------------------------


def test_connections_must_be_an_array_of_tables(config_path: Path) -> None:
    err = error('[connections]\nid = "a"\n', config_path)
    assert err.key == "connections" and "expected an array of tables, got a table" in err.message
    err = error("connections = [1]\n", config_path)
    assert err.key == "connections[0]" and "expected a table" in err.message


@pytest.mark.parametrize("missing", ["id", "url"])
def test_missing_id_or_url(config_path: Path, missing: str) -> None:
    lines = [line for line in CONNECTION.splitlines() if not line.startswith(missing)]
    err = error(CONNECTION + "\n".join(lines) + "\n", config_path)
    assert err.key == f"connections[1].{missing}"
    assert f"missing key {missing!r}" in err.message


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/stream", "127.0.0.1:8000/stream", "http://", "http:///stream", "/stream"]
)
def test_url_must_be_http_with_a_host(config_path: Path, url: str) -> None:
    err = error(f'[[connections]]\nid = "a"\nurl = "{url}"\n', config_path)
    assert err.key == "connections[0].url"
    assert "is not an http:// or https:// URL with a host" in err.message


def test_duplicate_ids_name_both_indexes(config_path: Path) -> None:
    other = CONNECTION.replace('"a"', '"b"')
    err = error(CONNECTION + other + CONNECTION, config_path)
    assert err.key == "connections[2].id"
    assert "duplicate id 'a'" in err.message and "connections[0]" in err.message
    assert "connections[2]" in err.message


@pytest.mark.parametrize("value", ['""', '"has space"', '"slash/no"', '"é"', "7"])
def test_invalid_ids(config_path: Path, value: str) -> None:
    err = error(f'[[connections]]\nid = {value}\nurl = "http://127.0.0.1/"\n', config_path)
    assert err.key == "connections[0].id"
    assert "invalid id" in err.message or "expected a string" in err.message


def test_unknown_connection_key(config_path: Path) -> None:
    err = connection_error("max_retry = 3\n", config_path)
    assert err.key == "connections[0].max_retry"
    assert "unknown key 'max_retry' in connections[0] (did you mean 'max_retries'?)" in err.message
    assert "known keys: id, url, method" in err.message


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("max_retries", "true", "true (boolean)"),
        ("max_retries", '"5"', '"5" (string)'),
        ("max_retries", "1.5", "1.5 (float)"),
        ("max_event_size", "1.0", "1.0 (float)"),
        ("max_event_size", "false", "false (boolean)"),
    ],
)
def test_integer_keys_must_be_toml_integers(config_path: Path, name: str, value: str, shown: str) -> None:
    err = connection_error(f"{name} = {value}\n", config_path)
    example = getattr(SSERequest(url="http://127.0.0.1/"), name)
    assert err.key == f"connections[0].{name}"
    assert err.message == f"expected an integer, got {shown}; e.g. {name} = {example}"


@pytest.mark.parametrize("name", ["read_timeout", "head_timeout"])
@pytest.mark.parametrize(("value", "shown"), [('"10"', '"10" (string)'), ("true", "true (boolean)")])
def test_timeouts_must_be_toml_numbers(config_path: Path, name: str, value: str, shown: str) -> None:
    err = connection_error(f"{name} = {value}\n", config_path)
    assert err.key == f"connections[0].{name}" and f"expected a number, got {shown}; e.g. {name} = " in err.message


def test_timeouts_default_to_the_library_defaults(config_path: Path) -> None:
    connection = parse(CONNECTION, config_path).connections[0]
    request = SSERequest(url="http://127.0.0.1/")
    assert (connection.request.read_timeout, connection.request.head_timeout) == (request.read_timeout,
                                                                                  request.head_timeout)
    assert parse(CONNECTION + "head_timeout = 2.5\n", config_path).connections[0].request.head_timeout == 2.5


def test_a_connection_holds_its_request_and_every_request_default_is_the_request_default(config_path: Path) -> None:
    """SSERequest holds the request keys, their defaults and their rules: a connection parsed
    without them has the request SSERequest makes of the URL alone; nothing is listed twice."""
    request = SSERequest(url="http://127.0.0.1:8000/stream")
    assert parse(CONNECTION, config_path).connections[0].request == request
    assert [spec.name for spec in dataclasses.fields(ConnectionConfig)] == [
        "id", "request", "sinks", "events", "where", "errors"]
    request_keys = {spec.name for spec in dataclasses.fields(SSERequest)} & set(names_of("connections[]"))
    assert request_keys == {"url", "method", "headers", "body", "retry", "max_retries", "read_timeout", "head_timeout",
                            "max_event_size", "reconnect", "resume_url", "end_events", "end_data", "error_events",
                            "retry_delay", "verify", "cert"}


def test_the_connection_keys_are_the_connection_config_fields(config_path: Path) -> None:
    err = connection_error("timeout = 1\n", config_path)
    assert err.message.endswith(f"; known keys: {', '.join(names_of('connections[]'))}")


def test_the_runner_pool_size_default_is_the_client_default() -> None:
    from sseplug.client import SSEClient

    client_default = inspect.signature(SSEClient.__init__).parameters["pool_size"].default
    assert RunnerConfig().pool_size == DEFAULT_POOL_SIZE == client_default


def test_header_with_forbidden_characters_is_rejected_by_the_request_check(config_path: Path) -> None:
    err = connection_error("headers = { 'Bad Name' = 'x' }\n", config_path)
    assert err.key == "connections[0].headers" and "forbidden character" in err.message
    err = connection_error('headers = { X = "a\\r\\nInjected: 1" }\n', config_path)
    assert err.key == "connections[0].headers" and "forbidden character" in err.message


def test_get_with_a_body_is_an_error(config_path: Path) -> None:
    err = connection_error('body = { topic = "orders" }\n', config_path)
    assert err.key == "connections[0].body"
    assert "GET request carries no body" in err.message and 'method = "POST"' in err.message


def test_body_must_be_json_serializable(config_path: Path) -> None:
    err = connection_error('method = "POST"\nbody = { at = 2024-01-01T00:00:00Z }\n', config_path)
    assert err.key == "connections[0].body.at" and "cannot be sent as JSON" in err.message
    err = connection_error('method = "POST"\nbody = { n = [1, nan] }\n', config_path)
    assert err.key == "connections[0].body.n[1]" and "cannot be sent as JSON" in err.message


def test_request_check_errors_map_to_the_field_key(
    config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever SSERequest rejects, the config rejects too, under the connection's key for that field."""
    from sseplug.run import config as config_module

    class Strict:
        def __init__(self, **kwargs: object) -> None:
            raise RequestFieldError("max_event_size", "stricter library rule: it contains ': ' too")

    monkeypatch.setattr(config_module, "SSERequest", Strict)
    err = error(CONNECTION, config_path)
    assert err.key == "connections[0].max_event_size"
    assert err.message == "stricter library rule: it contains ': ' too"


@pytest.mark.parametrize(
    ("lines", "field"),
    [
        ('url = "ftp://h/"', "url"),
        ('method = "GET /"', "method"),
        ("headers = { 'Bad Name' = 'x' }", "headers"),
        ('body = "x"', "body"),
        ("max_retries = -1", "max_retries"),
        ("read_timeout = 0", "read_timeout"),
        ("head_timeout = -1", "head_timeout"),
        ("max_event_size = 0", "max_event_size"),
    ],
)
def test_library_messages_come_through_unchanged(config_path: Path, lines: str, field: str) -> None:
    """The config repeats no value rule: the message is SSERequest's own, the key the connection's."""
    url = "" if field == "url" else 'url = "http://127.0.0.1:8000/stream"\n'
    err = error(f'[[connections]]\nid = "a"\n{url}{lines}\n', config_path)
    with pytest.raises(RequestFieldError) as caught:
        SSERequest(**{"url": "http://127.0.0.1:8000/stream", **tomllib.loads(lines)})
    assert caught.value.field == field
    assert (err.key, err.message) == (f"connections[0].{field}", caught.value.message)


# -- one value: its key, what is wrong with it, or what it becomes ----------------------------------


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        pytest.param("[runner]\npool_size = 1\n", "connections", "no connections configured", id="no-connections"),
        pytest.param("connections = []\n", "connections", "no connections configured", id="empty-connections"),
        pytest.param('[[connections]]\nid = "a"\nurl = 8000\n', "connections[0].url",
                     "expected a string, got 8000 (integer)", id="url-type"),
        pytest.param(CONNECTION + "method = 1\n", "connections[0].method", "expected a string", id="method-type"),
        *(pytest.param(CONNECTION + f"method = {value}\n", "connections[0].method", "is not an HTTP method",
                       id=f"method-{value}") for value in ('"GET /"', '"two words"', '""')),
        pytest.param(CONNECTION + 'method = "GET /"\nmax_retries = -1\n', "connections[0].method",
                     "is not an HTTP method", id="the-first-problem-wins"),
        pytest.param(CONNECTION + "max_retries = -1\n", "connections[0].max_retries",
                     "expected an integer >= 0, got -1", id="max_retries-range"),
        *(pytest.param(CONNECTION + f"max_event_size = {value}\n", "connections[0].max_event_size",
                       "expected an integer >= 1", id=f"max_event_size-{value}") for value in ("0", "-1")),
        *(pytest.param(CONNECTION + f"{name} = {value}\n", f"connections[0].{name}", "number of seconds > 0",
                       id=f"{name}-{value}")
          for name in ("read_timeout", "head_timeout") for value in ("0", "-1.5", "nan", "inf")),
        pytest.param(CONNECTION + 'headers = ["Authorization: x"]\n', "connections[0].headers",
                     "expected a table, got an array", id="headers-type"),
        *(pytest.param(CONNECTION + f"headers = {{ X-Count = {value} }}\n", "connections[0].headers.X-Count",
                       "expected a string header value", id=f"header-value-{value}")
          for value in ("1", "true", '["a"]', "{ nested = 'x' }")),
        pytest.param(CONNECTION + "headers = { 'X.Y' = 1 }\n", 'connections[0].headers."X.Y"',
                     "expected a string header value", id="quoted-key-name"),
        *(pytest.param(CONNECTION + f"retry = {value}\n", "connections[0].retry", "expected true or false",
                       id=f"retry-{value}") for value in ('"yes"', "1")),
        *(pytest.param(CONNECTION + f'method = "POST"\nbody = {value}\n', "connections[0].body",
                       "expected a table or array", id=f"body-{value}") for value in ("5", "true", "2024-01-01")),
        pytest.param(CONNECTION + 'reconnect = "sometimes"\n', "connections[0].reconnect", "one of", id="reconnect"),
        pytest.param(CONNECTION + 'resume_url = "/relative"\n', "connections[0].resume_url",
                     "is not an http:// or https:// URL", id="resume_url"),
        pytest.param(CONNECTION + 'end_data = "[DONE]"\n', "connections[0].end_data", "an array of strings",
                     id="end_data"),
        pytest.param(CONNECTION + "verify = 1\n", "connections[0].verify",
                     "expected true, false or the path of a CA bundle", id="verify-type"),
        pytest.param(CONNECTION + 'verify = "no-such-ca.pem"\n', "connections[0].verify",
                     "no-such-ca.pem' does not exist", id="verify-missing-file"),
        pytest.param(CONNECTION + 'cert = ["only-one.pem"]\n', "connections[0].cert",
                     "expected a certificate path or [certificate, key] paths", id="cert-shape"),
        pytest.param(CONNECTION + 'cert = ["c.pem", "k.pem"]\n', "connections[0].cert", "does not exist",
                     id="cert-missing-files"),
        *(pytest.param(f"[runner]\npool_size = {value}\n" + CONNECTION, "runner.pool_size",
                       "expected an integer >= 1", id=f"pool_size-{value}") for value in ("0", '"ten"', "true", "-3", "2.5")),
        *(pytest.param(f"[runner]\nshutdown_timeout = {value}\n" + CONNECTION, "runner.shutdown_timeout",
                       "number of seconds > 0", id=f"shutdown_timeout-{value}") for value in ("0", "-1", '"10"', "false")),
        pytest.param("[runner]\nstate_dir = 1\n" + CONNECTION, "runner.state_dir", "expected a string", id="state_dir"),
        pytest.param("[runner]\nhttp_listen = 9100\n" + CONNECTION, "runner.http_listen", "expected a string",
                     id="http_listen-type"),
        *(pytest.param(f'[runner]\nhttp_listen = "{text}"\n' + CONNECTION, "runner.http_listen", fragment,
                       id=f"http_listen-{text}")
          for text, fragment in [
              ("127.0.0.1", "port from 1 to 65535"), ("127.0.0.1:0", "port from 1 to 65535"),
              ("127.0.0.1:65536", "port from 1 to 65535"), ("127.0.0.1:http", "port from 1 to 65535"),
              (":9100", "not an IP address or host name"), ("999.1.1.1:9100", "not an IP address or host name"),
              ("bad host:9100", "not an IP address or host name"), ("::1:9100", "in brackets"),
              ("[127.0.0.1]:9100", "not an IPv6 address"),
          ]),
        pytest.param("runner = 1\n" + CONNECTION, "runner", "expected a table", id="runner-type"),
        pytest.param("[runner]\nplugins = { enable = [] }\n" + CONNECTION, "runner.plugins.enable",
                     "known keys: disable", id="runner-plugins-unknown-key"),
        pytest.param('[runner]\nplugins = ["stdout"]\n' + CONNECTION, "runner.plugins", "disable = [...]",
                     id="runner-plugins-type"),
        *(pytest.param(f"[runner]\nplugins = {{ disable = {value} }}\n" + CONNECTION, "runner.plugins.disable",
                       "expected an array of plugin names", id=f"disable-{value}")
          for value in ('"stdout"', "{ stdout = true }")),
        *(pytest.param(f'[runner]\nplugins = {{ disable = ["stdout", {value}] }}\n' + CONNECTION,
                       "runner.plugins.disable[1]", "expected a plugin name", id=f"disable-item-{value}")
          for value in ("1", '""', "true")),
        *(pytest.param(f"[runner]\nplugins = {{ modules = {value} }}\n" + CONNECTION, key, fragment,
                       id=f"modules-{value}")
          for value, key, fragment in [
              ('"handlers"', "runner.plugins.modules", "expected an array of module names"),
              ('["a-b"]', "runner.plugins.modules[0]", 'expected a Python module name such as "handlers"'),
              ('["ok", 3]', "runner.plugins.modules[1]", "got 3 (integer)"),
              ('["x..y"]', "runner.plugins.modules[0]", "expected a Python module name"),
          ]),
        pytest.param('[runner]\nerrors = { action = "drop" }\n' + CONNECTION, "runner.errors.action",
                     "expected one of", id="runner-errors"),
        pytest.param(CONNECTION + "[plugins]\njsonl = 'e.jsonl'\n", "plugins.jsonl", "[plugins.jsonl] table",
                     id="plugin-table-type"),
        pytest.param(CONNECTION + "[plugins]\ndisable = ['stdout']\n", "plugins.disable", "belongs under [runner]",
                     id="disable-in-plugins"),
    ],
)
def test_a_bad_value_names_its_key_and_says_what_is_wrong(config_path: Path, text: str, key: str, fragment: str) -> None:
    err = error(text, config_path)
    assert (err.key, fragment in err.message) == (key, True), err.message


@pytest.mark.parametrize(
    ("lines", "value", "expected"),
    [
        pytest.param("max_retries = 0\n", lambda c: c.connections[0].request.max_retries, 0, id="max_retries-zero"),
        pytest.param("read_timeout = 0.5\n", lambda c: c.connections[0].request.read_timeout, 0.5, id="read_timeout-fraction"),
        pytest.param('method = "report"\n', lambda c: c.connections[0].request.method, "REPORT", id="any-method"),
        pytest.param("", lambda c: c.runner.http_listen, None, id="http_listen-off-by-default"),
        pytest.param('[runner]\nplugins = { disable = ["anything"] }\n', lambda c: c.runner.disable, ("anything",),
                     id="disable-any-name-without-known-plugins"),
    ],
)
def test_a_good_value_is_kept(config_path: Path, lines: str, value: Any, expected: Any) -> None:
    text = lines + CONNECTION if lines.startswith("[runner]") else CONNECTION + lines
    assert value(parse(text, config_path)) == expected


def test_id_accepts_its_whole_alphabet(config_path: Path) -> None:
    text = '[[connections]]\nid = "Az09_.:-"\nurl = "http://127.0.0.1/"\n'
    assert parse(text, config_path).connections[0].id == "Az09_.:-"


# -- runner ---------------------------------------------------------------------------------------


def test_pool_size_message_shows_the_bad_value_and_an_example(config_path: Path) -> None:
    err = error('[runner]\npool_size = "ten"\n' + CONNECTION, config_path)
    assert 'got "ten" (string)' in err.message and "pool_size = 1000" in err.message
    err = error("[runner]\npool_size = true\n" + CONNECTION, config_path)
    assert "got true (boolean)" in err.message


def test_unknown_runner_key(config_path: Path) -> None:
    err = error("[runner]\npool_sise = 10\n" + CONNECTION, config_path)
    assert err.key == "runner.pool_sise"
    assert "unknown key 'pool_sise' in [runner] (did you mean 'pool_size'?)" in err.message
    assert "known keys: pool_size, plugins, state_dir, shutdown_timeout, http_listen" in err.message


def test_unknown_top_level_table(config_path: Path) -> None:
    err = error("[runer]\npool_size = 1\n" + CONNECTION, config_path)
    assert err.key == "runer"
    assert "unknown key 'runer' at the top level (did you mean 'runner'?)" in err.message
    assert "known keys: runner, connections, plugins" in err.message


def test_disable_unknown_plugin_lists_known_names_sorted(config_path: Path) -> None:
    text = '[runner]\nplugins = { disable = ["stdout", "jsnl"] }\n' + CONNECTION
    err = error(text, config_path, known_plugins=KNOWN)
    assert err.key == "runner.plugins.disable[1]"
    assert "unknown plugin 'jsnl' (did you mean 'jsonl'?)" in err.message
    assert "known plugins: jsonl, sqlite, stdout" in err.message


def test_unknown_plugin_table_lists_known_names_sorted(config_path: Path) -> None:
    err = error(CONNECTION + "[plugins.kafka]\ntopic = 't'\n", config_path, known_plugins=KNOWN)
    assert err.key == "plugins.kafka"
    assert "unknown plugin 'kafka'" in err.message and "known plugins: jsonl, sqlite, stdout" in err.message


def test_plugin_tables_are_free_form(config_path: Path) -> None:
    text = CONNECTION + "[plugins.jsonl]\npath = 'e.jsonl'\nanything = { goes = [1, 2] }\n"
    config = parse(text, config_path, known_plugins=KNOWN)
    assert config.plugin_config("jsonl") == {"path": "e.jsonl", "anything": {"goes": [1, 2]}}


def test_error_string_names_file_key_and_problem(config_path: Path) -> None:
    err = error("[runner]\npool_size = 0\n" + CONNECTION, config_path)
    assert str(err).startswith(f"{config_path}: runner.pool_size: expected an integer >= 1")


# -- local hook modules -------------------------------------------------------------------------


def test_local_modules_are_listed_and_become_known_plugin_names(config_path: Path) -> None:
    text = (
        '[runner]\nplugins = { modules = ["handlers", "pkg.sink"], disable = ["handlers"] }\n'
        + CONNECTION
        + "[plugins.\"pkg.sink\"]\npath = \"x\"\n"
    )
    config = parse(text, config_path, known_plugins=KNOWN)
    assert config.runner.modules == ("handlers", "pkg.sink")
    assert config.runner.disable == ("handlers",)
    assert config.plugin_config("pkg.sink") == {"path": "x"}


# -- typed readers of plugin tables -------------------------------------------------------------


def plugin_table(path: Path, table: str, *, known: Collection[str] = ("a", "b", "c")) -> TableReader:
    """The reader of ``[plugins.mine]`` holding ``table``, as a plugin gets it."""
    return parse(CONNECTION + f"[plugins.mine]\n{table}\n", path).plugin_settings("mine", known=known)


def reader_error(path: Path, table: str, read: Any) -> ConfigError:
    """The error ``read(reader)`` raises for ``[plugins.mine]`` holding ``table``."""
    with pytest.raises(ConfigError) as caught:
        read(plugin_table(path, table))
    assert caught.value.path == str(path)
    return caught.value


def test_plugin_settings_reject_unknown_keys(config_path: Path) -> None:
    err = reader_error(config_path, "a = 1\nbb = 2", lambda read: None)
    assert err.key == "plugins.mine.bb"
    assert err.message == "unknown key 'bb' in [plugins.mine] (did you mean 'b'?); known keys: a, b, c"
    assert str(err).startswith(f"{config_path}: plugins.mine.bb: unknown key")


def test_plugin_settings_of_a_missing_table_give_the_defaults(config_path: Path) -> None:
    read = parse(CONNECTION, config_path).plugin_settings("absent", known=())
    assert (read.string("a", "x"), read.integer("b", None), read.seconds("c", 2.5)) == ("x", None, 2.5)
    with pytest.raises(ConfigError) as caught:
        read.string("path", example='"events.jsonl"')
    assert caught.value.key == "plugins.absent.path"
    assert caught.value.message == "missing key 'path'; e.g. path = \"events.jsonl\""


def test_plugin_settings_of_a_quoted_plugin_name_key_errors_as_toml_writes_them(config_path: Path) -> None:
    config = parse(CONNECTION + '[plugins."pkg.sink"]\nn = "x"\n', config_path)
    with pytest.raises(ConfigError) as caught:
        config.plugin_settings("pkg.sink", known=("n",)).integer("n")
    assert caught.value.key == 'plugins."pkg.sink".n'


@pytest.mark.parametrize(
    ("table", "read", "expected"),
    [
        ('a = "x"', lambda r: r.string("a"), "x"),
        ("", lambda r: r.string("a", None), None),
        ('a = ["x", "y"]', lambda r: r.strings("a"), ("x", "y")),
        ("", lambda r: r.strings("a", ("d",)), ("d",)),
        ('a = "h:1, h:2"', lambda r: r.strings("a", separator=","), ("h:1", "h:2")),
        ("a = false", lambda r: r.boolean("a", True), False),
        ("", lambda r: r.boolean("a", True), True),
        ("a = 3", lambda r: r.integer("a", 1, minimum=3, maximum=3), 3),
        ("", lambda r: r.integer("a", 1, minimum=3), 1),  # a default is not checked
        ("a = 2.5", lambda r: r.number("a", 1), 2.5),
        ("a = -2", lambda r: r.number("a", 1), -2),
        ("a = 2", lambda r: r.seconds("a", 1.0), 2.0),
        ("a = 0.25", lambda r: r.seconds("a", 1.0), 0.25),
        ("a = 1", lambda r: r.seconds("a", 3.0, minimum=1), 1.0),
        ('a = "all"', lambda r: r.one_of("a", ("all", -1, 1, 0)), "all"),
        ("a = -1", lambda r: r.one_of("a", ("all", -1, 1, 0)), -1),
        ("", lambda r: r.one_of("a", ("all", 1), "all"), "all"),
    ],
)
def test_typed_readers_return_the_value_or_the_default(config_path: Path, table: str, read: Any, expected: Any) -> None:
    value = read(plugin_table(config_path, table))
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("table", "read", "message"),
    [
        ("", lambda r: r.integer("a", example="7"), "missing key 'a'; e.g. a = 7"),
        ("a = 1", lambda r: r.string("a", "x"), 'expected a string, got 1 (integer); e.g. a = "x"'),
        ("a = 1", lambda r: r.string("a", None, example='"p"'), 'expected a string, got 1 (integer); e.g. a = "p"'),
        ("a = [1]", lambda r: r.string("a", ""), 'expected a string, got an array; e.g. a = ""'),
        ('a = "x"', lambda r: r.strings("a"), 'expected an array of strings, got "x" (string)'),
        ("a = 1", lambda r: r.strings("a", separator=","),
         "expected an array of strings (or one string of them separated by ','), got 1 (integer)"),
        ('a = "yes"', lambda r: r.boolean("a", False), 'expected true or false, got "yes" (string); e.g. a = false'),
        ("a = true", lambda r: r.integer("a", 5), "expected an integer, got true (boolean); e.g. a = 5"),
        ("a = 1.0", lambda r: r.integer("a", 5, minimum=0), "expected an integer >= 0, got 1.0 (float); e.g. a = 5"),
        ("a = 9", lambda r: r.integer("a", 5, maximum=8), "expected an integer <= 8, got 9 (integer); e.g. a = 5"),
        ("a = 0", lambda r: r.integer("a", None, minimum=1, maximum=9, example="2"),
         "expected an integer from 1 to 9, got 0 (integer); e.g. a = 2"),
        ('a = "1"', lambda r: r.number("a", 1.5), 'expected a number, got "1" (string); e.g. a = 1.5'),
        ("a = 0", lambda r: r.seconds("a", 10.0), "expected a number of seconds > 0, got 0 (integer); e.g. a = 10.0"),
        ("a = inf", lambda r: r.seconds("a", 10.0), "expected a number of seconds > 0, got inf (float); e.g. a = 10.0"),
        ("a = true", lambda r: r.seconds("a", 2), "expected a number of seconds > 0, got true (boolean); e.g. a = 2"),
        ("a = 0.5", lambda r: r.seconds("a", 10.0, minimum=1),
         "expected a number of seconds >= 1, got 0.5 (float); e.g. a = 10.0"),
        ("a = true", lambda r: r.one_of("a", ("all", 1, 0), "all"),
         'expected one of "all", 1, 0, got true (boolean); e.g. a = "all"'),
        ('a = "1"', lambda r: r.one_of("a", ("all", 1, 0)), 'expected one of "all", 1, 0, got "1" (string)'),
    ],
)
def test_typed_readers_name_the_key_and_say_what_and_how(
    config_path: Path, table: str, read: Any, message: str
) -> None:
    err = reader_error(config_path, table, read)
    assert (err.key, err.message) == ("plugins.mine.a", message)


def test_strings_name_the_item_that_is_not_a_string(config_path: Path) -> None:
    err = reader_error(config_path, 'a = ["x", 2]', lambda read: read.strings("a"))
    assert (err.key, err.message) == ("plugins.mine.a[1]", "expected a string, got 2 (integer)")


def test_a_plugin_raises_its_own_rules_through_the_reader(config_path: Path) -> None:
    def read(reader: TableReader) -> None:
        if reader.integer("a") < 2:
            raise reader.error("a", "too small; e.g. a = 2")

    err = reader_error(config_path, "a = 1", read)
    assert (err.key, err.message) == ("plugins.mine.a", "too small; e.g. a = 2")


def test_stream_ending_keys_reach_the_request(config_path: Path) -> None:
    text = (CONNECTION + 'method = "POST"\nbody = { q = 1 }\nreconnect = "on_error"\n'
            'resume_url = "https://example.test/resume"\nend_data = ["[DONE]"]\nerror_events = ["error"]\n'
            'end_events = ["end"]\n')
    request = parse(text, config_path).connections[0].request
    assert (request.reconnect, request.resume_url, request.end_data, request.error_events, request.end_events) == (
        "on_error", "https://example.test/resume", ("[DONE]",), ("error",), ("end",))


def test_tls_keys_reach_the_request(config_path: Path, tmp_path: Path) -> None:
    for name in ("ca.pem", "c.pem", "k.pem"):
        (tmp_path / name).write_text("x")
    text = CONNECTION + f'verify = "{tmp_path / "ca.pem"}"\ncert = ["{tmp_path / "c.pem"}", "{tmp_path / "k.pem"}"]\n'
    request = parse(text, config_path).connections[0].request
    assert request.tls_options() == {"ca_certs": str(tmp_path / "ca.pem"), "cert_file": str(tmp_path / "c.pem"),
                                     "key_file": str(tmp_path / "k.pem")}


def test_relative_tls_paths_are_taken_from_the_config_directory_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs = tmp_path / "etc"
    (configs / "tls").mkdir(parents=True)
    for name in ("ca.pem", "c.pem", "k.pem"):
        (configs / "tls" / name).write_text("x")
    monkeypatch.chdir(tmp_path)  # elsewhere: tls/ is not here
    text = CONNECTION + 'verify = "tls/ca.pem"\ncert = ["tls/c.pem", "tls/k.pem"]\n'
    request = parse(text, configs / "sseplug.toml").connections[0].request
    tls = configs.absolute() / "tls"
    assert request.tls_options() == {"ca_certs": str(tls / "ca.pem"), "cert_file": str(tls / "c.pem"),
                                     "key_file": str(tls / "k.pem")}
    err = connection_error('cert = "tls/c.pem"\n', tmp_path / "sseplug.toml")  # beside it: no tls/ there
    assert err.message == f"{str(tmp_path.absolute() / 'tls' / 'c.pem')!r} does not exist; give the path of the PEM file"


# -- routes, filters, error policy -----------------------------------------------------------------


def test_routes_filters_and_error_policies_are_read(config_path: Path) -> None:
    text = (
        '[runner]\nerrors = { retries = 5, action = "skip" }\n\n'
        '[[connections]]\nid = "a"\nurl = "http://127.0.0.1:8000/a"\nsinks = ["stdout"]\nevents = ["trade"]\n'
        "where = \"data.meta.domain != 'canary'\"\nerrors = { action = \"dead_letter\", backoff = 0 }\n\n"
        '[[connections]]\nid = "b"\nurl = "http://127.0.0.1:8000/b"\n'
    )
    config = parse(text, config_path, known_plugins={"stdout", "json"})
    a, b = config.connections
    assert (a.sinks, a.events, a.errors) == (("stdout",), ("trade",), ErrorPolicy(5, 0, "dead_letter"))
    assert (b.sinks, b.events, b.where, b.errors) == (None, None, None, ErrorPolicy(5, 1.0, "skip"))
    route = a.route()
    assert route.accepts(SSEResponse("1", "trade", {"meta": {"domain": "prod"}}))
    assert not route.accepts(SSEResponse("1", "trade", '{"meta": {"domain": "canary"}}'))  # JSON text too
    assert not route.accepts(SSEResponse("1", "quote", {"meta": {"domain": "prod"}}))
    default = parse(CONNECTION, config_path).connections[0]
    assert default.errors == ErrorPolicy(retries=3, backoff=1.0, action="stop")


@pytest.mark.parametrize(
    ("lines", "key", "expected"),
    [
        ('sinks = ["jsnol"]\n', "connections[0].sinks[0]", "unknown plugin 'jsnol' (did you mean 'jsonl'?)"),
        ('sinks = ["stdout"]\n', "connections[0].sinks[0]", "plugin 'stdout' is disabled in runner.plugins.disable"),
        ('sinks = "jsonl"\n', "connections[0].sinks", "expected an array of strings"),
        ('events = "trade"\n', "connections[0].events", "expected an array of strings"),
        ("where = \"data.x == 'a\"\n", "connections[0].where", "Unclosed ' delimiter at column 11"),
        ('where = "data.["\n', "connections[0].where", "the expression ends too early"),
        ('where = "nofunc(data)"\n', "connections[0].where", "Unknown function: nofunc()"),
        ('errors = { retries = -1 }\n', "connections[0].errors.retries", "expected an integer >= 0"),
        ('errors = { action = "ignore" }\n', "connections[0].errors.action",
         "expected one of \"stop\", \"skip\", \"dead_letter\""),
        ('errors = { backoff = -1 }\n', "connections[0].errors.backoff", "expected a number of seconds >= 0"),
        ('errors = { retry = 1 }\n', "connections[0].errors.retry", "unknown key 'retry'"),
        ("errors = 3\n", "connections[0].errors", "expected a table"),
    ],
)
def test_bad_routes_filters_and_error_policies_name_their_key(
    config_path: Path, lines: str, key: str, expected: str
) -> None:
    text = '[runner]\nplugins = { disable = ["stdout"] }\n\n' + CONNECTION + lines
    with pytest.raises(ConfigError) as caught:
        parse(text, config_path, known_plugins={"stdout", "jsonl", "json"})
    assert caught.value.key == key and expected in caught.value.message
    assert caught.value.path == str(config_path)


def test_the_pipeline_example_is_valid(tmp_path: Path) -> None:
    """examples/pipeline.toml, shown in docs/runner.rst."""
    text = (Path(__file__).resolve().parents[2] / "examples" / "pipeline.toml").read_text(encoding="utf-8")
    config = parse(text, tmp_path / "sseplug.toml", known_plugins={"jsonl", "kafka", "stdout", "json"})
    trades, audit = config.connections
    assert trades.sinks == ("jsonl", "kafka") and trades.errors == ErrorPolicy(3, 1.0, "dead_letter")
    assert audit.errors == ErrorPolicy(5, 1.0, "skip") and config.plugins["jsonl"]["path"] == "out/{connection}.jsonl"


def test_a_template_names_only_connection_and_keeps_escaped_braces() -> None:
    read = TableReader({"ok": "out/{connection}-{{x}}.jsonl", "bad": "s:{conection}", "open": "s:{connection"}, "plugins.p")
    assert read.template("ok").format(connection="a") == "out/a-{x}.jsonl"
    with pytest.raises(ConfigError, match=r"unknown placeholder \{conection\}.*\{connection\} is the only placeholder"):
        read.template("bad")
    with pytest.raises(ConfigError, match=r"write \{connection\} for the connection id, \{\{ and \}\} for braces"):
        read.template("open")
    assert read.template("missing", None) is None
