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


# The package's layers, lowest first, in the one direction data flows (docs/layout.md): a module imports modules
# of its own layer and of the layers below it, never of one above. A name stands for that module or package (the
# longest match wins); `tune_distill` is the package itself (its version); every `__main__` is a command. The
# study sits below the sweep (the sweep writes it as trials finish) and above search (it reads the search space's
# distributions); the trial records (records.py) are a helper, written by the sweep and read by everything above.
LAYERS = (
    ("helpers", ("tune_distill", "files", "progress", "pareto", "private_api", "config", "records", "remote",
                 "signing")),
    ("data", ("data", "runtime", "scoring")),
    ("models", ("teacher", "student")),
    ("training", ("checkpoint", "distill", "importance", "prune", "evaluate", "claims", "deployment", "run")),
    ("search", ("search",)),
    ("study", ("study",)),
    ("simulate", ("simulate",)),
    ("sweep", ("sweep",)),
    ("results", ("plots", "held_apart_report", "report", "confirm", "dashboard")),
    ("export", ("export", "answer")),
    ("command", ("cli", "__main__")),
)


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted name -> file of every module of the package (a package by its __init__.py)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(package: Path = PACKAGE) -> list[tuple[str, str, str, str | None]]:
    """(importer, imported module, 'file:line', the name taken from it or None) for every import of one of the
    package's modules by another, at the top of a file or inside a function; `from package import module` imports
    the module, `from module import name` takes a name from it (relative imports resolved)."""
    modules = _modules(package)
    found = []
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            where = f"{path.relative_to(package.parent)}:{node.lineno}"
            if isinstance(node, ast.Import):
                found += [(name, alias.name, where, None) for alias in node.names if alias.name in modules]
                continue
            source = node.module or ""
            if node.level:
                parts = here.split(".")
                source = ".".join(parts[: len(parts) - node.level + 1] + ([source] if source else []))
            if source not in modules:
                continue
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:
                    found.append((name, f"{source}.{alias.name}", where, None))
                else:
                    found.append((name, source, where, alias.name))
    return [entry for entry in found if entry[0] != entry[1]]


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan): each holds at least one circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return circles


def _layer(module: str) -> int | None:
    """The index in LAYERS of a module's layer (None: not in any)."""
    short = module if module == "tune_distill" else module.removeprefix("tune_distill.")
    if short.rpartition(".")[2] == "__main__":
        short = "__main__"
    best = None
    for number, (_, names) in enumerate(LAYERS):
        for name in names:
            if (short == name or short.startswith(name + ".")) and (best is None or len(name) > len(best[1])):
                best = (number, name)
    return best[0] if best else None


def test_import_graph_has_no_circle():
    imports = _imports()
    edges: dict[str, set[str]] = {}
    for importer, imported, _, _ in imports:
        edges.setdefault(importer, set()).add(imported)
    lines = [f"{where}: {importer} -> {imported}" for circle in _circles(edges)
             for importer, imported, where, _ in imports if importer in circle and imported in circle]
    assert not lines, "import circles (move what both need into a lower module):\n" + "\n".join(sorted(set(lines)))


def test_no_cross_module_private_imports():
    taken = [f"{where}: from {imported} import {name}" for _, imported, where, name in _imports()
             if name is not None and name.startswith("_") and not name.startswith("__")]
    assert not taken, ("imports of another module's private names (make the name public where it is shared, or move "
                       "it to its one user):\n" + "\n".join(taken))


def test_imports_follow_the_layers():
    imports = _imports()
    unplaced = sorted({module for importer, imported, _, _ in imports for module in (importer, imported)
                       if _layer(module) is None} | {module for module in _modules() if _layer(module) is None})
    assert not unplaced, "modules in no layer (add them to LAYERS in tests/test_house.py): " + ", ".join(unplaced)
    upward = sorted({f"{where}: {importer} ({LAYERS[_layer(importer)][0]}) -> {imported} "
                     f"({LAYERS[_layer(imported)][0]})" for importer, imported, where, _ in imports
                     if _layer(imported) > _layer(importer)})
    assert not upward, ("imports up the layers (" + " < ".join(name for name, _ in LAYERS) + "): move the shared "
                        "code down, or pass it in:\n" + "\n".join(upward))
