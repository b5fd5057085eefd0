"""The plugin contract lives in sseplug/hookspecs.py, whole and tested (datasette's idea): every
hook says when it is called and its result rule, every plugin attribute the runtime reads is
documented, a test names each of them, and ``connection`` is a protocol that Connection provides."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import sseplug
from sseplug import SSERequest, hookspecs
from sseplug.connection import Connection
from sseplug.plugins import PluginManager

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(sseplug.__file__).parent
SPECS: dict[str, dict[str, Any]] = {
    name: opts for name, function in vars(hookspecs).items()
    if (opts := getattr(function, f"{hookspecs.PROJECT}_spec", None)) is not None
}
IGNORED_OR_MERGED = ("Results are ignored", "merged")  # the rule of a hook that is not firstresult


def test_every_hook_says_when_it_is_called_and_its_result_rule() -> None:
    problems = []
    for name, opts in sorted(SPECS.items()):
        doc = " ".join((inspect.getdoc(getattr(hookspecs, name)) or "").split())  # as read, not as wrapped
        if "Called" not in doc:
            problems.append(f"{name}: the docstring does not say when it is called ('Called ...')")
        first_wins = "First non-``None`` result wins" in doc
        if opts["firstresult"] != first_wins:
            problems.append(f"{name}: firstresult is {opts['firstresult']}, but the docstring "
                            f"{'does not say' if opts['firstresult'] else 'says'} 'First non-``None`` result wins'")
        if not opts["firstresult"] and not any(rule in doc for rule in IGNORED_OR_MERGED):
            problems.append(f"{name}: the docstring says neither 'Results are ignored' nor how results are 'merged'")
    assert len(SPECS) >= 12, sorted(SPECS)  # the marker lookup saw the hooks
    assert not problems, "hook specs lacking documentation:\n" + "\n".join(problems)


def getattr_reads() -> list[tuple[str, str, str]]:
    """Every ``getattr(obj, "name", ...)`` in sseplug: (name, source of ``obj``, module path)."""
    reads = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"):
                continue
            if len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
                reads.append((node.args[1].value, ast.unparse(node.args[0]), str(path.relative_to(PACKAGE.parent))))
    return reads


def test_every_plugin_attribute_the_runtime_reads_is_documented() -> None:
    """Attributes read off a hook implementation (``impl.function``, ``impl.plugin``) are all in
    ``PLUGIN_ATTRIBUTES``, and each one there is documented and still read somewhere."""
    reads = getattr_reads()
    off_plugins = {name: f"{path}: getattr({obj}, {name!r})" for name, obj, path in reads
                   if obj.endswith((".function", ".plugin"))}
    problems = [f"{where}: not in hookspecs.PLUGIN_ATTRIBUTES" for name, where in sorted(off_plugins.items())
                if name not in hookspecs.PLUGIN_ATTRIBUTES]
    read = {name for name, _, _ in reads}
    for name, doc in sorted(hookspecs.PLUGIN_ATTRIBUTES.items()):
        if not doc.strip():
            problems.append(f"{name}: documented as an empty string")
        if name not in read:
            problems.append(f"{name}: documented, but no module of sseplug reads it with getattr (stale?)")
    assert {"text_decoder", "sseplug_sink"} <= set(off_plugins)  # the scan sees the known readers
    assert not problems, "plugin attributes lacking documentation:\n" + "\n".join(problems)


def test_every_hook_and_plugin_attribute_is_named_by_a_test() -> None:
    tests = [path for path in sorted((ROOT / "tests").rglob("*.py")) if path != Path(__file__).resolve()]
    text = "\n".join(path.read_text(encoding="utf-8") for path in tests)
    missing = [name for name in [*sorted(SPECS), *sorted(hookspecs.PLUGIN_ATTRIBUTES)]
               if not re.search(rf"\b{re.escape(name)}\b", text)]
    assert not missing, "no test under tests/ names: " + ", ".join(missing)


def test_hooks_get_a_connection_protocol_that_connection_provides() -> None:
    """The specs type ``connection`` as ``HookConnection`` (no import of sseplug.connection, so no
    cycle), and a real Connection provides it, at run time and for mypy."""
    parameters = {name: inspect.signature(getattr(hookspecs, name)).parameters for name in sorted(SPECS)}
    annotations = {name: found["connection"].annotation for name, found in parameters.items() if "connection" in found}
    assert len(annotations) >= 10 and set(annotations.values()) == {"HookConnection"}, annotations
    imports = {node.module for node in ast.walk(ast.parse(Path(hookspecs.__file__).read_text(encoding="utf-8")))
               if isinstance(node, ast.ImportFrom)}
    assert not imports & {"connection", "sseplug.connection", "plugins", "sseplug.plugins"}, imports

    connection = Connection("c", SSERequest("http://localhost/"), http_for=lambda url: None, plugins=PluginManager())
    assert isinstance(connection, hookspecs.HookConnection)
    program = (
        "from sseplug.connection import Connection\n"
        "from sseplug.hookspecs import HookConnection\n"
        "def provides(connection: Connection) -> HookConnection:\n"
        "    return connection\n"
    )
    result = subprocess.run(  # --config-file= : not the package's file list, just this program
        [sys.executable, "-m", "mypy", "--config-file=", "--strict", "--cache-dir=/dev/null", "-c", program],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
