"""The architecture of docs/architecture.md, checked on the source: the layers and their one
direction, no import cycle, no function over 60 lines, no command-line flag in the library.

Every import counts, also those inside functions (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Layers, lowest first; a module may import its own layer and those below, never above.
#: A package's layer holds all its modules unless a module is named on its own.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("nctk.errors", "nctk.version", "nctk.arrays", "nctk.validation",
                    "nctk.progress", "nctk.paths")),
    ("data", ("nctk.npz", "nctk.io", "nctk.sampling", "nctk.evaluation", "nctk.provenance",
              "nctk.priors")),
    ("measures", ("nctk.stats", "nctk.collapse", "nctk.transfer")),
    ("pipelines", ("nctk.extract", "nctk.finetune", "nctk.scale", "nctk.analyses",
                   "nctk.report.nc_plots", "nctk.report.ranking_plots")),
    ("workflow", ("nctk.workflow", "nctk.select", "nctk.report")),
    ("demo", ("nctk.demo",)),
    ("cli", ("nctk.cli", "nctk.__main__")),
    ("package root", ("nctk",)),
)
#: Most lines a function may have outside tests.
MAX_FUNCTION_LINES = 60
#: A command-line option in a string: ``--word`` not inside a word or a longer dash run.
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / "nctk").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The nctk modules ``name`` imports (a name imported from a package counts as its
    module when it is one, else as the package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                      for a in node.names}
    return {m for m in found if m in known and m != name}


def layer_of(name: str) -> int:
    best, best_length = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    assert best is not None, f"{name} is in no layer: add it to LAYERS (and the docs)"
    return best


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_module_has_a_layer_and_imports_none_above_it():
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
              for m, targets in graph().items() for t in sorted(targets)
              if layer_of(t) > layer_of(m)]
    assert upward == []


def test_no_import_cycle():
    edges = graph()
    cycles = [component for component in _strongly_connected(edges) if len(component) > 1]
    assert cycles == []


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def test_the_cycle_finder_finds_cycles():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert sorted(c for c in _strongly_connected(edges) if len(c) > 1) == [["a", "b", "c"]]


def _functions(path: Path) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_no_function_over_60_lines():
    long = [f"{path.relative_to(SRC)}:{f.lineno} {f.name} ({f.end_lineno - f.lineno + 1} lines)"
            for path in modules().values() for f in _functions(path)
            if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (module, class, function)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def flags_in(text: str) -> list[tuple[int, str]]:
    """``(line, flag)`` of every ``--flag`` in the strings of a module that are not
    docstrings."""
    tree = ast.parse(text)
    docs = _docstrings(tree)
    return [(node.lineno, flag) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docs for flag in FLAG.findall(node.value)]


def test_the_library_names_no_command_line_flag():
    hits = [f"{name}:{line} {flag}" for name, path in modules().items()
            if layer_of(name) < layer_of("nctk.cli")
            for line, flag in flags_in(path.read_text(encoding="utf-8"))]
    assert hits == []


@pytest.mark.parametrize(("text", "flags"), [
    ('x = "pass --trust-checkpoint"', ["--trust-checkpoint"]),
    ('x = f"add --method {name}"', ["--method"]),
    ('"""Docstrings may say --prior."""\nx = "a -- b, co--op, ---x, 5--6"', []),
])
def test_the_flag_finder(text, flags):
    assert [flag for _, flag in flags_in(text)] == flags
