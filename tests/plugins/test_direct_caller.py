"""``PluginManager.direct_caller`` is pluggy's hook call: a property test on random plugin sets.

Random implementations of real sseplug hooks (firstresult or not), tryfirst/trylast, taking
random subsets of the arguments in any order (some with a defaulted extra one, which pluggy never
passes), answering ``None`` or a value or raising, sometimes among wrappers or under a call
monitor: the direct caller runs the same implementations in the same order with the same
arguments, and answers or raises exactly what ``pm.hook.NAME(**kwargs)`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pluggy
from hypothesis import event, given, settings
from hypothesis import strategies as st

from sseplug import hookimpl
from sseplug.plugins import PluginManager

FIRSTRESULT = {  # the hooks under test, both kinds, with two and four arguments
    "sseplug_handle_event": False,
    "sseplug_checkpoint_save": False,
    "sseplug_deserialize": True,
    "sseplug_retry_decision": True,
}
SPEC_ARGS = {name: tuple(getattr(PluginManager().hook, name).spec.argnames) for name in FIRSTRESULT}
Log = list[tuple[Any, ...]]
Outcome = tuple[str, Any]  # ("result", what was returned) or ("raised", the exception object)


class Failure(Exception):
    """What an implementation raises."""


class Abort(BaseException):
    """Not an ``Exception`` (as ``KeyboardInterrupt``): it must pass through unchanged too."""


@dataclass(frozen=True)
class Impl:
    """One plugin: a single implementation of ``hook``."""

    hook: str
    kind: str  # "impl", "hookwrapper" (old style) or "wrapper" (new style)
    order: str  # "tryfirst", "trylast" or ""
    argnames: tuple[str, ...]  # a subset of the spec's, in any order
    extra: bool  # also takes an argument with a default, which pluggy never passes
    answer: str  # "none", "value", "raise" or "abort" (wrappers: "")

    def plugin(self, index: int, log: Log) -> object:
        """A plugin object whose implementation logs its calls and arguments; what it answers
        or raises is made once, so both calls must hand over that very object."""
        opts = {"tryfirst": self.order == "tryfirst", "trylast": self.order == "trylast"}
        function: Callable[..., Any]
        if self.kind == "hookwrapper":
            opts["hookwrapper"] = True

            def function(*args: Any) -> Generator[None, pluggy.Result[Any], None]:
                log.append((index, "before", args))
                outcome = yield
                log.append((index, "after", outcome.exception))

        elif self.kind == "wrapper":
            opts["wrapper"] = True

            def function(*args: Any) -> Generator[None, Any, Any]:
                log.append((index, "before", args))
                try:
                    result = yield
                except BaseException as error:
                    log.append((index, "after", error))
                    raise
                log.append((index, "after", None))
                return result

        else:
            reply = {
                "none": None,
                "value": f"answer of plugin {index}",
                "raise": Failure(f"plugin {index} failed"),
                "abort": Abort(f"plugin {index} aborted"),
            }[self.answer]

            def function(*args: Any) -> Any:
                log.append((index, "call", args))
                if isinstance(reply, BaseException):
                    raise reply
                return reply

        named = _named(function, self.argnames, self.extra, generator=self.kind != "impl")
        return SimpleNamespace(**{self.hook: hookimpl(**opts)(named)})


def _named(body: Callable[..., Any], argnames: tuple[str, ...], extra: bool, *, generator: bool) -> Callable[..., Any]:
    """``body`` behind a function whose real parameters are ``argnames`` (and ``extra=None``):
    pluggy reads the names from the code itself (1.7; a ``__signature__`` served 1.6 only)."""
    parameters = ", ".join([*argnames, *(["extra=None"] if extra else [])])
    call = f"body({''.join(name + ', ' for name in argnames)})"
    namespace: dict[str, Any] = {"body": body}
    exec(f"def implementation({parameters}):\n    return {'(yield from ' + call + ')' if generator else call}",
         namespace)
    return namespace["implementation"]  # type: ignore[no-any-return]


@st.composite
def impls(draw: st.DrawFn, hook: str) -> Impl:
    """One random implementation of ``hook``; wrappers are rarer, as in real plugin sets."""
    kind = draw(st.sampled_from(["impl"] * 8 + ["hookwrapper", "wrapper"]))
    names = draw(st.permutations(SPEC_ARGS[hook]))
    return Impl(
        hook=hook,
        kind=kind,
        order=draw(st.sampled_from(["", "", "tryfirst", "trylast"])),
        argnames=tuple(names[: draw(st.integers(0, len(names)))]),
        extra=draw(st.booleans()),
        answer=draw(st.sampled_from(["none", "none", "value", "value", "raise", "abort"])) if kind == "impl" else "",
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, list[Impl], tuple[str, ...], bool]:
    """A hook, its implementations in registration order, the argument order the direct caller
    is built with (any permutation of the spec's) and whether a call monitor is attached."""
    hook = draw(st.sampled_from(sorted(FIRSTRESULT)))
    plugins = draw(st.lists(impls(hook), max_size=6))
    return hook, plugins, tuple(draw(st.permutations(SPEC_ARGS[hook]))), draw(st.booleans())


def outcome(call: Callable[[], Any]) -> Outcome:
    try:
        return "result", call()
    except BaseException as error:  # Abort too: it is what is compared
        return "raised", error


@settings(max_examples=500, deadline=None)
@given(scenarios())
def test_direct_caller_answers_and_raises_as_pluggy(scenario: tuple[str, list[Impl], tuple[str, ...], bool]) -> None:
    hook, plugins, argnames, monitored = scenario
    log: Log = []
    pm = PluginManager()
    for index, impl in enumerate(plugins):
        pm.register(impl.plugin(index, log), f"plugin{index}")
    if monitored:
        pm.add_hookcall_monitoring(lambda *args: None, lambda *args: None)
    kwargs = {name: object() for name in argnames}  # each argument its own object: a mix-up shows

    expected = outcome(lambda: getattr(pm.hook, hook)(**kwargs))
    expected_log, log[:] = log[:], []
    lone = not FIRSTRESULT[hook] and len(plugins) == 1 and not monitored and plugins[0].kind == "impl"
    _label(hook, plugins, monitored, expected, len(expected_log), lone)
    direct = pm.direct_caller(hook, argnames)
    if direct is None:  # nothing implements the hook: Connection skips the call altogether
        assert plugins == [] and expected == ("result", None if FIRSTRESULT[hook] else [])
        return
    got = outcome(lambda: direct(*(kwargs[name] for name in argnames)))

    # the same implementations ran, in the same order, each with its own arguments (never the
    # defaulted extra one), and wrappers saw the same outcome
    assert log == expected_log
    for index, step, args in log:
        if step != "after":
            wanted = tuple(kwargs[name] for name in plugins[index].argnames)
            assert args == wanted, f"plugin {index} {step} got {args}, wanted {wanted} ({kwargs=}, {log=})"
    if expected[0] == "raised" or not lone:
        assert got == expected  # an exception equals only itself: the very object, not a wrapper of it
    else:  # a lone implementation of a hook whose results are ignored: the direct caller is that
        # function itself (see its docstring), answering its bare result where pluggy answers
        # the list of non-None results
        assert got[0] == "result" and expected[1] == ([] if got[1] is None else [got[1]])


def _label(hook: str, plugins: list[Impl], monitored: bool, expected: Outcome, steps: int, lone: bool) -> None:
    """What an example exercised, for ``--hypothesis-show-statistics``."""
    event(f"firstresult={FIRSTRESULT[hook]}")
    event(f"{expected[0]} {type(expected[1]).__name__}" if expected[0] == "raised" else "answered")
    event(f"{len(plugins)} implementations")
    for flag in ("tryfirst", "trylast"):
        if any(impl.order == flag for impl in plugins):
            event(flag)
    if any(impl.kind != "impl" for impl in plugins):
        event("with a wrapper")
    if monitored:
        event("monitored")
    if expected[0] == "raised" and steps > 1:
        event("raised after other implementations ran")
    if FIRSTRESULT[hook] and expected == ("result", None) and steps > 1:
        event("firstresult: every answer None")
    if lone and expected[0] == "result":
        event("lone implementation of a non-firstresult hook: bare result")
