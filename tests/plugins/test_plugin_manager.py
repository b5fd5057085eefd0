"""The plugin manager: built-ins, disabling, validation, installed plugins, tracing, per-event hooks
only when implemented. A failing handler: ``tests/integration/test_handler_errors.py``."""

from __future__ import annotations

import importlib
import logging
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import gevent.event
import pytest

import sseplug
from sseplug import SSEClient, SSERequest, SSEResponse, hookimpl
from sseplug.errors import ConfigError, PluginError
from sseplug.plugins import PluginManager, create_plugin_manager
from sseplug.server import Response, SSEServer
from sseplug.testing import DONE, HookRecorder, collect

from ..recorders import Checkpoints, Handler

Register = Callable[..., object]

FAKE_MODULES = ("fakeplug_mod", "brokenplug_mod", "mismatchplug_mod")


# -- built-ins ---------------------------------------------------------------------------------


def test_builtins_are_registered_by_name_and_trylast(sseplug_plugins: PluginManager) -> None:
    """json and retry, by name, behind any installed plugin (trylast)."""
    json_plugin, retry_plugin = sseplug_plugins.get_plugin("json"), sseplug_plugins.get_plugin("retry")
    assert json_plugin is importlib.import_module("sseplug.builtin.json")
    assert retry_plugin is importlib.import_module("sseplug.builtin.retry")
    for hook_name, name in (("sseplug_deserialize", "json"), ("sseplug_retry_decision", "retry")):
        impls = [impl for impl in getattr(sseplug_plugins.hook, hook_name).get_hookimpls() if impl.plugin_name == name]
        assert len(impls) == 1 and impls[0].trylast


def test_describe_lists_name_distribution_version_and_hooks(
    sseplug_plugins: PluginManager, register_plugin: Register
) -> None:
    register_plugin(Handler(), "handler")
    rows = {row["name"]: row for row in sseplug_plugins.describe()}
    assert set(rows) == {"json", "retry", "handler"}
    assert rows["json"] == {
        "name": "json", "distribution": "sseplug", "version": sseplug.__version__, "hooks": ["sseplug_deserialize"]
    }
    assert rows["retry"]["hooks"] == ["sseplug_retry_decision"]
    assert rows["handler"]["hooks"] == ["sseplug_handle_event"]


# -- disabling ---------------------------------------------------------------------------------


def test_disabling_an_unknown_name_is_a_config_error_listing_known_names() -> None:
    with pytest.raises(ConfigError) as caught:
        create_plugin_manager(disable=["nope"], load_entry_points=False)
    message = str(caught.value)
    assert "'nope'" in message and caught.value.key == "runner.plugins.disable[0]"
    for known in ("json", "retry", "sqlite", "stdout"):
        assert known in message
    with pytest.raises(ConfigError, match=r"unknown plugin 'jsn' \(did you mean 'json'\?\); known plugins: "):
        create_plugin_manager(disable=["jsn"], load_entry_points=False)  # in the config's words


def test_disabled_json_is_not_registered_and_data_stays_text(sse_server: SSEServer) -> None:
    pm = create_plugin_manager(disable=["json"], load_entry_points=False)
    assert pm.get_plugin("json") is None and pm.is_blocked("json")
    assert pm.get_plugin("retry") is not None
    assert "json" not in {row["name"] for row in pm.describe()}
    sse_server.script("/s", Response(body=[b'data: {"n": 1}\n\n', b"data: 2\n\n"]), DONE)
    with SSEClient(plugin_manager=pm) as client:
        got = collect(client.connect("s", SSERequest(sse_server.url("/s"), retry=False)))
    assert [e.data for e in got] == ['{"n": 1}', "2"]


# -- validation --------------------------------------------------------------------------------


class WrongArgument:
    """Asks for an argument sseplug_handle_event does not have."""

    @hookimpl
    def sseplug_handle_event(self, event: SSEResponse, payload: object) -> None:
        pass


class UnknownHook:
    """Implements a hook sseplug does not have (a typo of sseplug_handle_event)."""

    @hookimpl
    def sseplug_handle_events(self, event: SSEResponse) -> None:
        pass


def test_hookimpl_with_an_argument_the_spec_lacks_fails_at_registration(sseplug_plugins: PluginManager) -> None:
    with pytest.raises(PluginError) as caught:
        create_plugin_manager(load_entry_points=False, extra=[("wrong-argument", WrongArgument())])
    assert caught.value.plugin == "wrong-argument"
    assert "'wrong-argument'" in str(caught.value) and "payload" in str(caught.value)
    with pytest.raises(PluginError) as caught:  # the same through a manager already in use
        sseplug_plugins.register(WrongArgument(), "wrong-argument")
    assert caught.value.plugin == "wrong-argument"


def test_a_rejected_plugin_leaves_nothing_registered(sseplug_plugins: PluginManager) -> None:
    class HalfValid:
        @hookimpl
        def sseplug_auth_headers(self) -> dict[str, str]:  # sorted before the bad hook: added first
            return {"X-Half": "1"}

        @hookimpl
        def sseplug_handle_event(self, event: SSEResponse, payload: object) -> None:
            pass

    with pytest.raises(PluginError):
        sseplug_plugins.register(HalfValid(), "half")
    assert sseplug_plugins.get_plugin("half") is None
    assert not sseplug_plugins.implements("sseplug_auth_headers")


def test_unknown_hook_fails_at_creation() -> None:
    """A misspelt sseplug_* hook is an error naming the plugin and the hook, not a silent no-op."""
    with pytest.raises(PluginError) as caught:
        create_plugin_manager(load_entry_points=False, extra=[("typo", UnknownHook())])
    assert caught.value.plugin == "typo"
    assert "'typo'" in str(caught.value) and "sseplug_handle_events" in str(caught.value)


def test_unknown_hook_fails_when_registered_into_a_running_manager(sseplug_plugins: PluginManager) -> None:
    """Also through register_plugin / runtime registration, and nothing stays registered."""
    with pytest.raises(PluginError) as caught:
        sseplug_plugins.register(UnknownHook(), "typo")
    assert caught.value.plugin == "typo"
    assert sseplug_plugins.get_plugin("typo") is None


class UnprefixedHook:
    """A hookimpl without the sseplug_ prefix: only pluggy's check_pending can see it."""

    @hookimpl
    def handle_event(self, event: SSEResponse) -> None:
        pass


def test_unknown_unprefixed_hook_fails_check_pending_at_creation() -> None:
    with pytest.raises(PluginError) as caught:
        create_plugin_manager(load_entry_points=False, extra=[("unprefixed", UnprefixedHook())])
    assert "handle_event" in str(caught.value) and "no such hook" in str(caught.value)


def test_check_pending_error_names_the_plugin() -> None:
    with pytest.raises(PluginError) as caught:
        create_plugin_manager(load_entry_points=False, extra=[("unprefixed", UnprefixedHook())])
    assert caught.value.plugin == "unprefixed" and "'unprefixed'" in str(caught.value)


# -- installed plugins (entry point group "sseplug") --------------------------------------------


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path to install fake distributions into; their modules forgotten after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    for module in FAKE_MODULES:
        sys.modules.pop(module, None)
    importlib.invalidate_caches()


def install(site: Path, dist: str, plugin: str, module: str, source: str) -> None:
    """A fake installed distribution: dist-info with an entry point, and its module."""
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[sseplug]\n{plugin} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))


FAKE_SOURCE = """
    from sseplug import hookimpl

    seen = []

    @hookimpl
    def sseplug_handle_event(event, connection):
        seen.append((connection.id, event.data))
"""


def test_installed_plugin_is_loaded_from_its_entry_point(site: Path, sse_server: SSEServer) -> None:
    install(site, "fakeplug", "fake", "fakeplug_mod", FAKE_SOURCE)
    pm = create_plugin_manager()
    module = sys.modules["fakeplug_mod"]
    assert pm.get_plugin("fake") is module
    row = next(row for row in pm.describe() if row["name"] == "fake")
    assert row == {"name": "fake", "distribution": "fakeplug", "version": "1.0", "hooks": ["sseplug_handle_event"]}
    sse_server.script("/s", Response(body=[b"data: a\n\n", b'data: {"b": 2}\n\n']), DONE)
    with SSEClient(plugin_manager=pm) as client:
        collect(client.connect("s", SSERequest(sse_server.url("/s"), retry=False)))
    assert module.seen == [("s", "a"), ("s", {"b": 2})]


def test_installed_plugin_can_be_disabled_by_name(site: Path) -> None:
    install(site, "fakeplug", "fake", "fakeplug_mod", FAKE_SOURCE)
    pm = create_plugin_manager(disable=["fake"])
    assert pm.get_plugin("fake") is None and "fakeplug_mod" not in sys.modules


def test_installed_plugin_that_fails_to_import_names_plugin_and_distribution(site: Path) -> None:
    install(site, "brokenplug", "broken", "brokenplug_mod", "raise ImportError('needs libfoo')\n")
    with pytest.raises(PluginError) as caught:
        create_plugin_manager()
    message = str(caught.value)
    assert caught.value.plugin == "broken"
    assert "'broken'" in message and "brokenplug 1.0" in message and "needs libfoo" in message


def test_load_entry_points_false_skips_installed_plugins(site: Path) -> None:
    install(site, "fakeplug", "fake", "fakeplug_mod", FAKE_SOURCE)
    install(site, "brokenplug", "broken", "brokenplug_mod", "raise ImportError('needs libfoo')\n")
    pm = create_plugin_manager(load_entry_points=False)
    assert {row["name"] for row in pm.describe()} == {"json", "retry"}
    assert "fakeplug_mod" not in sys.modules


def test_installed_plugin_with_mismatched_hooks_names_its_distribution(site: Path) -> None:
    source = """
        from sseplug import hookimpl

        @hookimpl
        def sseplug_handle_event(event, payload):
            pass
    """
    install(site, "mismatchplug", "mismatch", "mismatchplug_mod", source)
    with pytest.raises(PluginError) as caught:
        create_plugin_manager()
    assert caught.value.plugin == "mismatch" and "mismatchplug" in str(caught.value)


# -- tracing -----------------------------------------------------------------------------------


def test_trace_env_logs_hook_calls_at_debug(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, sse_server: SSEServer
) -> None:
    monkeypatch.setenv("SSEPLUG_TRACE_PLUGINS", "1")
    caplog.set_level(logging.DEBUG, logger="sseplug.plugins")
    pm = create_plugin_manager(load_entry_points=False)
    sse_server.script("/s", Response(body=[b"data: 1\n\n"]), DONE)
    with SSEClient(plugin_manager=pm) as client:
        collect(client.connect("s", SSERequest(sse_server.url("/s"), retry=False)))
    traced = "\n".join(
        r.getMessage() for r in caplog.records if r.name == "sseplug.plugins" and r.levelno == logging.DEBUG
    )
    for hook_name in ("sseplug_configure", "sseplug_connection_opened", "sseplug_deserialize", "sseplug_unconfigure"):
        assert hook_name in traced


def test_no_trace_without_the_env(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, sse_server: SSEServer
) -> None:
    monkeypatch.delenv("SSEPLUG_TRACE_PLUGINS", raising=False)
    caplog.set_level(logging.DEBUG, logger="sseplug.plugins")
    pm = create_plugin_manager(load_entry_points=False)
    sse_server.script("/s", DONE)
    with SSEClient(plugin_manager=pm) as client:
        collect(client.connect("s", SSERequest(sse_server.url("/s"))))
    assert [r for r in caplog.records if r.name == "sseplug.plugins"] == []


# -- per-event hooks only when implemented -------------------------------------------------------


class Gate:
    """Holds the reconnect (in retry_decision) until the test opens it."""

    def __init__(self) -> None:
        self.open = gevent.event.Event()

    @hookimpl(tryfirst=True)
    def sseplug_retry_decision(self) -> float:
        self.open.wait(5)
        return 0.01


class HandlerAndCheckpoints(Handler, Checkpoints):
    """A handler that also saves checkpoints: one plugin implementing both per-event hooks."""

    def __init__(self) -> None:
        Handler.__init__(self)
        Checkpoints.__init__(self)


def test_unimplemented_per_event_hooks_are_not_called_until_a_plugin_implements_them(
    sse_server: SSEServer, sse_client: SSEClient, register_plugin: Register, hook_recorder: HookRecorder
) -> None:
    gate = Gate()
    register_plugin(gate, "gate")
    sse_server.script("/s", Response(body=[b"id: 1\ndata: a\n\n"]), Response(body=[b"id: 2\ndata: b\n\n"]), DONE)
    stream = sse_client.connect("s", SSERequest(sse_server.url("/s")))
    assert [e.data for e in collect(stream, count=1, timeout=5)] == ["a"]
    with gevent.Timeout(5):
        while not hook_recorder.named("sseplug_retry_decision"):  # the first response is over
            gevent.sleep(0.01)
    assert [c.kwargs["event"].id for c in hook_recorder.named("sseplug_deserialize")] == ["1"]  # json implements it
    assert hook_recorder.named("sseplug_handle_event") == []
    assert hook_recorder.named("sseplug_checkpoint_save") == []

    late = HandlerAndCheckpoints()
    register_plugin(late, "late")
    gate.open.set()
    assert [e.data for e in collect(stream, timeout=5)] == ["b"]
    assert [c.kwargs["event"].id for c in hook_recorder.named("sseplug_handle_event")] == ["2"]
    assert [c.kwargs["last_event_id"] for c in hook_recorder.named("sseplug_checkpoint_save")] == ["2"]
    assert late.ids == ["2"] and late.saved == ["2"]


def test_the_json_plugin_alone_decodes_in_the_parser(sseplug_plugins: PluginManager) -> None:
    """With the built-in json plugin as the only deserializer, its pure decoder is handed to the
    parser; any other deserializer, or a monitor, puts the hook call back."""
    from sseplug.builtin import json as json_plugin

    assert sseplug_plugins.text_decoder() is json_plugin.decode

    class Upper:
        @hookimpl
        def sseplug_deserialize(self, event: SSEResponse) -> str:
            return str(event.data).upper()

    sseplug_plugins.register(Upper(), "upper")
    assert sseplug_plugins.text_decoder() is None
    sseplug_plugins.unregister(name="upper")
    undo = sseplug_plugins.add_hookcall_monitoring(lambda *a: None, lambda *a: None)
    assert sseplug_plugins.text_decoder() is None
    undo()
    assert sseplug_plugins.text_decoder() is json_plugin.decode
