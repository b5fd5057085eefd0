"""Plugin assembly: which plugins a runner registers for a config, and what it drops once they are configured.

The order is the runner's: ``runner_plugins`` builds the manager (built-ins, installed plugins
that have a ``[plugins.NAME]`` table or are always on, ``runner.plugins.modules``, minus
``runner.plugins.disable``); after ``sseplug_configure``, ``keep_one_checkpoint_store`` and
``keep_stdout_only_without_other_sinks`` drop the defaults another plugin replaces, and
``check_routes`` checks every connection's ``sinks`` against what is left (``EventSinks``, also
read by the reload diff). ``sseplug check`` runs the same steps as a dry run.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import traceback

from ..errors import ConfigError, PluginError
from ..plugins import BUILTINS, PluginManager, create_plugin_manager
from .config import Config

__all__ = [
    "EventSinks",
    "check_routes",
    "default_sinks",
    "inactive_plugins",
    "keep_one_checkpoint_store",
    "keep_stdout_only_without_other_sinks",
    "local_modules",
    "other_sinks",
    "runner_plugins",
]


def runner_plugins(config: Config) -> PluginManager:
    """Every built-in plugin, the installed plugins that have a ``[plugins.NAME]`` table in the
    config or set ``sseplug_always_on = True``, and the local ``runner.plugins.modules``
    (imported with the config file's directory on ``sys.path``), minus
    ``runner.plugins.disable``. An installed plugin stays inert until configured: installing a
    package never changes what an existing config does."""
    pm = create_plugin_manager(builtins=BUILTINS, disable=config.runner.disable, extra=local_modules(config))
    for name in inactive_plugins(pm, config):
        pm.unregister(name=name)
    return pm


def inactive_plugins(pm: PluginManager, config: Config) -> list[str]:
    """The installed plugins of ``pm`` the runner leaves out: no table in ``config``, not always-on."""
    return sorted(
        name for name in pm.distributions
        if name not in config.plugins and getattr(pm.get_plugin(name), "sseplug_always_on", False) is not True
    )


def local_modules(config: Config) -> list[tuple[str, object]]:
    """(name, module) of each ``runner.plugins.modules`` entry; a failed import is a ``PluginError``."""
    directory = str(config.path.absolute().parent)
    if config.runner.modules and directory not in sys.path:
        sys.path.insert(0, directory)
    modules: list[tuple[str, object]] = []
    for index, name in enumerate(config.runner.modules):
        try:
            modules.append((name, importlib.import_module(name)))
        except Exception as error:
            raise PluginError(
                f"runner.plugins.modules[{index}]: cannot import {name!r} ({type(error).__name__}: {error}"
                f"{_raised_at(error)}); the module must be importable from {directory} or the Python path",
                plugin=name,
            ) from error
    return modules


def _raised_at(error: BaseException) -> str:
    """Where ``error`` was raised, as ``", at FILE:LINE"``: the innermost frame outside the
    import machinery (the module's own line), or ``""``; a SyntaxError names its place itself."""
    if isinstance(error, SyntaxError):
        return ""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if not frame.filename.startswith("<frozen")]
    return f", at {frames[-1].filename}:{frames[-1].lineno}" if frames[1:] else ""


def keep_stdout_only_without_other_sinks(pm: PluginManager, config: Config) -> None:
    """After ``sseplug_configure``: drop the stdout sink when another event sink is enabled,
    unless a connection routes to it (``sinks = ["stdout"]``).

    A plugin implementing ``sseplug_handle_event`` is a sink unless its ``sseplug_sink``
    attribute says otherwise (it may depend on its configuration).
    """
    if pm.get_plugin("stdout") is not None and other_sinks(pm) and not any(
        "stdout" in (connection.sinks or ()) for connection in config.connections
    ):
        pm.unregister(name="stdout")


def other_sinks(pm: PluginManager) -> list[str]:
    """The event sinks of ``pm`` but stdout, in call order."""
    return [
        impl.plugin_name
        for impl in reversed(pm.hook.sseplug_handle_event.get_hookimpls())
        if impl.plugin_name != "stdout" and getattr(impl.plugin, "sseplug_sink", True)
    ]


def default_sinks(pm: PluginManager) -> tuple[str, ...] | None:
    """The handlers of a connection without ``sinks``: all (``None``), but stdout when it is
    kept only for the connections that route to it."""
    if pm.get_plugin("stdout") is None or not other_sinks(pm):
        return None
    return tuple(name for name in pm.call_order("sseplug_handle_event") if name != "stdout")


def keep_one_checkpoint_store(pm: PluginManager) -> None:
    """After ``sseplug_configure``: drop the built-in sqlite store when another plugin keeps the
    checkpoints (its ``sseplug_checkpoint_store`` is true, e.g. the redis plugin of a fleet)."""
    sqlite = pm.get_plugin("sqlite")
    if sqlite is not None and any(
        name != "sqlite" and getattr(plugin, "sseplug_checkpoint_store", False) is True
        for name, plugin in pm.list_name_plugin()
    ):
        sqlite.sseplug_unconfigure()
        pm.unregister(name="sqlite")


@dataclasses.dataclass(frozen=True, slots=True)
class EventSinks:
    """What a connection's ``sinks`` may name, read from a configured plugin manager: the
    plugins that handle events, and every registered plugin (to say why another name is wrong)."""

    handlers: frozenset[str]
    registered: frozenset[str]

    @classmethod
    def of(cls, pm: PluginManager) -> EventSinks:
        """The sinks of ``pm`` as they are now (after ``sseplug_configure`` and the drops above)."""
        return cls(
            handlers=frozenset(pm.call_order("sseplug_handle_event")),
            registered=frozenset(name for name, plugin in pm.list_name_plugin() if plugin is not None),
        )

    def route_error(self, config: Config) -> ConfigError | None:
        """The first ``sinks`` entry of ``config`` that names no event handler, as a
        ``ConfigError`` naming the connection's key; ``None`` when every route is good."""
        for index, connection in enumerate(config.connections):
            for position, name in enumerate(connection.sinks or ()):
                if name in self.handlers:
                    continue
                if name not in self.registered:
                    reason = f"plugin {name!r} is not active; give it a [plugins.{name}] table to turn it on"
                else:
                    reason = f"plugin {name!r} handles no events (it has no sseplug_handle_event)"
                choices = ", ".join(sorted(self.handlers)) or "none"
                return ConfigError(f"{reason}; event sinks here: {choices}",
                                   key=f"connections[{index}].sinks[{position}]", path=str(config.path))
        return None


def check_routes(pm: PluginManager, config: Config) -> None:
    """Every plugin a connection's ``sinks`` names is registered and handles events; else a
    ``ConfigError`` naming the connection's key (after ``sseplug_configure``)."""
    error = EventSinks.of(pm).route_error(config)
    if error is not None:
        raise error
