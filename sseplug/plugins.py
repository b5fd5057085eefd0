"""The plugin manager: built-ins and installed plugins (entry point group ``sseplug``), one way in."""

from __future__ import annotations

import importlib
import logging
import os
import types
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from . import __version__, hookspecs
from .errors import ConfigError, PluginError, unknown_plugin
from .redaction import redacted

__all__ = [
    "BUILTINS",
    "ENTRY_POINT_GROUP",
    "LIBRARY_BUILTINS",
    "PluginManager",
    "create_plugin_manager",
    "known_plugin_names",
]

log = logging.getLogger("sseplug.plugins")

ENTRY_POINT_GROUP = "sseplug"

BUILTINS = {
    "json": "sseplug.builtin.json",
    "retry": "sseplug.builtin.retry",
    "stdout": "sseplug.builtin.stdout:StdoutSink",
    "sqlite": "sseplug.builtin.sqlite:SQLiteCheckpoints",
    "deadletter": "sseplug.builtin.deadletter:DeadLetterFile",
}
"""Every built-in plugin: name -> module, or module:class for those with state (one instance per
manager). The runner loads them all."""

LIBRARY_BUILTINS = ("json", "retry")
"""The built-ins of plain library use: no stdout sink, no checkpoint file."""


class PluginManager(pluggy.PluginManager):
    """pluggy's manager for project "sseplug", counting registrations so that per-event code can
    cache which hooks have implementations (``generation`` changes whenever plugins change)."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.generation = 0
        self.monitors = 0
        self.distributions: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
        self.configured = False
        self.shutdown_errors: list[tuple[str, BaseException]] = []  # (plugin, error) from sseplug_unconfigure

    def configure(self, config: object | None = None) -> None:
        """Tell the plugins the configuration (``sseplug_configure``: the runner's ``Config``, or
        ``None`` in library use), unless already configured. Historic: a plugin registered later
        gets the call at registration."""
        if not self.configured:
            self.configured = True
            self.hook.sseplug_configure.call_historic(kwargs={"config": config})

    def unconfigure(self) -> None:
        """Tell the plugins the work is over (``sseplug_unconfigure``), once per ``configure``.

        Every plugin is told, also after one of them raised (a full disk when a sink closes its
        file must not keep the lease plugin from releasing its leases): each failure is one ERROR
        line naming the plugin and the cause, kept in ``shutdown_errors`` (the runner exits 1)."""
        if not self.configured:
            return
        self.configured = False
        impls = list(reversed(self.hook.sseplug_unconfigure.get_hookimpls()))  # pluggy's call order
        if not impls:
            self.hook.sseplug_unconfigure()  # nobody implements it; a trace or monitor still sees the call
        for impl in impls:
            others = [other.plugin for other in impls if other is not impl]
            try:  # one plugin at a time, through the hook (so a trace or monitor sees each call)
                self.subset_hook_caller("sseplug_unconfigure", remove_plugins=others)()
            except Exception as error:
                self.shutdown_errors.append((impl.plugin_name, error))
                log.error("plugin %r failed while shutting down: %s: %s; checkpoints saved before it stay, "
                          "so the next start resumes from them", impl.plugin_name, type(error).__name__, error)

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register ``plugin``, validated against the hookspecs now, not at call time: a hook
        argument the spec lacks or an unknown ``sseplug_*`` hook is a ``PluginError`` naming the
        plugin, and leaves nothing registered."""
        label = name or self.get_canonical_name(plugin)
        try:
            registered = super().register(plugin, name)
        except Exception as error:  # a hook mismatch, or an attribute that raised when read
            if self.is_registered(plugin):  # pluggy registered it before finding the bad hook
                super().unregister(plugin)
            raise PluginError(
                f"plugin {label!r} does not match sseplug's hooks: {type(error).__name__}: {error}; "
                "check the hook names and arguments against sseplug.hookspecs",
                plugin=label,
            ) from error
        unknown = sorted(
            caller.name
            for caller in self.get_hookcallers(plugin) or ()
            if caller.spec is None and caller.name.startswith("sseplug_")
        )
        if unknown:
            super().unregister(plugin)
            raise PluginError(
                f"plugin {label!r} implements {', '.join(unknown)}, which sseplug does not have; "
                "check the spelling against sseplug.hookspecs",
                plugin=label,
                hook=unknown[0],
            )
        self.generation += 1
        return registered

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        """Unregister a plugin by object or name."""
        removed = super().unregister(plugin, name)
        self.generation += 1
        return removed

    def add_hookcall_monitoring(self, before: Any, after: Any) -> Callable[[], None]:
        """pluggy's call monitoring (tracing, ``hook_recorder``); while any monitor is attached,
        ``direct_caller`` goes through pluggy so that every call is seen."""
        undo = super().add_hookcall_monitoring(before, after)
        self.monitors += 1
        self.generation += 1

        def detach() -> None:
            """Remove the monitor this call attached."""
            undo()
            self.monitors -= 1
            self.generation += 1

        return detach

    def enable_tracing(self) -> Callable[[], None]:
        """Log every hook call with its arguments and result to ``sseplug.plugins`` at DEBUG level,
        where pluggy's own tracing would print credentials: credential headers are redacted, and
        so is every header ``sseplug_auth_headers`` returns. Returns the undo function."""

        def before(hook_name: str, hook_impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
            """Log the hook call with its arguments, credentials redacted."""
            if log.isEnabledFor(logging.DEBUG):
                shown = ", ".join(f"{name}={value!r}" for name, value in redacted(kwargs).items())
                log.debug("%s(%s)", hook_name, shown)

        def after(
            outcome: pluggy.Result[Any],
            hook_name: str,
            hook_impls: Sequence[pluggy.HookImpl],
            kwargs: Mapping[str, Any],
        ) -> None:
            """Log the hook's result (or exception), credentials redacted."""
            if outcome.exception is None and log.isEnabledFor(logging.DEBUG):
                result = redacted(outcome.get_result(), secret=hook_name == "sseplug_auth_headers")
                log.debug("%s --> %r", hook_name, result)

        return self.add_hookcall_monitoring(before, after)

    def call_order(self, hook_name: str, plugins: Collection[str] | None = None) -> list[str]:
        """The names of the plugins implementing ``hook_name``, in the order pluggy calls them
        (only those in ``plugins``, when given)."""
        impls = reversed(getattr(self.hook, hook_name).get_hookimpls())
        return [impl.plugin_name for impl in impls if plugins is None or impl.plugin_name in plugins]

    def direct_caller(
        self, hook_name: str, argnames: tuple[str, ...], plugins: Collection[str] | None = None
    ) -> Callable[..., Any] | None:
        """A function calling the implementations of ``hook_name`` with positional ``argnames``,
        with pluggy's semantics (order, subset of arguments, firstresult, ``None`` dropped) but
        without pluggy's per-call machinery, which costs as much as parsing an event; ``None``
        when nothing implements the hook. Build it again when ``generation`` changes.

        It answers and raises what ``self.hook.<hook_name>(**kwargs)`` would (the very exception
        object, after the same implementations ran), but for one shortcut: the lone
        implementation of a hook that is not firstresult is called as it is, its bare result
        returned where pluggy returns a list without ``None``s; such results are for ignoring,
        as ``Connection`` does. With wrappers or monitors it is pluggy's call
        (tests/plugins/test_direct_caller.py checks all this). With ``plugins``, only the
        implementations of the plugins named there are called (a connection's route)."""
        caller = getattr(self.hook, hook_name)
        impls = caller.get_hookimpls()
        if plugins is not None:
            left_out = [impl.plugin for impl in impls if impl.plugin_name not in plugins]
            impls = [impl for impl in impls if impl.plugin_name in plugins]
            if left_out:
                caller = self.subset_hook_caller(hook_name, left_out)
        if not impls:
            return None
        if self.monitors or any(impl.hookwrapper or impl.wrapper for impl in impls):
            return lambda *args: caller(**dict(zip(argnames, args)))
        calls = [(impl.function, tuple(argnames.index(name) for name in impl.argnames)) for impl in reversed(impls)]
        if len(calls) == 1:  # no loop, no list: the shortcut the docstring states
            return _positional(*calls[0], len(argnames))
        functions = [_positional(function, picks, len(argnames)) for function, picks in calls]
        if caller.spec is not None and caller.spec.opts.get("firstresult"):

            def first_result(*args: Any) -> Any:
                """The first implementation's answer that is not ``None`` (``firstresult`` hooks)."""
                for function in functions:
                    result = function(*args)
                    if result is not None:
                        return result
                return None

            return first_result

        def every(*args: Any) -> list[Any]:
            """Every implementation's answer that is not ``None``, in call order."""
            return [result for function in functions if (result := function(*args)) is not None]

        return every

    def text_decoder(self) -> Callable[[str], Any] | None:
        """The pure text-to-value function standing for every ``sseplug_deserialize``
        implementation, when there is exactly one and it offers one (a ``text_decoder``
        attribute on the hook function, as the built-in ``json`` plugin has): the parser then
        decodes ``data`` while building each event. ``None`` otherwise, or while monitored."""
        impls = self.hook.sseplug_deserialize.get_hookimpls()
        if self.monitors or len(impls) != 1 or impls[0].hookwrapper or impls[0].wrapper:
            return None
        return getattr(impls[0].function, "text_decoder", None)

    def implements(self, hook_name: str) -> bool:
        """Whether any registered plugin implements ``hook_name``."""
        return bool(getattr(self.hook, hook_name).get_hookimpls())

    def plugin_that_raised(self, hook_name: str, error: BaseException) -> str:
        """The name of the plugin whose ``hook_name`` implementation raised ``error``: the
        outermost traceback frame running an implementation's code (and, for a method, on that
        implementation's instance, so two instances of one class are told apart)."""
        impls = getattr(self.hook, hook_name).get_hookimpls()
        tb = error.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            for impl in impls:
                function = impl.function
                if getattr(function, "__code__", None) is frame.f_code and (
                    not hasattr(function, "__self__") or frame.f_locals.get("self") is function.__self__
                ):
                    return str(impl.plugin_name)
            tb = tb.tb_next
        return "unknown"

    def describe(self) -> list[dict[str, Any]]:
        """Name, distribution, version and implemented hooks of every registered plugin."""
        rows = []
        for name, plugin in sorted(self.list_name_plugin(), key=lambda item: item[0]):
            if plugin is None:
                continue  # blocked
            dist, version = self.distributions.get(name, ("sseplug", __version__))
            hooks = sorted(caller.name for caller in self.get_hookcallers(plugin) or ())
            rows.append({"name": name, "distribution": dist, "version": version, "hooks": hooks})
        return rows


def _positional(function: Callable[..., Any], picks: tuple[int, ...], arity: int) -> Callable[..., Any]:
    """``function`` taking the arguments at ``picks`` of ``arity`` positional ones."""
    if picks == tuple(range(arity)):
        return function
    if len(picks) == 1:
        (index,) = picks
        return lambda *args: function(args[index])
    return lambda *args: function(*[args[index] for index in picks])


def known_plugin_names() -> set[str]:
    """The names of the built-ins and of every installed plugin."""
    return set(BUILTINS) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}


def create_plugin_manager(
    *,
    builtins: Iterable[str] = LIBRARY_BUILTINS,
    disable: Collection[str] = (),
    load_entry_points: bool = True,
    extra: Iterable[tuple[str, object]] = (),
) -> PluginManager:
    """A manager with the given built-ins, the installed plugins, then ``extra`` (name, plugin) pairs.

    Names in ``disable`` are blocked before anything loads; an unknown name is a ``ConfigError``
    listing the known ones. A plugin that fails to import, or whose hooks do not match the
    specs, raises ``PluginError`` naming it (and its distribution). ``SSEPLUG_TRACE_PLUGINS=1``
    logs every hook call at DEBUG level, credentials redacted (``PluginManager.enable_tracing``).
    """
    builtins = tuple(builtins)
    installed = list(entry_points(group=ENTRY_POINT_GROUP)) if load_entry_points else []
    extra = list(extra)
    known = set(BUILTINS) | {ep.name for ep in installed} | {name for name, _ in extra}
    for index, name in enumerate(disable):
        if name not in known:
            raise ConfigError(
                unknown_plugin(name, known),
                key=f"runner.plugins.disable[{index}]",
            )
    pm = PluginManager()
    for name in disable:
        pm.set_blocked(name)
    for name in builtins:
        if not pm.is_blocked(name):
            pm.register(_builtin(name), name)
    for ep in installed:
        if not pm.is_blocked(ep.name) and pm.get_plugin(ep.name) is None:
            plugin = _load(ep)
            try:
                pm.register(plugin, ep.name)
            except PluginError as error:
                raise PluginError(
                    f"{error.message} (installed by {_dist(ep)})", plugin=ep.name, hook=error.hook
                ) from error
            if ep.dist is not None:
                pm.distributions[ep.name] = (ep.dist.name, ep.dist.version)
    for name, plugin in extra:
        if not pm.is_blocked(name):
            pm.register(plugin, name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as error:
        name = pm.get_name(error.plugin) or repr(error.plugin)
        raise PluginError(
            f"plugin {name!r}: {error}; sseplug has no such hook (see sseplug.hookspecs)", plugin=name
        ) from error
    if os.environ.get("SSEPLUG_TRACE_PLUGINS") == "1":
        pm.enable_tracing()
    return pm


def _builtin(name: str) -> object:
    module_name, _, class_name = BUILTINS[name].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)() if class_name else module


def _dist(ep: EntryPoint) -> str:
    return f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "an unknown distribution"


def _load(ep: EntryPoint) -> object:
    dist = _dist(ep)
    try:
        plugin = ep.load()
    except Exception as error:
        raise PluginError(
            f"plugin {ep.name!r} from {dist} failed to load ({ep.value}): "
            f"{type(error).__name__}: {error}; reinstall it or disable it in runner.plugins.disable",
            plugin=ep.name,
        ) from error
    if not isinstance(plugin, (types.ModuleType, type)) and not hasattr(plugin, "__dict__"):
        raise PluginError(f"plugin {ep.name!r} from {dist} is not a module or object", plugin=ep.name)
    return plugin
