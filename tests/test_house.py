"""The house rules a newcomer relies on, checked over the package's source (no imports of it, instant)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tune_distill"
MAX_FUNCTION_LINES = 80


def _function_lengths(path: Path) -> list[tuple[str, int]]:
    """(name, lines from the def line through its last line) of every function in `path`, nested ones too."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_no_function_over_80_lines():
    too_long = [f"{path.relative_to(PACKAGE.parent)}:{name}:{length}"
                for path in sorted(PACKAGE.rglob("*.py")) for name, length in _function_lengths(path)
                if length > MAX_FUNCTION_LINES]
    assert not too_long, (f"functions over {MAX_FUNCTION_LINES} lines (cut them into named steps): "
                          + ", ".join(too_long))
