"""Runner config: loading, ${ENV} expansion, validation and the precise messages of ConfigError."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from pathlib import Path

import pytest

from sseplug.run.config import Config, ConnectionConfig, RunnerConfig, load_config, parse_config
from sseplug.errors import ConfigError
from sseplug.models import DEFAULT_MAX_EVENT_SIZE, RequestContentType, RequestMethodType, SSERequest

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
            url="https://example.test/stream",
            method="POST",
            headers={"Authorization": "Bearer s3cret"},
            body={"topic": "orders"},
            retry=True,
            max_retries=5,
            read_timeout=60.0,
            max_event_size=DEFAULT_MAX_EVENT_SIZE,
        ),
    )
    assert config.plugins == {"jsonl": {"path": "events.jsonl"}}
    assert config.plugin_config("jsonl") == {"path": "events.jsonl"}
    assert config.plugin_config("redis") == {}


def test_connection_builds_its_request_with_callbacks(config_path: Path) -> None:
    config = parse(DESIGN_EXAMPLE, config_path, {"ORDERS_TOKEN": "t"})
    on_data, on_error, on_done = print, print, print
    request = config.connections[0].request(on_data=on_data, on_error=on_error, on_done=on_done)
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
    assert config.connections == (ConnectionConfig(id="a", url="http://127.0.0.1:8000/stream"),)
    assert config.plugins == {}
    request = config.connections[0].request()
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
    assert config.connections[0].method == "POST"
    assert config.connections[0].request().encoded_body() == b"a=1"


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


def test_http_listen_is_off_by_default(config_path: Path) -> None:
    assert parse(CONNECTION, config_path).runner.http_listen is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("127.0.0.1", "port from 1 to 65535"),
        ("127.0.0.1:0", "port from 1 to 65535"),
        ("127.0.0.1:65536", "port from 1 to 65535"),
        ("127.0.0.1:http", "port from 1 to 65535"),
        (":9100", "not an IP address or host name"),
        ("999.1.1.1:9100", "not an IP address or host name"),
        ("bad host:9100", "not an IP address or host name"),
        ("::1:9100", "in brackets"),
        ("[127.0.0.1]:9100", "not an IPv6 address"),
    ],
)
def test_http_listen_errors(config_path: Path, text: str, fragment: str) -> None:
    err = error(f'[runner]\nhttp_listen = "{text}"\n' + CONNECTION, config_path)
    assert err.key == "runner.http_listen" and fragment in err.message


def test_http_listen_must_be_a_string(config_path: Path) -> None:
    err = error("[runner]\nhttp_listen = 9100\n" + CONNECTION, config_path)
    assert err.key == "runner.http_listen" and "expected a string" in err.message


# -- ${ENV} expansion -----------------------------------------------------------------------------


def headers_after(value: str, path: Path, environ: Mapping[str, str]) -> str:
    config = parse(CONNECTION + f"headers = {{ X = '{value}' }}\n", path, environ)
    return config.connections[0].headers["X"]


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
def test_env_expansion(config_path: Path, value: str, environ: dict[str, str], expected: str) -> None:
    assert headers_after(value, config_path, environ) == expected


def test_unset_variable_is_an_error_naming_it_and_the_key(config_path: Path) -> None:
    err = error(DESIGN_EXAMPLE, config_path, {})
    assert err.key == "connections[0].headers.Authorization"
    assert "ORDERS_TOKEN is not set" in err.message and "${ORDERS_TOKEN:-default}" in err.message


@pytest.mark.parametrize("environ", [{}, {"TOKEN": ""}])
def test_required_variable_gives_its_message(config_path: Path, environ: dict[str, str]) -> None:
    err = error(CONNECTION + "headers = { X = '${TOKEN:?export TOKEN first}' }\n", config_path, environ)
    assert err.key == "connections[0].headers.X"
    assert "TOKEN is unset or empty: export TOKEN first" in err.message


@pytest.mark.parametrize("value", ["${}", "${1A}", "${A-b}", "${A B}", "${A"])
def test_malformed_reference_is_an_error(config_path: Path, value: str) -> None:
    err = error(CONNECTION + f"headers = {{ X = '{value}' }}\n", config_path)
    assert err.key == "connections[0].headers.X" and "malformed environment reference" in err.message


def test_expansion_reaches_nested_strings_and_lists(config_path: Path) -> None:
    text = (
        '[runner]\nstate_dir = "${DIR}"\nplugins = { disable = ["${OFF}"] }\n'
        + CONNECTION.replace('"a"', '"${ID}"')
        + 'method = "POST"\nbody = { q = ["${Q}", { deep = "${Q}" }], n = 1 }\n'
        + '[plugins.jsonl]\npath = "${DIR}/events.jsonl"\nmore = { list = ["${Q}"] }\n'
    )
    environ = {"DIR": "/srv/state", "OFF": "stdout", "ID": "orders", "Q": "v"}
    config = parse(text, config_path, environ)
    assert config.runner.state_dir == Path("/srv/state")
    assert config.runner.disable == ("stdout",)
    assert config.connections[0].id == "orders"
    assert config.connections[0].body == {"q": ["v", {"deep": "v"}], "n": 1}
    assert config.plugin_config("jsonl") == {"path": "/srv/state/events.jsonl", "more": {"list": ["v"]}}


def test_keys_are_never_expanded(config_path: Path) -> None:
    config = parse(CONNECTION + "headers = { '${A}' = '${A}' }\n", config_path, {"A": "x"})
    assert config.connections[0].headers == {"${A}": "x"}


def test_env_error_key_names_list_items_and_plugin_tables(config_path: Path) -> None:
    err = error(CONNECTION + '[plugins.jsonl]\nfiles = ["ok", "${MISSING}"]\n', config_path)
    assert err.key == "plugins.jsonl.files[1]" and "MISSING" in err.message
    err = error('[runner]\nplugins = { disable = ["${OFF}"] }\n' + CONNECTION, config_path)
    assert err.key == "runner.plugins.disable[0]"


def test_error_keys_quote_non_bare_names(config_path: Path) -> None:
    err = error(CONNECTION + "headers = { 'X.Y' = 1 }\n", config_path)
    assert err.key == 'connections[0].headers."X.Y"'


# -- connections ----------------------------------------------------------------------------------


def test_no_connections(config_path: Path) -> None:
    err = error("[runner]\npool_size = 1\n", config_path)
    assert err.key == "connections" and "no connections configured" in err.message


def test_empty_connections_array(config_path: Path) -> None:
    err = error("connections = []\n", config_path)
    assert err.key == "connections" and "no connections configured" in err.message


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


def test_url_must_be_a_string(config_path: Path) -> None:
    err = error('[[connections]]\nid = "a"\nurl = 8000\n', config_path)
    assert err.key == "connections[0].url" and "expected a string, got 8000 (integer)" in err.message


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


def test_id_accepts_its_whole_alphabet(config_path: Path) -> None:
    text = '[[connections]]\nid = "Az09_.:-"\nurl = "http://127.0.0.1/"\n'
    assert parse(text, config_path).connections[0].id == "Az09_.:-"


def test_unknown_connection_key(config_path: Path) -> None:
    err = connection_error("max_retry = 3\n", config_path)
    assert err.key == "connections[0].max_retry"
    assert "unknown key 'max_retry' in connections[0] (did you mean 'max_retries'?)" in err.message
    assert "known keys: id, url, method" in err.message


@pytest.mark.parametrize("value", ["-1", "true", '"5"', "1.5"])
def test_max_retries_must_be_a_non_negative_integer(config_path: Path, value: str) -> None:
    err = connection_error(f"max_retries = {value}\n", config_path)
    assert err.key == "connections[0].max_retries" and "expected an integer >= 0" in err.message


def test_max_retries_zero_is_allowed(config_path: Path) -> None:
    assert parse(CONNECTION + "max_retries = 0\n", config_path).connections[0].max_retries == 0


@pytest.mark.parametrize("name", ["read_timeout", "head_timeout"])
@pytest.mark.parametrize("value", ["0", "-1.5", '"10"', "true", "nan", "inf"])
def test_timeouts_must_be_positive_seconds(config_path: Path, name: str, value: str) -> None:
    err = connection_error(f"{name} = {value}\n", config_path)
    assert err.key == f"connections[0].{name}" and "number of seconds > 0" in err.message


def test_timeouts_default_to_the_library_defaults(config_path: Path) -> None:
    connection = parse(CONNECTION, config_path).connections[0]
    request = SSERequest(url="http://127.0.0.1/")
    assert (connection.read_timeout, connection.head_timeout) == (request.read_timeout, request.head_timeout)
    assert parse(CONNECTION + "head_timeout = 2.5\n", config_path).connections[0].request().head_timeout == 2.5


def test_read_timeout_accepts_fractions(config_path: Path) -> None:
    assert parse(CONNECTION + "read_timeout = 0.5\n", config_path).connections[0].read_timeout == 0.5


@pytest.mark.parametrize("value", ["0", "-1", "1.0", "false"])
def test_max_event_size_must_be_at_least_one(config_path: Path, value: str) -> None:
    err = connection_error(f"max_event_size = {value}\n", config_path)
    assert err.key == "connections[0].max_event_size" and "expected an integer >= 1" in err.message


@pytest.mark.parametrize("value", ['"PUT"', '"delete"', '""'])
def test_method_must_be_get_or_post(config_path: Path, value: str) -> None:
    err = connection_error(f"method = {value}\n", config_path)
    assert err.key == "connections[0].method" and 'use "GET" or "POST"' in err.message


def test_method_must_be_a_string(config_path: Path) -> None:
    err = connection_error("method = 1\n", config_path)
    assert err.key == "connections[0].method" and "expected a string" in err.message


def test_headers_must_be_a_table(config_path: Path) -> None:
    err = connection_error('headers = ["Authorization: x"]\n', config_path)
    assert err.key == "connections[0].headers" and "expected a table, got an array" in err.message


@pytest.mark.parametrize("value", ["1", "true", '["a"]', "{ nested = 'x' }"])
def test_header_values_must_be_strings(config_path: Path, value: str) -> None:
    err = connection_error(f"headers = {{ X-Count = {value} }}\n", config_path)
    assert err.key == "connections[0].headers.X-Count" and "expected a string header value" in err.message


def test_header_with_forbidden_characters_is_rejected_by_the_request_check(config_path: Path) -> None:
    err = connection_error("headers = { 'Bad Name' = 'x' }\n", config_path)
    assert err.key == "connections[0].headers" and "forbidden character" in err.message
    err = connection_error('headers = { X = "a\\r\\nInjected: 1" }\n', config_path)
    assert err.key == "connections[0].headers" and "forbidden character" in err.message


@pytest.mark.parametrize("value", ['"yes"', "1"])
def test_retry_must_be_a_boolean(config_path: Path, value: str) -> None:
    err = connection_error(f"retry = {value}\n", config_path)
    assert err.key == "connections[0].retry" and "expected true or false" in err.message


def test_get_with_a_body_is_an_error(config_path: Path) -> None:
    err = connection_error('body = { topic = "orders" }\n', config_path)
    assert err.key == "connections[0].body"
    assert "GET request carries no body" in err.message and 'method = "POST"' in err.message


@pytest.mark.parametrize("value", ["5", "true", "2024-01-01"])
def test_body_must_be_a_table_array_or_string(config_path: Path, value: str) -> None:
    err = connection_error(f'method = "POST"\nbody = {value}\n', config_path)
    assert err.key == "connections[0].body" and "expected a table or array" in err.message


def test_body_must_be_json_serializable(config_path: Path) -> None:
    err = connection_error('method = "POST"\nbody = { at = 2024-01-01T00:00:00Z }\n', config_path)
    assert err.key == "connections[0].body.at" and "cannot be sent as JSON" in err.message
    err = connection_error('method = "POST"\nbody = { n = [1, nan] }\n', config_path)
    assert err.key == "connections[0].body.n[1]" and "cannot be sent as JSON" in err.message


def test_the_first_problem_wins(config_path: Path) -> None:
    err = connection_error('method = "PUT"\nmax_retries = -1\n', config_path)
    assert err.key == "connections[0].method"


def test_request_check_errors_map_to_the_field_key(
    config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever SSERequest rejects, the config rejects too, under the connection's key for that field."""
    from sseplug.run import config as config_module

    class Strict:
        def __init__(self, **kwargs: object) -> None:
            raise ValueError("max_event_size: stricter library rule")

    monkeypatch.setattr(config_module, "SSERequest", Strict)
    err = error(CONNECTION, config_path)
    assert err.key == "connections[0].max_event_size" and err.message == "stricter library rule"


# -- runner ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", '"ten"', "true", "-3", "2.5"])
def test_pool_size_must_be_a_positive_integer(config_path: Path, value: str) -> None:
    err = error(f"[runner]\npool_size = {value}\n" + CONNECTION, config_path)
    assert err.key == "runner.pool_size" and "expected an integer >= 1" in err.message


def test_pool_size_message_shows_the_bad_value_and_an_example(config_path: Path) -> None:
    err = error('[runner]\npool_size = "ten"\n' + CONNECTION, config_path)
    assert 'got "ten" (string)' in err.message and "pool_size = 1000" in err.message
    err = error("[runner]\npool_size = true\n" + CONNECTION, config_path)
    assert "got true (boolean)" in err.message


@pytest.mark.parametrize("value", ["0", "-1", '"10"', "false"])
def test_shutdown_timeout_must_be_positive_seconds(config_path: Path, value: str) -> None:
    err = error(f"[runner]\nshutdown_timeout = {value}\n" + CONNECTION, config_path)
    assert err.key == "runner.shutdown_timeout" and "number of seconds > 0" in err.message


def test_state_dir_must_be_a_string(config_path: Path) -> None:
    err = error("[runner]\nstate_dir = 1\n" + CONNECTION, config_path)
    assert err.key == "runner.state_dir" and "expected a string" in err.message


def test_unknown_runner_key(config_path: Path) -> None:
    err = error("[runner]\npool_sise = 10\n" + CONNECTION, config_path)
    assert err.key == "runner.pool_sise"
    assert "unknown key 'pool_sise' in [runner] (did you mean 'pool_size'?)" in err.message
    assert "known keys: pool_size, plugins, state_dir, shutdown_timeout, http_listen" in err.message


def test_runner_must_be_a_table(config_path: Path) -> None:
    err = error("runner = 1\n" + CONNECTION, config_path)
    assert err.key == "runner" and "expected a table" in err.message


def test_unknown_top_level_table(config_path: Path) -> None:
    err = error("[runer]\npool_size = 1\n" + CONNECTION, config_path)
    assert err.key == "runer"
    assert "unknown key 'runer' at the top level (did you mean 'runner'?)" in err.message
    assert "known keys: runner, connections, plugins" in err.message


def test_unknown_key_in_runner_plugins(config_path: Path) -> None:
    err = error("[runner]\nplugins = { enable = [] }\n" + CONNECTION, config_path)
    assert err.key == "runner.plugins.enable" and "known keys: disable" in err.message


def test_runner_plugins_must_be_a_table(config_path: Path) -> None:
    err = error('[runner]\nplugins = ["stdout"]\n' + CONNECTION, config_path)
    assert err.key == "runner.plugins" and "disable = [...]" in err.message


@pytest.mark.parametrize("value", ['"stdout"', "{ stdout = true }"])
def test_disable_must_be_a_list(config_path: Path, value: str) -> None:
    err = error(f"[runner]\nplugins = {{ disable = {value} }}\n" + CONNECTION, config_path)
    assert err.key == "runner.plugins.disable" and "expected an array of plugin names" in err.message


@pytest.mark.parametrize("value", ["1", '""', "true"])
def test_disable_items_must_be_names(config_path: Path, value: str) -> None:
    err = error(f'[runner]\nplugins = {{ disable = ["stdout", {value}] }}\n' + CONNECTION, config_path)
    assert err.key == "runner.plugins.disable[1]" and "expected a plugin name" in err.message


def test_disable_unknown_plugin_lists_known_names_sorted(config_path: Path) -> None:
    text = '[runner]\nplugins = { disable = ["stdout", "jsnl"] }\n' + CONNECTION
    err = error(text, config_path, known_plugins=KNOWN)
    assert err.key == "runner.plugins.disable[1]"
    assert "unknown plugin 'jsnl' (did you mean 'jsonl'?)" in err.message
    assert "known plugins: jsonl, sqlite, stdout" in err.message


def test_disable_accepts_any_name_without_known_plugins(config_path: Path) -> None:
    text = '[runner]\nplugins = { disable = ["anything"] }\n' + CONNECTION
    assert parse(text, config_path).runner.disable == ("anything",)


def test_unknown_plugin_table_lists_known_names_sorted(config_path: Path) -> None:
    err = error(CONNECTION + "[plugins.kafka]\ntopic = 't'\n", config_path, known_plugins=KNOWN)
    assert err.key == "plugins.kafka"
    assert "unknown plugin 'kafka'" in err.message and "known plugins: jsonl, sqlite, stdout" in err.message


def test_plugin_tables_are_free_form(config_path: Path) -> None:
    text = CONNECTION + "[plugins.jsonl]\npath = 'e.jsonl'\nanything = { goes = [1, 2] }\n"
    config = parse(text, config_path, known_plugins=KNOWN)
    assert config.plugin_config("jsonl") == {"path": "e.jsonl", "anything": {"goes": [1, 2]}}


def test_plugin_entry_must_be_a_table(config_path: Path) -> None:
    err = error(CONNECTION + "[plugins]\njsonl = 'e.jsonl'\n", config_path)
    assert err.key == "plugins.jsonl" and "[plugins.jsonl] table" in err.message


def test_disable_under_top_level_plugins_points_to_runner(config_path: Path) -> None:
    err = error(CONNECTION + "[plugins]\ndisable = ['stdout']\n", config_path, known_plugins=KNOWN)
    assert err.key == "plugins.disable" and "belongs under [runner]" in err.message


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


@pytest.mark.parametrize(
    ("value", "key"),
    [('"handlers"', "runner.plugins.modules"), ('["a-b"]', "runner.plugins.modules[0]"),
     ('["ok", 3]', "runner.plugins.modules[1]"), ('["x..y"]', "runner.plugins.modules[0]")],
)
def test_local_module_names_must_be_python_module_names(config_path: Path, value: str, key: str) -> None:
    caught = error(f"[runner]\nplugins = {{ modules = {value} }}\n" + CONNECTION, config_path)
    assert caught.key == key
