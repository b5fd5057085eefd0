"""The reload diff (SIGHUP) as a value: what a new config adds, removes, restarts and keeps, and
why a reload is refused, decided from two parsed configs and the running sinks (no socket, no process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sseplug.errors import ConfigError
from sseplug.plugins import BUILTINS, create_plugin_manager
from sseplug.run.assembly import EventSinks, check_routes
from sseplug.run.config import Config, parse_config
from sseplug.run.reload import DEFERRED_WARNING, ReloadDiff, reload_diff

PATH = Path("/etc/sseplug/sseplug.toml")  # named in errors only: nothing reads it
SINKS = EventSinks(handlers=frozenset({"stdout", "jsonl"}), registered=frozenset({"stdout", "jsonl", "json"}))


def connection(name: str, extra: str = "") -> str:
    """One ``[[connections]]`` table whose URL names it."""
    return f'[[connections]]\nid = "{name}"\nurl = "http://127.0.0.1:8000/feed/{name}"\n{extra}\n'


def config(*tables: str, head: str = "") -> Config:
    return parse_config(head + "".join(tables), path=PATH, known_plugins=("stdout", "jsonl", "json", "sqlite", "kafka"))


def test_the_same_file_changes_nothing() -> None:
    old = config(connection("a"), connection("b"))
    diff = reload_diff(old, config(connection("a"), connection("b")), SINKS)
    assert diff == ReloadDiff(unchanged=("a", "b"))
    assert (diff.to_stop(), diff.to_start(scheduled=False)) == ([], [])
    assert diff.summary() == "0 added [], 0 removed [], 0 changed [], 2 unchanged"


def test_added_removed_changed_and_kept_each_get_their_own_treatment() -> None:
    old = config(connection("keep"), connection("drop"), connection("edit"))
    new = config(connection("keep"), connection("edit", 'headers = { X-Tenant = "2" }'), connection("new"))
    diff = reload_diff(old, new, SINKS)
    assert (diff.added, diff.removed, diff.changed, diff.unchanged) == (("new",), ("drop",), ("edit",), ("keep",))
    assert diff.to_stop() == ["drop", "edit"]  # the removed, then the changed: restarted from their checkpoint
    assert diff.to_start(scheduled=False) == ["new", "edit"]
    assert diff.summary() == "1 added ['new'], 1 removed ['drop'], 1 changed ['edit'], 1 unchanged"
    assert not diff.deferred and diff.refused is None


def test_ids_keep_the_order_of_their_file() -> None:
    old = config(*(connection(name) for name in ("z", "y", "x", "w")))
    new = config(*(connection(name) for name in ("c", "w", "b", "x", "a")))
    diff = reload_diff(old, new, SINKS)
    assert diff.added == ("c", "b", "a") and diff.removed == ("z", "y") and diff.unchanged == ("w", "x")


def test_moving_a_connection_in_the_file_changes_nothing() -> None:
    diff = reload_diff(config(connection("a"), connection("b")), config(connection("b"), connection("a")), SINKS)
    assert diff == ReloadDiff(unchanged=("b", "a"))


@pytest.mark.parametrize("extra", ['events = ["tick"]', 'sinks = ["jsonl"]', "read_timeout = 5",
                                   'method = "POST"\nbody = { q = 1 }', 'where = "data.x"'])
def test_any_other_value_of_a_connection_restarts_it(extra: str) -> None:
    diff = reload_diff(config(connection("a")), config(connection("a", extra)), SINKS)
    assert diff.changed == ("a",) and diff.unchanged == ()


def test_a_scheduled_runner_starts_nothing_itself() -> None:
    diff = reload_diff(config(connection("edit")), config(connection("edit", "read_timeout = 5"), connection("new")), SINKS)
    assert diff.to_start(scheduled=True) == []  # the scheduling plugin starts them on their owner
    assert diff.to_stop() == ["edit"]


@pytest.mark.parametrize("head", ["[runner]\npool_size = 7\n", '[plugins.jsonl]\npath = "other.jsonl"\n'])
def test_runner_and_plugin_tables_wait_for_the_next_start(head: str) -> None:
    old = config(connection("a"))
    diff = reload_diff(old, config(connection("a"), head=head), SINKS)
    assert diff.deferred and diff.unchanged == ("a",) and diff.refused is None
    assert "take effect at the next start" in DEFERRED_WARNING


def test_a_route_to_an_inactive_plugin_refuses_the_reload() -> None:
    new = config(connection("a"), connection("b", 'sinks = ["stdout", "kafka"]'))
    diff = reload_diff(config(connection("a")), new, SINKS)
    assert isinstance(diff.refused, ConfigError)
    assert diff.refused.key == "connections[1].sinks[1]" and diff.refused.path == str(PATH)
    assert "plugin 'kafka' is not active; give it a [plugins.kafka] table" in str(diff.refused)
    assert "event sinks here: jsonl, stdout" in str(diff.refused)
    assert (diff.added, diff.removed, diff.changed, diff.unchanged, diff.to_stop()) == ((), (), (), (), [])


def test_a_route_to_a_plugin_that_handles_no_events_refuses_the_reload() -> None:
    diff = reload_diff(config(connection("a")), config(connection("a", 'sinks = ["json"]')), SINKS)
    assert diff.refused is not None and "plugin 'json' handles no events" in diff.refused.message


def test_without_event_handlers_the_refusal_says_none() -> None:
    sinks = EventSinks(handlers=frozenset(), registered=frozenset())
    diff = reload_diff(config(connection("a")), config(connection("a", 'sinks = ["stdout"]')), sinks)
    assert diff.refused is not None and str(diff.refused).endswith("event sinks here: none")


def test_the_sinks_of_a_plugin_manager_are_what_start_checks() -> None:
    pm = create_plugin_manager(builtins=BUILTINS, load_entry_points=False)
    sinks = EventSinks.of(pm)
    assert "stdout" in sinks.handlers and "json" in sinks.registered and "json" not in sinks.handlers
    routed = config(connection("a", 'sinks = ["json"]'))
    assert str(sinks.route_error(routed)) == str(pytest.raises(ConfigError, check_routes, pm, routed).value)
    assert sinks.route_error(config(connection("a", 'sinks = ["stdout"]'))) is None
