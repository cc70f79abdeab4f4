"""No import cycle among neurolearn's modules: every module is parsed (ast, function-level
lazy imports included), the graph of neurolearn-internal imports is built, and any cycle fails
the test with the cycle printed."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import neurolearn

ROOT = Path(neurolearn.__file__).parent


def modules() -> dict[str, Path]:
    out = {"neurolearn": ROOT / "__init__.py"}
    for info in pkgutil.walk_packages([str(ROOT)], prefix="neurolearn."):
        base = ROOT.joinpath(*info.name.split(".")[1:])
        out[info.name] = base / "__init__.py" if info.ispkg else base.with_suffix(".py")
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The neurolearn modules ``name`` imports (``from pkg import mod`` counts ``pkg.mod``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # a name inside a module: the module
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        colour[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if colour.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in colour and (c := visit(m)):
                return c
        stack.pop()
        colour[n] = 2
        return None

    for n in sorted(graph):
        if n not in colour and (c := visit(n)):
            return c
    return None


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# Known cycles outside the rules, reported to the lead (neurolearn/data/__init__.py imports its
# submodules after defining Dataset and check_int, which they import back): each edge listed
# here is left out, so that a new cycle anywhere still fails. Remove an entry once it is fixed.
KNOWN: set[tuple[str, str]] = set()  # edges excused from the check (none)


def test_no_import_cycle_in_neurolearn():
    mods = modules()
    known = set(mods)
    graph = {name: {m for m in imports(name, path, known) if (name, m) not in KNOWN} for name, path in mods.items()}
    assert "neurolearn.rules.perturbation" in graph and len(graph) > 30
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
