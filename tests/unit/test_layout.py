"""The tree shows the layers: the library (parser -> connection -> client) never imports the
application (``sseplug.run``), and each library module imports only the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import sseplug

PACKAGE = Path(sseplug.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """The ``sseplug`` modules ``path`` imports (absolute names), at any depth of its code."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
                names = [f"{module}.{alias.name}" for alias in node.names]
            else:
                module = node.module or ""
                names = []
            found.update(name for name in [module, *names] if name.startswith("sseplug"))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("sseplug"))
    return found


def library_modules() -> list[Path]:
    """Every module but the application's and ``__main__`` (``python -m sseplug``: the command)."""
    return sorted(
        path for path in PACKAGE.rglob("*.py")
        if "run" not in path.relative_to(PACKAGE).parts and path.name != "__main__.py"
    )


def test_no_library_module_imports_the_application() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(name for name in imported_modules(path) if name.startswith("sseplug.run"))
        for path in library_modules()
    }
    assert {name: found for name, found in offenders.items() if found} == {}
    assert len(offenders) > 10  # the walk saw the library


def test_the_core_reads_parser_then_connection_then_client() -> None:
    order = ["parser", "connection", "client"]
    for lower, module in enumerate(order):
        imports = imported_modules(PACKAGE / f"{module}.py")
        above = {f"sseplug.{name}" for name in order[lower + 1 :]}
        assert not imports & above, f"sseplug.{module} imports a layer above it: {sorted(imports & above)}"
