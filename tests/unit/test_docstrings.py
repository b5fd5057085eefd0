"""Every public class and function of sseplug's public modules has a docstring: module-level
names and the members of public classes whose names do not start with ``_`` (a private module,
``_body.py``, is one whose name does). Run as a script it prints the coverage and what lacks one:
``python tests/unit/test_docstrings.py [-v]``."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "sseplug"


def public_definitions() -> Iterator[tuple[str, bool]]:
    """``(where, has a docstring)`` for each public class, function and method."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if any(part.startswith("_") and part not in ("__init__", "__main__") for part in parts):
            continue

        def visit(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, bool]]:
            for node in body:
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and not node.name.startswith("_"):
                    yield f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {prefix}{node.name}", bool(ast.get_docstring(node))
                    if isinstance(node, ast.ClassDef):
                        yield from visit(node.body, f"{prefix}{node.name}.")

        yield from visit(ast.parse(path.read_text(encoding="utf-8")).body, "")


def test_every_public_definition_has_a_docstring() -> None:
    found = list(public_definitions())
    assert len(found) > 200  # the walk saw the package
    assert [where for where, documented in found if not documented] == []


if __name__ == "__main__":
    found = list(public_definitions())
    documented = sum(1 for _, has in found if has)
    print(f"{documented}/{len(found)} public definitions documented ({100 * documented / len(found):.1f} %)")
    if "-v" in sys.argv:
        print("\n".join(where for where, has in found if not has))
